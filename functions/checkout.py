"""POST /functions/v1/checkout: a Stripe Checkout Session for an unpaid order or a held booking,
priced from the database. Calling it again (or twice at once) returns the same session: the order
(booking) row is locked while the session is created, and the idempotency key is the payable and its
attempt number."""

from __future__ import annotations

import html
import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel, ConfigDict, Field, model_validator

from brigade.auth import Claims
from brigade.db import transaction_as
from brigade.errors import NotFound, wrap_exceptions
from brigade.providers import Providers, session_expiry
from brigade.settings import Settings
from brigade.stripe_events import booking_session_completed, session_completed
from functions.cors import ensure_origin_business
from functions.deps import caller_or_anon, enforce_rate_limits, get_pool, get_providers, get_settings, payable_business
from functions.stripe_webhook import apply_event

router = APIRouter()


class CheckoutRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    order_id: uuid.UUID | None = None
    booking_id: uuid.UUID | None = Field(default=None, description="a held booking (hold_booking) instead of an order")
    access_token: uuid.UUID | None = Field(default=None, description="from place_order / hold_booking; staff may omit it")
    success_url: str | None = Field(default=None, max_length=2000)
    cancel_url: str | None = Field(default=None, max_length=2000)

    @model_validator(mode="after")
    def one_payable(self) -> "CheckoutRequest":
        if (self.order_id is None) == (self.booking_id is None):
            raise ValueError("send exactly one of order_id and booking_id")
        return self


class CheckoutResponse(BaseModel):
    order_id: uuid.UUID | None = None
    booking_id: uuid.UUID | None = None
    session_id: str
    url: str
    expires_at: datetime
    reused: bool


def session_params(ctx: dict[str, Any], body: CheckoutRequest, settings: Settings, expires_at: datetime) -> dict[str, Any]:
    """Stripe Checkout Session parameters for the order context the database returned."""
    currency = ctx["currency"]
    line_items = [{"quantity": line["quantity"], "price_data": {
        "currency": currency, "unit_amount": line["unit_amount"], "product_data": {"name": line["name"][:250]}}}
        for line in ctx["lines"]]
    for name, key in (("Tax", "tax_cents"), ("Tip", "tip_cents"), ("Delivery", "delivery_fee_cents")):
        if ctx[key] > 0:
            line_items.append({"quantity": 1, "price_data": {"currency": currency, "unit_amount": ctx[key],
                                                             "product_data": {"name": name}}})
    metadata = {"order_id": ctx["order_id"], "business_id": ctx["business_id"], "order_number": str(ctx["order_number"])}
    order_id = ctx["order_id"]
    params: dict[str, Any] = {
        "mode": "payment",
        "line_items": line_items,
        "client_reference_id": order_id,
        "metadata": metadata,
        "payment_intent_data": {"metadata": metadata, "description": f"{ctx['business_name']} order #{ctx['order_number']}"},
        "success_url": (body.success_url or settings.checkout_success_url).replace("{order_id}", order_id),
        "cancel_url": (body.cancel_url or settings.checkout_cancel_url).replace("{order_id}", order_id),
        "expires_at": int(expires_at.timestamp()),
    }
    if ctx.get("customer_email"):
        params["customer_email"] = ctx["customer_email"]
    if ctx.get("stripe_account_id") and ctx["application_fee_cents"] > 0:
        params["payment_intent_data"]["application_fee_amount"] = ctx["application_fee_cents"]
    return params


@router.post("/checkout", response_model=CheckoutResponse)
async def checkout(
    request: Request,
    body: CheckoutRequest,
    claims: Annotated[Claims, Depends(caller_or_anon)],
    pool: Annotated[AsyncConnectionPool, Depends(get_pool)],
    providers: Annotated[Providers, Depends(get_providers)],
    settings: Annotated[Settings, Depends(get_settings)],
) -> CheckoutResponse:
    payable = body.order_id or body.booking_id
    business = await payable_business(pool, body.order_id, body.booking_id)
    ensure_origin_business(request, business)
    await enforce_rate_limits(pool, claims, "checkout", business, {"subject": str(payable)})
    if body.booking_id is not None:
        return await _booking_checkout(body, claims, pool, providers, settings)
    async with wrap_exceptions(), transaction_as(pool, claims) as conn:
        ctx = await _context(conn, body)  # checks the caller: the placer's token, or staff of the venue
        if not ctx["session"]:
            # From here the function acts for the platform. Lock the order so a concurrent request
            # waits for this one's session instead of creating another, then look again.
            await conn.execute("select set_config('role', 'service_role', true)")
            await conn.execute("select 1 from public.orders where id = %s for update", (body.order_id,))
            ctx = await _context(conn, body)
        if ctx["session"]:
            s = ctx["session"]
            return CheckoutResponse(order_id=body.order_id, session_id=s["id"], url=s["url"],
                                    expires_at=datetime.fromisoformat(s["expires_at"]), reused=True)
        expires_at = session_expiry(settings)
        params = session_params(ctx, body, settings, expires_at)
        await with_saved_cards(conn, providers, claims, ctx, params)
        session = await providers.payments.create_checkout_session(
            params, idempotency_key=f"checkout:{ctx['order_id']}:{ctx['attempt']}", stripe_account=ctx.get("stripe_account_id"))
        await conn.execute("select app.attach_checkout_session(%s, %s, %s, %s)",
                           (body.order_id, session.id, session.url, session.expires_at))
    return CheckoutResponse(order_id=body.order_id, session_id=session.id, url=session.url,
                            expires_at=session.expires_at, reused=False)


