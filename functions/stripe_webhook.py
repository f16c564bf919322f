"""POST /functions/v1/stripe-webhook: verify Stripe-Signature on the raw body, then apply the event
in one transaction (app.apply_stripe_event): recorded once by its id, states only move forward, the
paid-order fan-out runs in the same transaction. Duplicates and any arrival order are normal: 200.

Money events are never refused for a switched-off module: the payment already happened, and a 4xx
would only make Stripe retry it for three days.
"""

from __future__ import annotations

import json
import logging
from typing import Annotated, Any

import stripe
from fastapi import APIRouter, Depends, Request
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from brigade.auth import Claims
from brigade.db import transaction_as
from brigade.errors import InvalidInput, wrap_exceptions
from brigade.settings import Settings
from functions.deps import get_pool, get_settings

log = logging.getLogger("brigade.functions.stripe")
router = APIRouter()


def verify(payload: bytes, signature: str | None, secret: str) -> dict[str, Any]:
    """The event as a dict, if Stripe signed this exact body within the tolerance; 400 otherwise."""
    if not signature:
        raise InvalidInput("missing Stripe-Signature header", hint="missing_signature")
    try:
        stripe.WebhookSignature.verify_header(payload.decode("utf-8"), signature, secret, tolerance=300)
    except stripe.SignatureVerificationError as exc:
        raise InvalidInput("Stripe signature does not match", hint="bad_signature") from exc
    except UnicodeDecodeError as exc:
        raise InvalidInput("body is not UTF-8", hint="invalid_body") from exc
    try:
        event = json.loads(payload)
    except ValueError as exc:
        raise InvalidInput("body is not JSON", hint="invalid_body") from exc
    if not isinstance(event, dict) or not isinstance(event.get("data"), dict):
        raise InvalidInput("not a Stripe event", hint="invalid_event")
    return event


async def apply_event(pool: AsyncConnectionPool, event: dict[str, Any]) -> str:
    """Apply one verified event in one transaction; returns the outcome."""
    async with wrap_exceptions(), transaction_as(pool, Claims.service()) as conn:
        row = await (await conn.execute("select app.apply_stripe_event(%s) as outcome", (Jsonb(event),))).fetchone()
    return row["outcome"] if row else "ignored"


@router.post("/stripe-webhook")
async def stripe_webhook(
    request: Request,
    pool: Annotated[AsyncConnectionPool, Depends(get_pool)],
    settings: Annotated[Settings, Depends(get_settings)],
) -> dict[str, Any]:
    event = verify(await request.body(), request.headers.get("stripe-signature"), settings.stripe_webhook_secret)
    outcome = await apply_event(pool, event)
    log.info("stripe event", extra={"action": "stripe_event", "event_id": event.get("id"), "type": event.get("type"),
                                    "outcome": outcome, "request_id": getattr(request.state, "request_id", None)})
    return {"received": True, "id": event.get("id"), "outcome": outcome}
