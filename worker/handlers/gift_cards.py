"""Gift-card topics: the code emailed once when a card is paid, and the nightly expiry pass.

The code exists in clear only in the gift_card.issued event (the database keeps its SHA-256); the
email's notification_log row is written in the webhook's transaction and marked once sent, so a
redelivered event sends nothing twice.
"""

from __future__ import annotations

from typing import Any

from brigade import i18n, queries
from brigade.events import Event
from brigade.providers import ProviderError
from worker.notify import deliver, mark
from worker.registry import Context, registry


def render(row: dict[str, Any], code: str) -> tuple[str, str]:
    """(subject, text) of the gift card email."""
    amount = i18n.money(row["initial_cents"], row["currency"], None)
    to = f"{row['recipient_name']},\n\n" if row["recipient_name"] else ""
    sender = f" from {row['purchaser_name']}" if row["purchaser_name"] else ""
    expiry = f"\nValid until {row['expires_at']:%Y-%m-%d}." if row["expires_at"] else "\nIt does not expire."
    note = f"\n\n\"{row['message']}\"" if row["message"] else ""
    return (f"Your {row['business_name']} gift card ({amount})",
            f"{to}A {amount} gift card for {row['business_name']}{sender}.{note}\n\nYour code: {code}{expiry}\n"
            "Keep it safe: it is shown only in this email.")


@registry.on("gift_card.issued")
async def gift_card_issued(event: Event, ctx: Context) -> None:
    """Email the code to the recipient (else the purchaser), once."""
    card_id = event.payload["gift_card_id"]
    rows = await (await ctx.conn.execute(queries.get("gift_card_pending_email"),
                                         {"business_id": event.business_id, "gift_card_id": card_id})).fetchall()
    for row in rows:
        subject, text = render(row, event.payload["code"])
        try:
            sent = await deliver(ctx, "email", row["recipient"], subject, text, idempotency_key=f"gift_card.issued:{card_id}",
                                 business_id=event.business_id)
        except ProviderError as exc:
            await mark(ctx, event.business_id, row["id"], None, exc.message)
            raise  # retried, then dead-lettered: a paid card's code is never dropped silently
        await mark(ctx, event.business_id, row["id"], sent, None)
    ctx.log.info("gift card code sent", extra={"action": "gift_card_issued_sent", "gift_card_id": card_id,
                                               "business_id": str(event.business_id), "sent": len(rows)})


@registry.scheduled("gift_cards.expire", "20 4 * * *")
async def expire(ctx: Context) -> None:
    """Write off what is left on cards past their expiry; give back holds of orders left unpaid."""
    row = await (await ctx.conn.execute(queries.get("expire_gift_cards"))).fetchone()
    ctx.log.info("gift cards swept", extra={"action": "gift_cards_expire", **((row or {}).get("r") or {})})
