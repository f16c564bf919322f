"""POST /functions/v1/delivery-webhook[/uber|/doordash]: courier-network webhooks.

Uber Direct signs the raw body: `x-uber-signature` is the hex HMAC-SHA256 with the webhook signing key.
DoorDash Drive has no body signature; it sends the Authorization header value configured in its
portal, compared here in constant time. Without a provider in the path, a request carrying
x-uber-signature is Uber's, any other DoorDash's. A verified event is applied in one transaction by
app.apply_delivery_webhook (recorded once — Uber by event id, DoorDash, which has none, by a hash of
the whole body — status only forward); duplicates, stale events and events
for deliveries we do not know answer 200 so the network stops retrying. Bad signature: 400/401.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from brigade import queries
from brigade.auth import Claims
from brigade.db import transaction_as
from brigade.errors import InvalidInput, NotFound, Unauthorized, wrap_exceptions
from brigade.settings import Settings
from functions.deps import get_pool, get_settings

log = logging.getLogger("brigade.functions.delivery")
router = APIRouter()
PROVIDERS = ("uber", "doordash")


def uber_signature(body: bytes, key: str) -> str:
    """What Uber puts in x-uber-signature for this body."""
    return hmac.new(key.encode(), body, hashlib.sha256).hexdigest()


def verify(provider: str, body: bytes, headers: Any, settings: Settings) -> dict[str, Any]:
    """The event, if the caller proved it is the network; 400/401 otherwise."""
    if provider == "uber":
        signature = (headers.get("x-uber-signature") or "").strip().lower()
        if not signature:
            raise InvalidInput("missing x-uber-signature header", hint="missing_signature")
        if not settings.uber_webhook_signing_key or not hmac.compare_digest(
                signature, uber_signature(body, settings.uber_webhook_signing_key)):
            raise InvalidInput("Uber signature does not match", hint="bad_signature")
    else:
        given = headers.get("authorization") or ""
        if not settings.doordash_webhook_auth or not hmac.compare_digest(given.encode(), settings.doordash_webhook_auth.encode()):
            raise Unauthorized("DoorDash webhook authorization does not match", hint="bad_authorization")
    try:
        event = json.loads(body)
    except ValueError as exc:
        raise InvalidInput("body is not JSON", hint="invalid_body") from exc
    if not isinstance(event, dict):
        raise InvalidInput("not a webhook event", hint="invalid_event")
    return event


async def handle(provider: str, request: Request, pool: AsyncConnectionPool, settings: Settings) -> dict[str, Any]:
    if provider not in PROVIDERS:
        raise NotFound(f"unknown delivery provider {provider!r}", hint="unknown_provider")
    event = verify(provider, await request.body(), request.headers, settings)
    async with wrap_exceptions(), transaction_as(pool, Claims.service()) as conn:
        row = await (await conn.execute(queries.get("apply_delivery_webhook"), {"provider": provider, "event": Jsonb(event)})).fetchone()
    outcome = row["outcome"] if row else "ignored"
    log.info("delivery webhook", extra={"action": "delivery_webhook", "provider": provider, "outcome": outcome,
                                        "kind": event.get("kind") or event.get("event_name"), "status": event.get("status"),
                                        "request_id": getattr(request.state, "request_id", None)})
    return {"received": True, "provider": provider, "outcome": outcome}


@router.post("/delivery-webhook")
async def delivery_webhook(request: Request, pool: Annotated[AsyncConnectionPool, Depends(get_pool)],
                           settings: Annotated[Settings, Depends(get_settings)]) -> dict[str, Any]:
    provider = "uber" if request.headers.get("x-uber-signature") else "doordash"
    return await handle(provider, request, pool, settings)


@router.post("/delivery-webhook/{provider}")
async def delivery_webhook_for(provider: str, request: Request, pool: Annotated[AsyncConnectionPool, Depends(get_pool)],
                               settings: Annotated[Settings, Depends(get_settings)]) -> dict[str, Any]:
    return await handle(provider, request, pool, settings)
