"""Delivery topics: dispatch a ready delivery order to own drivers, expire offers, book a courier
network when no own driver takes it, cancel through the network, and text the customer each step.

The rules (candidates, offers, the status machine) are SQL functions; these handlers call them and
talk to Uber Direct / DoorDash Drive. Every step is idempotent: offers and bookings are keyed on the
delivery, networks get our external delivery id, texts are notification_log rows.
"""

from __future__ import annotations

from typing import Any

from brigade import i18n, queries
from brigade.couriers import CourierRefused, CourierUnavailable, DeliveryJob
from brigade.events import Event
from brigade.providers import ProviderError
from worker.notify import mark, sms_sender
from worker.push import push_to
from worker.registry import Context, registry

LOCATION_RETENTION_DAYS = 30


async def one(ctx: Context, name: str, params: dict[str, Any]) -> dict[str, Any] | None:
    return await (await ctx.conn.execute(queries.get(name), params)).fetchone()


@registry.on("delivery.requested")
async def delivery_requested(event: Event, ctx: Context) -> None:
    """A delivery order is ready (or due by its prep time): create its delivery and offer it."""
    row = await one(ctx, "start_dispatch", {"business_id": event.business_id, "order_id": event.payload["order_id"]})
    ctx.log.info("dispatch started", extra={"action": "dispatch_started", "business_id": str(event.business_id),
                                            "order_id": event.payload["order_id"], "result": row and row["result"]})


@registry.on("delivery.offer_expired")
async def offer_expired(event: Event, ctx: Context) -> None:
    """An offer's time is up: close it if still open and offer the next candidate (or the networks)."""
    row = await one(ctx, "expire_offer", {"business_id": event.business_id, "offer_id": event.payload["offer_id"]})
    ctx.log.info("offer expiry", extra={"action": "offer_expired", "business_id": str(event.business_id),
                                        "offer_id": event.payload["offer_id"], "outcome": row and row["outcome"]})


def job_of(row: dict[str, Any]) -> DeliveryJob:
    pickup, dropoff = row["pickup"] or {}, row["dropoff"] or {}
    return DeliveryJob(
        external_delivery_id=row["external_delivery_id"],
        pickup_name=pickup.get("name") or "Venue", pickup_address=pickup.get("address") or {}, pickup_phone=pickup.get("phone") or "",
        dropoff_name=dropoff.get("name") or "Customer", dropoff_address=dropoff.get("address") or {},
        dropoff_phone=dropoff.get("phone") or "", order_value_cents=row["order_value_cents"], tip_cents=row["tip_cents"],
        currency=row["currency"], pickup_latitude=row["pickup_latitude"], pickup_longitude=row["pickup_longitude"],
        dropoff_latitude=row["dropoff_latitude"], dropoff_longitude=row["dropoff_longitude"], items=row["items"] or [])


@registry.on("delivery.book_provider")
async def book_provider(event: Event, ctx: Context) -> None:
    """No own driver took it: quote and book the venue's courier networks in order. All refusing
    fails the delivery; a network that is down makes the event retry (with backoff)."""
    ids = {"business_id": event.business_id, "delivery_id": event.payload["delivery_id"]}
    row = await one(ctx, "delivery_job", ids)
    if row is None or row["status"] != "booking":
        ctx.log.info("booking skipped", extra={"action": "booking_skipped", **{k: str(v) for k, v in ids.items()},
                                               "status": row and row["status"]})
        return
    job = job_of(row)
    refusals: list[str] = []
    unavailable: list[str] = []
    for name in event.payload.get("providers") or ["uber", "doordash"]:
        courier = ctx.providers.couriers.get(name)
        if courier is None:
            refusals.append(f"{name}: not configured")
            continue
        try:
            quote = await courier.quote(job)
            booking = await courier.create(job, quote)
        except CourierUnavailable as exc:
            unavailable.append(exc.message)
            continue
        except ProviderError as exc:
            refusals.append(exc.message)
            continue
        result = await one(ctx, "record_provider_booking", {
            **ids, "provider": name, "provider_delivery_id": booking.provider_delivery_id, "quote_id": quote.quote_id,
            "fee_cents": booking.fee_cents, "tracking_url": booking.tracking_url, "pickup_eta": booking.pickup_eta,
            "dropoff_eta": booking.dropoff_eta})
        outcome = result["outcome"] if result else None
        if outcome == "cancel_at_provider":  # cancelled while we were booking: undo the booking
            answer = await courier.cancel(booking.provider_delivery_id, job.external_delivery_id)
            ctx.log.warning("booked after cancellation", extra={"action": "booking_undone", "provider": name,
                                                                "cancelled": answer.cancelled, "message": answer.message})
        ctx.log.info("courier booked", extra={"action": "courier_booked", "provider": name, "outcome": outcome,
                                              "delivery_id": str(ids["delivery_id"]), "fee_cents": booking.fee_cents})
        return
    if unavailable:
        raise CourierUnavailable("; ".join(unavailable + refusals), hint="courier_unavailable")
    result = await one(ctx, "fail_delivery", {**ids, "reason": "; ".join(refusals) or "no courier network"})
    ctx.log.warning("no courier network took the delivery", extra={"action": "delivery_failed", "reasons": refusals,
                                                                   "outcome": result and result["outcome"]})