async def with_saved_cards(conn: Any, providers: Providers, claims: Claims, ctx: dict[str, Any], params: dict[str, Any]) -> None:
    """A signed-in customer's own order or booking: check out as their Stripe Customer (created once, on the
    account the charge is made on), so Checkout offers the cards they saved and asks before saving a new one."""
    if claims.user_id is None:
        return
    if ctx.get("booking_id"):
        row = await (await conn.execute("select app.booking_checkout_customer(%s, %s) as c",
                                        (ctx["booking_id"], claims.user_id))).fetchone()
    else:
        row = await (await conn.execute("select app.checkout_customer(%s, %s) as c", (ctx["order_id"], claims.user_id))).fetchone()
    customer = row["c"] if row else None
    if not customer:
        return
    stripe_customer = customer["stripe_customer_id"]
    if not stripe_customer:
        created = await providers.payments.create_customer(
            {k: v for k, v in {"email": customer["email"], "name": customer["name"],
                               "metadata": {"business_id": customer["business_id"], "customer_id": customer["customer_id"]}}.items() if v},
            idempotency_key=f"customer:{customer['business_id']}:{customer['customer_id']}", stripe_account=ctx.get("stripe_account_id"))
        if not created:
            return
        row = await (await conn.execute("select app.attach_stripe_customer(%s, %s, %s) as id",
                                        (customer["business_id"], customer["customer_id"], created))).fetchone()
        stripe_customer = row["id"] if row else created
    params.pop("customer_email", None)  # Stripe takes one of customer and customer_email
    params["customer"] = stripe_customer
    params["saved_payment_method_options"] = {"payment_method_save": "enabled"}


async def _context(conn: Any, body: CheckoutRequest) -> dict[str, Any]:
    row = await (await conn.execute("select app.checkout_context(%s, %s) as ctx", (body.order_id, body.access_token))).fetchone()
    return row["ctx"]


def booking_session_params(ctx: dict[str, Any], body: CheckoutRequest, settings: Settings, expires_at: datetime) -> dict[str, Any]:
    """Stripe Checkout Session parameters for a held booking: its tiers (or one discounted line) and
    the seed's metadata (kind=booking, ids, customer, date/time, party counts, promo code)."""
    currency = ctx["currency"]
    line_items = [{"quantity": line["quantity"], "price_data": {
        "currency": currency, "unit_amount": line["unit_amount"], "product_data": {"name": line["name"][:250]}}}
        for line in ctx["lines"]]
    metadata = {k: str(v)[:500] for k, v in ctx["metadata"].items()}
    booking_id = ctx["booking_id"]
    params: dict[str, Any] = {
        "mode": "payment",
        "line_items": line_items,
        "client_reference_id": booking_id,
        "metadata": metadata,
        "payment_intent_data": {"metadata": metadata,
                                "description": f"{ctx['business_name']} booking {ctx['booking_number']}"},
        "success_url": (body.success_url or settings.booking_success_url).replace("{booking_id}", booking_id),
        "cancel_url": (body.cancel_url or settings.booking_cancel_url).replace("{booking_id}", booking_id),
        "expires_at": int(expires_at.timestamp()),
    }
    if ctx.get("customer_email"):
        params["customer_email"] = ctx["customer_email"]
    if ctx.get("stripe_account_id") and ctx["application_fee_cents"] > 0:
        params["payment_intent_data"]["application_fee_amount"] = ctx["application_fee_cents"]
    return params


async def _booking_context(conn: Any, body: CheckoutRequest) -> dict[str, Any]:
    row = await (await conn.execute("select app.booking_checkout_context(%s, %s) as ctx",
                                    (body.booking_id, body.access_token))).fetchone()
    return row["ctx"]


