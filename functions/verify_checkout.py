"""POST /functions/v1/verify-checkout-session: the success page asks, with the order's or booking's access
token, whether the payment went through. The answer is the database's; when it still says unpaid and the
payable has a Checkout Session, Stripe's session is retrieved once and, if Stripe has it complete and
paid, applied exactly as its checkout.session.completed webhook would be (same function, same object),
so the webhook arriving before, after or twice changes nothing more."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel, ConfigDict, model_validator

from brigade import queries
from brigade.auth import Claims
from brigade.db import transaction_as
from brigade.errors import wrap_exceptions
from brigade.providers import Providers
from functions.cors import ensure_origin_business
from functions.deps import caller_or_anon, enforce_rate_limits, get_pool, get_providers, payable_business
from functions.stripe_webhook import apply_event

router = APIRouter()
# Stripe's payment_status values that mean the money is there (Checkout fulfils on anything but unpaid)
SETTLED = ("paid", "no_payment_required")


class VerifyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    order_id: uuid.UUID | None = None
    booking_id: uuid.UUID | None = None
    access_token: uuid.UUID

    @model_validator(mode="after")
    def one_payable(self) -> "VerifyRequest":
        if (self.order_id is None) == (self.booking_id is None):
            raise ValueError("send exactly one of order_id and booking_id")
        return self


async def _details(pool: AsyncConnectionPool, claims: Claims, body: VerifyRequest) -> dict[str, Any]:
    """What the success page shows, read as the caller with the token (404 when id and token do not match)."""
    sql = "select app.get_order(%s, %s) as d" if body.order_id else "select app.get_booking(%s, %s) as d"
    async with wrap_exceptions(), transaction_as(pool, claims) as conn:
        row = await (await conn.execute(sql, (body.order_id or body.booking_id, body.access_token))).fetchone()
    return row["d"] if row else {}


@router.post("/verify-checkout-session")
async def verify_checkout_session(
    request: Request,
    body: VerifyRequest,
    claims: Annotated[Claims, Depends(caller_or_anon)],
    pool: Annotated[AsyncConnectionPool, Depends(get_pool)],
    providers: Annotated[Providers, Depends(get_providers)],
) -> dict[str, Any]:
    payable = body.order_id or body.booking_id
    business = await payable_business(pool, body.order_id, body.booking_id)
    ensure_origin_business(request, business)
    await enforce_rate_limits(pool, claims, "verify_checkout_session", business, {"subject": str(payable)})
    details = await _details(pool, claims, body)
    reconciled: str | None = None
    if details.get("payment_status") == "unpaid":
        async with transaction_as(pool, Claims.service()) as conn:
            payment = await (await conn.execute(queries.get("payable_session"),
                                                {"order_id": body.order_id, "booking_id": body.booking_id})).fetchone()
        if payment and payment["session_id"]:
            session = await providers.payments.retrieve_checkout_session(payment["session_id"],
                                                                         stripe_account=payment["stripe_account_id"])
            if session and session.get("status") == "complete" and session.get("payment_status") in SETTLED:
                # the event Stripe sends for this session, built from the session Stripe returned: one id per
                # session, so asking again is a duplicate, and the real webhook later finds the payment applied
                event = {"id": f"evt_verify_{session['id']}", "object": "event", "type": "checkout.session.completed",
                         "livemode": bool(session.get("livemode", False)), "data": {"object": session}}
                reconciled = await apply_event(pool, event)
                details = await _details(pool, claims, body)
    kind = "order" if body.order_id else "booking"
    return {"kind": kind, "id": str(payable), "payment_status": details.get("payment_status"), "status": details.get("status"),
            "paid": details.get("payment_status") in ("paid", "partially_refunded", "refunded", "disputed"),
            "reconciled": reconciled, kind: details}