@registry.on("delivery.cancel_requested")
async def cancel_requested(event: Event, ctx: Context) -> None:
    """Cancel at the courier network holding the delivery; its refusal is recorded, not hidden."""
    p = event.payload
    courier = ctx.providers.couriers.get(p["provider"])
    if courier is None:
        raise CourierRefused(f"{p['provider']} is not configured", hint="courier_refused")
    answer = await courier.cancel(p.get("provider_delivery_id") or p["external_delivery_id"], p["external_delivery_id"])
    row = await one(ctx, "record_cancel_result", {"business_id": event.business_id, "delivery_id": p["delivery_id"],
                                                  "cancelled": answer.cancelled, "message": answer.message,
                                                  "fee_cents": answer.fee_cents})
    ctx.log.info("courier cancellation", extra={"action": "courier_cancel", "provider": p["provider"],
                                                "cancelled": answer.cancelled, "message": answer.message,
                                                "outcome": row and row["outcome"]})


def render(row: dict[str, Any], tracking: str) -> str:
    """The delivery status text in the customer's language, the ETA in the venue's time zone."""
    loc = row.get("locale")
    head = i18n.text(loc, "order.head", business=row["business_name"], number=row["order_number"])
    eta = i18n.text(loc, "delivery.eta", time=i18n.clock(row["eta"], row.get("time_zone"), loc)) if row["eta"] else ""
    if row["template"] == "delivery_assigned":
        who = row["courier_name"] or i18n.text(loc, "delivery.a_courier")
        return i18n.text(loc, "delivery.assigned", head=head, who=who, eta=eta, pin=row["dropoff_pin"], url=tracking)
    if row["template"] == "delivery_picked_up":
        return i18n.text(loc, "delivery.picked_up", head=head, eta=eta, url=tracking)
    if row["template"] == "delivery_delivered":
        return i18n.text(loc, "delivery.delivered", head=head)
    return i18n.text(loc, "delivery.cancelled", head=head, reason=row["cancel_reason"] or i18n.text(loc, "delivery.no_reason"))


@registry.on("delivery.status_changed")
async def status_changed(event: Event, ctx: Context) -> None:
    """Text the customer the new delivery status with the tracking link (once per status), and push it
    to a signed-in customer's devices too (the ETA as it stands)."""
    p = event.payload
    key = f"delivery.{p['to']}:{p['delivery_id']}"
    rows = await (await ctx.conn.execute(queries.get("pending_delivery_sms"), {"business_id": event.business_id, "event_key": key})).fetchall()
    for row in rows:
        tracking = ctx.settings.delivery_tracking_url.format(order_id=row["order_id"], access_token=row["access_token"])
        text = render(row, tracking)
        try:
            sent = await ctx.providers.sms.send(row["recipient"], text, sender=await sms_sender(ctx, event.business_id))
        except ProviderError as exc:
            await ctx.conn.execute(queries.get("mark_notification"), {
                "business_id": event.business_id, "id": row["id"], "status": "failed", "provider": None, "message_id": None,
                "cost": 0, "error": exc.message})
        else:
            await ctx.conn.execute(queries.get("mark_notification"), {
                "business_id": event.business_id, "id": row["id"], "status": "sent", "provider": sent.provider,
                "message_id": sent.message_id, "cost": sent.cost_cents, "error": None})
        if row["has_push"]:
            await push_delivery(event, ctx, row, text, tracking)


async def push_delivery(event: Event, ctx: Context, row: dict[str, Any], text: str, tracking: str) -> None:
    twin = await (await ctx.conn.execute(queries.get("record_delivery_push"), {"business_id": event.business_id, "id": row["id"],
                                                                              "user_id": str(row["user_id"])})).fetchone()
    if twin is None:
        return  # pushed by an earlier delivery of this event
    subs = await (await ctx.conn.execute(queries.get("push_subscriptions_of_user"),
                                         {"business_id": event.business_id, "user_id": row["user_id"]})).fetchall()
    try:
        sent = await push_to(ctx, event.business_id, subs, {"title": row["business_name"], "body": text, "url": tracking,
                                                           "tag": f"delivery-{row['order_id']}", "lang": i18n.pick(row.get("locale"))})
    except ProviderError as exc:
        await mark(ctx, event.business_id, twin["id"], None, exc.message)
        return
    await mark(ctx, event.business_id, twin["id"], sent, None)


@registry.scheduled("dispatch.prune_locations", "15 4 * * *")
async def prune_locations(ctx: Context) -> None:
    """Keep 30 days of driver positions (each driver's last one stays on drivers)."""
    cur = await ctx.conn.execute(queries.get("prune_driver_locations"), {"days": LOCATION_RETENTION_DAYS})
    ctx.log.info("driver positions pruned", extra={"action": "prune_driver_locations", "deleted": cur.rowcount})