async def _booking_checkout(body: CheckoutRequest, claims: Claims, pool: AsyncConnectionPool, providers: Providers,
                            settings: Settings) -> CheckoutResponse:
    """The booking branch: the hold must still run; Stripe's session lives at least 30 minutes, so the
    worker expires it when the hold runs out (booking.expired) and a payment that still arrives late
    re-takes the seats or is refunded."""
    async with wrap_exceptions(), transaction_as(pool, claims) as conn:
        ctx = await _booking_context(conn, body)
        if not ctx["session"]:
            await conn.execute("select set_config('role', 'service_role', true)")
            await conn.execute("select 1 from public.bookings where id = %s for update", (body.booking_id,))
            ctx = await _booking_context(conn, body)
        if ctx["session"]:
            s = ctx["session"]
            return CheckoutResponse(booking_id=body.booking_id, session_id=s["id"], url=s["url"],
                                    expires_at=datetime.fromisoformat(s["expires_at"]), reused=True)
        expires_at = session_expiry(settings)
        params = booking_session_params(ctx, body, settings, expires_at)
        await with_saved_cards(conn, providers, claims, ctx, params)
        session = await providers.payments.create_checkout_session(
            params,
            idempotency_key=f"checkout:booking:{ctx['booking_id']}:{ctx['attempt']}", stripe_account=ctx.get("stripe_account_id"))
        await conn.execute("select app.attach_booking_checkout_session(%s, %s, %s, %s)",
                           (body.booking_id, session.id, session.url, session.expires_at))
    return CheckoutResponse(booking_id=body.booking_id, session_id=session.id, url=session.url,
                            expires_at=session.expires_at, reused=False)


# The local run's stand-in for Stripe's hosted page (payments_provider = "log" only): it shows the
# order and, on "Pay", applies the checkout.session.completed Stripe would send.

LOCAL_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>Pay order #{number}</title></head>
<body style="font-family: sans-serif; max-width: 28rem; margin: 3rem auto">
<h1>{business}</h1><p>Order #{number}: <strong>{total}</strong></p><p>{state}</p>
<form method="post" action="{action}"><button type="submit" {disabled}>Pay (simulated, local run)</button></form>
<p><small>Stripe is not configured (payments_provider = "log"): this page stands in for Checkout.</small></p>
</body></html>"""


async def _local_session(pool: AsyncConnectionPool, settings: Settings, session_id: str) -> dict[str, Any]:
    if settings.payments_provider != "log":
        raise NotFound("no such page", hint="not_found")
    async with transaction_as(pool, Claims.service()) as conn:
        row = await (await conn.execute(
            "select o.id, o.business_id, o.order_number, o.total_cents, o.currency, o.payment_status, b.name "
            "from public.orders o join public.businesses b on b.id = o.business_id where o.checkout_session_id = %s",
            (session_id,))).fetchone()
        if row is None:  # a booking's session
            row = await (await conn.execute(
                "select bk.id, bk.business_id, bk.booking_number as order_number, bk.total_cents, bk.currency, bk.payment_status, "
                "b.name, 'booking' as kind from public.bookings bk join public.businesses b on b.id = bk.business_id "
                "where bk.checkout_session_id = %s", (session_id,))).fetchone()
    if row is None:
        raise NotFound("no such checkout session", hint="not_found")
    return row


@router.get("/checkout/local/{session_id}", response_class=HTMLResponse)
async def local_page(session_id: str, pool: Annotated[AsyncConnectionPool, Depends(get_pool)],
                     settings: Annotated[Settings, Depends(get_settings)]) -> str:
    order = await _local_session(pool, settings, session_id)
    paid = order["payment_status"] != "unpaid"
    return LOCAL_PAGE.format(business=html.escape(order["name"]), number=order["order_number"],
                             total=f"{order['total_cents'] / 100:.2f} {order['currency']}",
                             state=f"Payment status: {order['payment_status']}", action=f"{session_id}/pay",
                             disabled="disabled" if paid else "")


@router.post("/checkout/local/{session_id}/pay")
async def local_pay(session_id: str, pool: Annotated[AsyncConnectionPool, Depends(get_pool)],
                    settings: Annotated[Settings, Depends(get_settings)]) -> dict[str, Any]:
    order = await _local_session(pool, settings, session_id)
    stable = uuid.uuid5(uuid.NAMESPACE_URL, session_id).hex  # the same page, clicked twice, is the same event
    if order.get("kind") == "booking":
        event = booking_session_completed(session_id=session_id, payment_intent=f"pi_local_{stable[:24]}", booking_id=str(order["id"]),
                                          business_id=str(order["business_id"]), amount_cents=order["total_cents"],
                                          event_id=f"evt_local_{stable}")
        return {"outcome": await apply_event(pool, event), "booking_id": str(order["id"])}
    event = session_completed(session_id=session_id, payment_intent=f"pi_local_{stable[:24]}", order_id=str(order["id"]),
                              business_id=str(order["business_id"]), amount_cents=order["total_cents"], event_id=f"evt_local_{stable}")
    return {"outcome": await apply_event(pool, event), "order_id": str(order["id"])}
