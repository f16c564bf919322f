"""Order topics: the receipt and pickup code once paid, the call when the order is ready.

Each send is a notification_log row written by the database in the transaction that caused it
(natural key: event, channel, recipient); the handler sends the rows still pending and marks them,
so a redelivered event sends nothing twice once its transaction committed.
"""

from __future__ import annotations

import json
from typing import Any

from brigade import i18n, queries
from brigade.events import Event
from brigade.providers import ProviderError
from worker.notify import deliver, mark, receipt_parts
from worker.push import push_to
from worker.registry import Context, registry





def render(row: dict[str, Any], pickup_code: str | None) -> tuple[str, str]:
    """(subject, text) of a message, in the customer's language (else the venue's), money and the
    order time as that locale writes them, in the venue's time zone."""
    loc = row.get("locale")
    total = i18n.money(row["total_cents"], row["currency"], loc)
    head = i18n.text(loc, "order.head", business=row["business_name"], number=row["order_number"])
    if row["template"] == "pickup_code":
        return head, i18n.text(loc, "order.pickup_code", head=head, total=total, code=pickup_code, venue=row["venue_name"])
    if row["template"] == "order_ready":
        return head, i18n.text(loc, "order.ready", head=head, venue=row["venue_name"])
    if row["template"] == "receipt":
        lines = "\n".join(f"  {line['quantity']} x {line['name']}" + (f" ({line['variant']})" if line["variant"] else "")
                          + f"  {i18n.money(line['line_total_cents'], row['currency'], loc)}" for line in row["lines"] or [])
        placed = i18n.text(loc, "order.receipt_placed", when=i18n.when(row["placed_at"], row["time_zone"], loc)) if row.get("placed_at") else ""
        code = "\n" + i18n.text(loc, "order.receipt_code", code=pickup_code) if pickup_code else ""
        return (i18n.text(loc, "order.receipt_subject", head=head),
                f"{i18n.text(loc, 'order.receipt_thanks')}\n{placed}\n{lines}\n{i18n.text(loc, 'order.receipt_total', total=total)}{code}")
    return head, i18n.text(loc, "order.confirmed", head=head, total=total)


async def send_pending(event: Event, ctx: Context, event_key: str, pickup_code: str | None = None) -> list[str]:
    """Send every pending notification of an event; returns the channels sent."""
    rows = await (await ctx.conn.execute(queries.get("pending_notifications"), {"business_id": event.business_id, "event_key": event_key})).fetchall()
    done: list[str] = []
    for row in rows:
        subject, text = render(row, pickup_code)
        if row["channel"] not in ("sms", "email", "voice"):
            continue
        html, attachments = None, None
        if row["template"] == "receipt" and row["channel"] == "email":
            # the receipt proper: HTML body and the PDF attached, from the same templates as the receipt function
            # (its money and dates in the customer's locale; the pickup code line from the catalogs)
            _, html, receipt_text, attachments = await receipt_parts(ctx, "order", row["order_id"], locale=row["locale"])
            code = i18n.text(row["locale"], "order.receipt_code", code=pickup_code) + "\n\n" if pickup_code else ""
            text = code + receipt_text
        try:
            sent = await deliver(ctx, row["channel"], row["recipient"], subject, text, idempotency_key=f"{event_key}:{row['id']}",
                                 business_id=event.business_id, html=html, attachments=attachments)
        except ProviderError as exc:
            await mark(ctx, event.business_id, row["id"], None, exc.message)
            if row["channel"] == "voice":  # the call failed: text them instead
                fallback = await (await ctx.conn.execute(queries.get("voice_fallback_sms"), {"business_id": event.business_id, "id": row["id"]})).fetchone()
                if fallback:
                    done += await send_pending(event, ctx, event_key, pickup_code)
            ctx.log.warning("send failed", extra={"action": "notification_failed", "channel": row["channel"],
                                                  "business_id": str(event.business_id), "error": exc.message})
            continue
        await mark(ctx, event.business_id, row["id"], sent, None)
        done.append(row["channel"])
    return done


@registry.on("order.paid")
async def order_paid(event: Event, ctx: Context) -> None:
    """Send the pickup code (SMS) and the receipt (email)."""
    order_id = event.payload["order_id"]
    channels = await send_pending(event, ctx, f"order.paid:{order_id}", event.payload.get("pickup_code"))
    ctx.log.info("order paid notifications", extra={"action": "order_paid_sent", "order_id": order_id,
                                                    "business_id": str(event.business_id), "channels": channels})


@registry.on("order.cash_accepted")
async def order_cash_accepted(event: Event, ctx: Context) -> None:
    """Text the customer that the kitchen took their cash order and what is due (the receipt follows the cash)."""
    order_id = event.payload["order_id"]
    channels = await send_pending(event, ctx, f"order.cash_accepted:{order_id}")
    ctx.log.info("cash order confirmed", extra={"action": "order_cash_accepted_sent", "order_id": order_id,
                                                "business_id": str(event.business_id), "channels": channels})


@registry.on("order.ready")
async def order_ready(event: Event, ctx: Context) -> None:
    """Call the customer to say the order is ready (SMS when the call cannot be placed)."""
    order_id = event.payload["order_id"]
    channels = await send_pending(event, ctx, f"order.ready:{order_id}")
    ctx.log.info("order ready notifications", extra={"action": "order_ready_sent", "order_id": order_id,
                                                     "business_id": str(event.business_id), "channels": channels})





PUSH_STATUSES = {"accepted", "preparing", "ready", "completed", "cancelled"}


