"""POST /functions/v1/checkout: a Stripe Checkout Session for an unpaid order or a held booking,
priced from the database; or for a gift card being bought (buy_gift_card), whose paid session issues
it. An order's or a booking's request may carry a gift_card_code: the card pays what it holds first (in its own
committed transaction, so a wrong code counts toward the code limits), and Checkout charges only the
rest, or nothing when the card covers it all. Calling it again (or twice at once) returns the same session: the order
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

from brigade import queries
from brigade.auth import Claims
from brigade.db import transaction_as
from brigade.errors import InvalidInput, NotFound, wrap_exceptions
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
    gift_card_id: uuid.UUID | None = Field(default=None, description="a gift card being bought (buy_gift_card)")
    access_token: uuid.UUID | None = Field(default=None, description="from place_order / hold_booking / buy_gift_card; staff may omit it for an order")
    gift_card_code: str | None = Field(default=None, min_length=1, max_length=64, description="pay the order or booking with a gift card first")
    success_url: str | None = Field(default=None, max_length=2000)
    cancel_url: str | None = Field(default=None, max_length=2000)

    @model_validator(mode="after")
    def one_payable(self) -> "CheckoutRequest":
        if sum(x is not None for x in (self.order_id, self.booking_id, self.gift_card_id)) != 1:
            raise ValueError("send exactly one of order_id, booking_id and gift_card_id")
        if self.gift_card_code is not None and self.gift_card_id is not None:
            raise ValueError("gift_card_code pays an order or a booking, not a gift card")
        return self


class CheckoutResponse(BaseModel):
    order_id: uuid.UUID | None = None
    booking_id: uuid.UUID | None = None
    gift_card_id: uuid.UUID | None = None
    session_id: str | None = None
    url: str | None = None
    expires_at: datetime | None = None
    reused: bool = False
    gift_card_cents: int = 0
    amount_due_cents: int | None = None
    paid: bool = False


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
    if ctx.get("gift_card_cents"):
        # Checkout has no negative lines: the rest after the gift card is one line
        line_items = [{"quantity": 1, "price_data": {"currency": currency, "unit_amount": ctx["amount_due_cents"], "product_data": {
            "name": f"Order #{ctx['order_number']} (gift card paid {ctx['gift_card_cents'] / 100:.2f})"}}}]
        metadata["gift_card_cents"] = str(ctx["gift_card_cents"])
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
    payable = body.order_id or body.booking_id or body.gift_card_id
    if body.gift_card_id is not None:
        async with transaction_as(pool, Claims.service()) as conn:
            row = await (await conn.execute(queries.get("gift_card_business"), {"gift_card_id": body.gift_card_id})).fetchone()
        business = row["business_id"] if row else None
    else:
        business = await payable_business(pool, body.order_id, body.booking_id)
    ensure_origin_business(request, business)
    await enforce_rate_limits(pool, claims, "checkout", business, {"subject": str(payable)})
    if body.booking_id is not None:
        applied = await _apply_gift_card(body, claims, pool)
        if applied and applied["paid"]:
            return CheckoutResponse(booking_id=body.booking_id, gift_card_cents=applied["gift_card_cents"], amount_due_cents=0, paid=True)
        return await _booking_checkout(body, claims, pool, providers, settings)
    if body.gift_card_id is not None:
        return await _gift_card_checkout(body, pool, providers, settings)
    applied = await _apply_gift_card(body, claims, pool)
    if applied and applied["paid"]:
        return CheckoutResponse(order_id=body.order_id, gift_card_cents=applied["gift_card_cents"], amount_due_cents=0, paid=True)
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
                                    expires_at=datetime.fromisoformat(s["expires_at"]), reused=True,
                                    gift_card_cents=ctx["gift_card_cents"], amount_due_cents=ctx["amount_due_cents"])
        expires_at = session_expiry(settings)
        params = session_params(ctx, body, settings, expires_at)
        await with_saved_cards(conn, providers, claims, ctx, params)
        session = await providers.payments.create_checkout_session(
            params, idempotency_key=f"checkout:{ctx['order_id']}:{ctx['attempt']}", stripe_account=ctx.get("stripe_account_id"))
        await conn.execute("select app.attach_checkout_session(%s, %s, %s, %s)",
                           (body.order_id, session.id, session.url, session.expires_at))
    return CheckoutResponse(order_id=body.order_id, session_id=session.id, url=session.url,
                            expires_at=session.expires_at, reused=False,
                            gift_card_cents=ctx["gift_card_cents"], amount_due_cents=ctx["amount_due_cents"])


async def _apply_gift_card(body: CheckoutRequest, claims: Claims, pool: AsyncConnectionPool) -> dict[str, Any] | None:
    """The order's or booking's gift_card_code, applied and committed before the session is made; 400 when it
    cannot pay (after the commit, so the try stays counted). A code sent again for a payable already holding
    a card (a retried checkout) is not applied twice."""
    if body.gift_card_code is None:
        return None
    booking = body.booking_id is not None
    async with wrap_exceptions(), transaction_as(pool, claims) as conn:
        held = await (_booking_context(conn, body) if booking else _context(conn, body))
    if held["gift_card_cents"] > 0:
        return {"paid": False, "gift_card_cents": held["gift_card_cents"]}
    query, target = ("apply_gift_card_to_booking", {"booking_id": body.booking_id}) if booking else \
        ("apply_gift_card", {"order_id": body.order_id})
    async with wrap_exceptions(), transaction_as(pool, claims) as conn:
        row = await (await conn.execute(queries.get(query), {
            **target, "access_token": body.access_token, "code": body.gift_card_code})).fetchone()
    applied = row["r"] if row else {}
    if not applied.get("applied"):
        reason = applied.get("reason", "unknown_code")
        raise InvalidInput(f"the gift card cannot pay this {'booking' if booking else 'order'} ({reason})", code="BR141",
                           hint=f"gift_card_{reason}")
    return applied


def gift_card_session_params(ctx: dict[str, Any], body: CheckoutRequest, settings: Settings, expires_at: datetime) -> dict[str, Any]:
    """Stripe Checkout Session parameters for a gift card being bought (metadata kind=gift_card)."""
    card_id = ctx["gift_card_id"]
    metadata = {"kind": "gift_card", "gift_card_id": card_id, "business_id": ctx["business_id"]}
    params: dict[str, Any] = {
        "mode": "payment",
        "line_items": [{"quantity": 1, "price_data": {"currency": ctx["currency"], "unit_amount": ctx["amount_cents"],
                                                      "product_data": {"name": f"{ctx['business_name']} gift card"[:250]}}}],
        "client_reference_id": card_id,
        "metadata": metadata,
        "payment_intent_data": {"metadata": metadata, "description": f"{ctx['business_name']} gift card"},
        "success_url": (body.success_url or settings.checkout_success_url).replace("{order_id}", card_id),
        "cancel_url": (body.cancel_url or settings.checkout_cancel_url).replace("{order_id}", card_id),
        "expires_at": int(expires_at.timestamp()),
        "customer_email": ctx["customer_email"],
    }
    if ctx.get("stripe_account_id") and ctx["application_fee_cents"] > 0:
        params["payment_intent_data"]["application_fee_amount"] = ctx["application_fee_cents"]
    return params


async def _gift_card_checkout(body: CheckoutRequest, pool: AsyncConnectionPool, providers: Providers,
                              settings: Settings) -> CheckoutResponse:
    """The gift-card branch: the card row is locked while its session is made, like an order's."""
    args = {"gift_card_id": body.gift_card_id, "access_token": body.access_token}
    async with wrap_exceptions(), transaction_as(pool, Claims.service()) as conn:
        ctx = (await (await conn.execute(queries.get("gift_card_context"), args)).fetchone())["ctx"]  # type: ignore[index]
        await conn.execute("select 1 from public.gift_cards where id = %s for update", (body.gift_card_id,))
        ctx = (await (await conn.execute(queries.get("gift_card_context"), args)).fetchone())["ctx"]  # type: ignore[index]
        if ctx["session"]:
            s = ctx["session"]
            return CheckoutResponse(gift_card_id=body.gift_card_id, session_id=s["id"], url=s["url"],
                                    expires_at=datetime.fromisoformat(s["expires_at"]), reused=True, amount_due_cents=ctx["amount_cents"])
        expires_at = session_expiry(settings)
        session = await providers.payments.create_checkout_session(
            gift_card_session_params(ctx, body, settings, expires_at),
            idempotency_key=f"checkout:gift_card:{ctx['gift_card_id']}:{ctx['attempt']}", stripe_account=ctx.get("stripe_account_id"))
        await conn.execute(queries.get("attach_gift_card_session"), {"gift_card_id": body.gift_card_id, "session_id": session.id,
                                                                     "url": session.url, "expires_at": session.expires_at})
    return CheckoutResponse(gift_card_id=body.gift_card_id, session_id=session.id, url=session.url,
                            expires_at=session.expires_at, reused=False, amount_due_cents=ctx["amount_cents"])


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
                                    expires_at=datetime.fromisoformat(s["expires_at"]), reused=True,
                                    gift_card_cents=ctx["gift_card_cents"], amount_due_cents=ctx["amount_due_cents"])
        expires_at = session_expiry(settings)
        params = booking_session_params(ctx, body, settings, expires_at)
        await with_saved_cards(conn, providers, claims, ctx, params)
        session = await providers.payments.create_checkout_session(
            params,
            idempotency_key=f"checkout:booking:{ctx['booking_id']}:{ctx['attempt']}", stripe_account=ctx.get("stripe_account_id"))
        await conn.execute("select app.attach_booking_checkout_session(%s, %s, %s, %s)",
                           (body.booking_id, session.id, session.url, session.expires_at))
    return CheckoutResponse(booking_id=body.booking_id, session_id=session.id, url=session.url,
                            expires_at=session.expires_at, reused=False,
                            gift_card_cents=ctx["gift_card_cents"], amount_due_cents=ctx["amount_due_cents"])


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
                "b.name, 'booking' as kind, bk.gift_card_cents from public.bookings bk join public.businesses b on b.id = bk.business_id "
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
                                          business_id=str(order["business_id"]),
                                          amount_cents=order["total_cents"] - order["gift_card_cents"], event_id=f"evt_local_{stable}")
        return {"outcome": await apply_event(pool, event), "booking_id": str(order["id"])}
    event = session_completed(session_id=session_id, payment_intent=f"pi_local_{stable[:24]}", order_id=str(order["id"]),
                              business_id=str(order["business_id"]), amount_cents=order["total_cents"], event_id=f"evt_local_{stable}")
    return {"outcome": await apply_event(pool, event), "order_id": str(order["id"])}
