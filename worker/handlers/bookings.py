"""Booking topics: holds that run out (booking.expired, delayed), the confirmation, reminder,
cancellation and rescheduled emails, refunds sent to Stripe; and the scheduled jobs (hold sweep,
reminders, session generation, completion).

Emails follow the order flow's pattern: the database writes one notification_log row per (event,
channel, recipient) in the transaction that caused it; the handler sends the rows still pending and
marks them, so a redelivered event sends nothing twice.
"""

from __future__ import annotations

from typing import Any

from brigade import i18n, queries
from brigade.events import Event
from brigade.providers import ProviderError
from worker.notify import deliver, mark, receipt_parts
from worker.registry import Context, registry

SESSION_DAYS_AHEAD = 28


def party_text(party: dict[str, int]) -> str:
    return ", ".join(f"{n} {tier}" for tier, n in party.items() if n)


def render(row: dict[str, Any]) -> tuple[str, str]:
    """(subject, text) of a booking message, in the customer's language (else the venue's), the
    session's time in the venue's zone and the money as that locale writes them."""
    loc = row.get("locale")
    when = i18n.day_and_time(row["starts_at"], row["time_zone"], loc)
    total = i18n.money(row["total_cents"], row["currency"], loc)
    refund = int((row["detail"] or {}).get("refund_cents") or 0)
    names = {"activity": row["activity_name"], "number": row["booking_number"]}
    details = i18n.text(loc, "booking.details", number=row["booking_number"], activity=row["activity_name"], venue=row["venue_name"],
                        when=when, party=party_text(row["party"]), size=row["party_size"], total=total)
    if row["template"] == "booking_confirmation":
        return i18n.text(loc, "booking.confirmed_subject", **names), i18n.text(loc, "booking.confirmed") + "\n" + details
    if row["template"] == "booking_reminder":
        return i18n.text(loc, "booking.reminder_subject", activity=row["activity_name"], when=when), i18n.text(loc, "booking.reminder") + "\n" + details
    if row["template"] == "booking_rescheduled":
        return i18n.text(loc, "booking.moved_subject", **names), i18n.text(loc, "booking.moved") + "\n" + details
    if row["template"] == "booking_cancelled":
        money_back = (i18n.text(loc, "booking.refund_issued", amount=i18n.money(refund, row["currency"], loc)) if refund > 0
                      else i18n.text(loc, "booking.no_refund"))
        return i18n.text(loc, "booking.cancelled_subject", **names), i18n.text(loc, "booking.cancelled") + f"\n{details}\n{money_back}"
    if row["template"] == "booking_paid_too_late":
        return (i18n.text(loc, "booking.paid_too_late_subject", **names),
                i18n.text(loc, "booking.paid_too_late", details=details, amount=i18n.money(refund, row["currency"], loc)))
    return i18n.text(loc, "booking.head", business=row["business_name"], number=row["booking_number"]), details


async def send_pending(event: Event, ctx: Context, event_key: str) -> list[str]:
    """Send every pending notification of a booking event; returns the recipients sent to."""
    rows = await (await ctx.conn.execute(queries.get("booking_pending_notifications"),
                                         {"business_id": event.business_id, "event_key": event_key})).fetchall()
    done: list[str] = []
    for row in rows:
        subject, text = render(row)
        if row["channel"] not in ("sms", "email"):
            continue
        body = f"{subject}. {text}" if row["channel"] == "sms" else text
        html, attachments = None, None
        if row["template"] == "booking_confirmation" and row["channel"] == "email":
            # the confirmation carries the booking's receipt: HTML body and the PDF attached
            _, html, receipt_text, attachments = await receipt_parts(ctx, "booking", row["booking_id"])
            body = f"{text}\n\n{receipt_text}"
        try:
            sent = await deliver(ctx, row["channel"], row["recipient"], subject, body, idempotency_key=f"{event_key}:{row['id']}",
                                 business_id=event.business_id, html=html, attachments=attachments)
        except ProviderError as exc:
            await mark(ctx, event.business_id, row["id"], None, exc.message)
            ctx.log.warning("send failed", extra={"action": "notification_failed", "channel": row["channel"],
                                                  "business_id": str(event.business_id), "error": exc.message})
            continue
        await mark(ctx, event.business_id, row["id"], sent, None)
        done.append(row["recipient"])
    return done