def render_push(ctx: Context, row: dict[str, Any]) -> dict[str, Any]:
    """The notification a browser shows (in the customer's language): title, body, the page it opens,
    a tag so a newer status replaces the last one."""
    loc = row.get("locale")
    status = row["detail"].get("status", "")
    key = f"push.order.{status}" if status in PUSH_STATUSES else "push.order.updated"
    title = i18n.text(loc, "order.head", business=row["business_name"], number=row["order_number"])
    body = i18n.text(loc, key, number=row["order_number"], venue=row["venue_name"] or "")
    url = ctx.settings.delivery_tracking_url.format(order_id=row["order_id"], access_token=row["access_token"])
    return {"title": title, "body": body, "url": url, "tag": f"order-{row['order_id']}", "lang": i18n.pick(loc)}


@registry.on("push.send")
async def push_send(event: Event, ctx: Context) -> None:
    """Push one pending notification_log row (order status) to every device of its user."""
    params = {"business_id": event.business_id, "id": event.payload["notification_id"]}
    row = await (await ctx.conn.execute(queries.get("pending_push"), params)).fetchone()
    if row is None:
        return  # sent by an earlier delivery of this event
    user_id = row["recipient"].removeprefix("user:")
    if row["template"] == "delivery_offer":
        subs = await (await ctx.conn.execute(queries.get("push_subscriptions_of_driver"), {"user_id": user_id})).fetchall()
        d = row["detail"]
        payload = {"title": row["venue_name"], "tag": f"offer-{d['offer_id']}", "lang": i18n.pick(row.get("locale")),
                   "body": i18n.text(row.get("locale"), "push.delivery_offer", venue=row["venue_name"], km=d.get("distance_km") or "?",
                                     seconds=d.get("seconds", 0)), "offer_id": d["offer_id"]}
    else:
        subs = await (await ctx.conn.execute(queries.get("push_subscriptions_of_user"), {"business_id": event.business_id,
                                                                                        "user_id": user_id})).fetchall()
        payload = render_push(ctx, row)
    try:
        sent = await push_to(ctx, event.business_id, subs, payload)
    except ProviderError as exc:
        await mark(ctx, event.business_id, row["id"], None, exc.message)
        ctx.log.info("push not delivered", extra={"action": "push_failed", "business_id": str(event.business_id), "error": exc.message})
        return
    await mark(ctx, event.business_id, row["id"], sent, None)


async def refund_cancelled(event: Event, ctx: Context) -> None:
    """Refund in full a cancelled order that holds money, once (a fixed idempotency key). A refusal fails
    the event, so the worker retries it and at last parks it in the dead-letter queue: money owed is
    never dropped silently."""
    order_id = event.payload["order_id"]
    row = await (await ctx.conn.execute(queries.get("order_automatic_refund"),
                                        {"business_id": event.business_id, "order_id": order_id})).fetchone()
    req = row["r"] if row else None
    if not req:
        return  # unpaid, already refunded, or sent by an earlier delivery of this event
    result = await ctx.providers.payments.create_refund(
        {"payment_intent": req["payment_intent_id"], "amount": req["amount_cents"],
         "metadata": {"refund_id": req["refund_id"], "order_id": req["order_id"], "business_id": req["business_id"]}},
        idempotency_key=req["idempotency_key"], stripe_account=req["stripe_account_id"])
    await ctx.conn.execute(queries.get("order_record_refund"), {
        "business_id": event.business_id, "order_id": order_id, "refund_id": req["refund_id"], "provider_refund_id": result.id,
        "status": result.status, "amount_cents": req["amount_cents"], "failure": result.failure_reason})
    ctx.log.info("cancelled order refunded", extra={"action": "order_auto_refund", "order_id": order_id, "topic": event.topic,
                                                    "business_id": str(event.business_id), "status": result.status})


@registry.on("order.cancelled")
async def order_cancelled(event: Event, ctx: Context) -> None:
    """Staff cancelled an order: if it was paid, refund it."""
    await refund_cancelled(event, ctx)


@registry.on("order.paid_after_cancellation")
async def order_paid_after_cancellation(event: Event, ctx: Context) -> None:
    """Money arrived for an order already cancelled: give it back."""
    await refund_cancelled(event, ctx)


@registry.on("stock.critical")
async def stock_critical(event: Event, ctx: Context) -> None:
    """Email the venue's owners and managers (never customers) that an ingredient crossed its level."""
    p = event.payload
    params = {"business_id": event.business_id, "venue_id": p["venue_id"]}
    recipients = [r["email"] for r in await (await ctx.conn.execute(queries.get("venue_manager_emails"), params)).fetchall()]
    subject = f"Low stock: {p['name']} ({p['quantity']} {p['unit']} left)"
    text = (f"{p['name']} is down to {p['quantity']} {p['unit']}, at or below its critical level of "
            f"{p['critical_level']} {p['unit']}. Products that use it go unavailable when it runs out.")
    key = f"stock.critical:{event.msg_id}"
    for email in recipients:
        row = await (await ctx.conn.execute(queries.get("record_stock_alert"), {**params, "event_key": key, "recipient": email,
                                                    "detail": json.dumps({"sku": p["sku"], "quantity": p["quantity"]})})).fetchone()
        if row is None:
            continue  # already sent for this event
        sent = await deliver(ctx, "email", email, subject, text, idempotency_key=f"{key}:{email}")
        await mark(ctx, event.business_id, row["id"], sent, None)