@registry.on("booking.expired")
async def booking_expired(event: Event, ctx: Context) -> None:
    """The hold's time is up: release its seats (once) and close its Checkout Session at Stripe."""
    params = {"business_id": event.business_id, "booking_id": event.payload["booking_id"]}
    await ctx.conn.execute(queries.get("booking_expire"), params)
    row = await (await ctx.conn.execute(queries.get("booking_after_expiry"), params)).fetchone()
    if row and row["status"] == "expired" and row["checkout_session_id"] and row["payment_status"] in ("unpaid", "pending"):
        try:
            await ctx.providers.payments.expire_checkout_session(row["checkout_session_id"], stripe_account=row["stripe_account_id"])
        except ProviderError as exc:  # a payment that still arrives re-takes the seats or is refunded
            ctx.log.warning("could not expire checkout session", extra={"action": "booking_session_expire_failed",
                                                                         "booking_id": params["booking_id"], "error": exc.message})
    ctx.log.info("booking hold checked", extra={"action": "booking_expired", "booking_id": params["booking_id"],
                                                "status": row["status"] if row else None})


@registry.on("booking.confirmed")
async def booking_confirmed(event: Event, ctx: Context) -> None:
    """The confirmation email."""
    await send_pending(event, ctx, f"booking.confirmed:{event.payload['booking_id']}")


@registry.on("booking.cancelled")
async def booking_cancelled(event: Event, ctx: Context) -> None:
    """The cancellation email, with the refund in it."""
    await send_pending(event, ctx, f"booking.cancelled:{event.payload['booking_id']}")


@registry.on("booking.rescheduled")
async def booking_rescheduled(event: Event, ctx: Context) -> None:
    """The email with the new time."""
    await send_pending(event, ctx, event.payload["event_key"])


@registry.on("booking.reminder")
async def booking_reminder(event: Event, ctx: Context) -> None:
    """The reminder 24 hours before."""
    await send_pending(event, ctx, event.payload["event_key"])


@registry.on("booking.paid_too_late")
async def booking_paid_too_late(event: Event, ctx: Context) -> None:
    """Tell the booker their late payment could not keep the booking and is refunded."""
    await send_pending(event, ctx, f"booking.paid_too_late:{event.payload['booking_id']}")


@registry.on("booking.refund_requested")
async def booking_refund_requested(event: Event, ctx: Context) -> None:
    """Send a booking refund (a cancellation's, or the automatic one for a payment that came too late) to
    Stripe with its idempotency key. A refusal fails the event, so the worker retries it and, after the
    last attempt, it waits in the dead-letter queue: money owed is never dropped silently."""
    params = {"business_id": event.business_id, "refund_id": event.payload["refund_id"]}
    row = await (await ctx.conn.execute(queries.get("booking_refund_to_send"), params)).fetchone()
    if row is None:
        return  # sent already, or being sent by another copy
    result = await ctx.providers.payments.create_refund(
        {"payment_intent": row["payment_intent_id"], "amount": row["amount_cents"],
         "metadata": {"kind": "booking", "refund_id": str(row["id"]), "booking_id": str(row["booking_id"]),
                      "business_id": str(event.business_id)}},
        idempotency_key=row["idempotency_key"], stripe_account=row["stripe_account_id"])
    await ctx.conn.execute(queries.get("booking_record_refund"), {
        "business_id": event.business_id, "booking_id": row["booking_id"], "refund_id": row["id"], "provider_refund_id": result.id,
        "status": result.status, "amount_cents": row["amount_cents"], "failure": result.failure_reason})
    ctx.log.info("booking refund sent", extra={"action": "booking_refund_sent", "booking_id": str(row["booking_id"]),
                                               "refund_id": str(row["id"]), "status": result.status})


@registry.scheduled("bookings.expire_holds", "* * * * *")
async def expire_holds(ctx: Context) -> None:
    """Safety net for the delayed events: every hold whose time is up."""
    row = await (await ctx.conn.execute(queries.get("bookings_expire_due_holds"))).fetchone()
    ctx.log.info("booking holds swept", extra={"action": "bookings_expire_holds", "expired": row["expired"] if row else 0})


@registry.scheduled("bookings.reminders", "*/10 * * * *")
async def reminders(ctx: Context) -> None:
    """Queue the 24-hour reminders (the booking.reminder handler sends them)."""
    row = await (await ctx.conn.execute(queries.get("bookings_queue_reminders"))).fetchone()
    ctx.log.info("booking reminders queued", extra={"action": "bookings_reminders", "queued": row["queued"] if row else 0})


@registry.scheduled("bookings.generate_sessions", "15 2 * * *")
async def generate_sessions(ctx: Context) -> None:
    """Sessions for the coming weeks from the weekly schedules."""
    row = await (await ctx.conn.execute(queries.get("bookings_generate_sessions"), {"days": SESSION_DAYS_AHEAD})).fetchone()
    ctx.log.info("booking sessions generated", extra={"action": "bookings_generate_sessions", "created": row["created"] if row else 0})


@registry.scheduled("bookings.complete", "*/15 * * * *")
async def complete(ctx: Context) -> None:
    """Checked-in bookings are completed once their session has ended."""
    row = await (await ctx.conn.execute(queries.get("bookings_complete_past"))).fetchone()
    ctx.log.info("bookings completed", extra={"action": "bookings_complete", "completed": row["completed"] if row else 0})
