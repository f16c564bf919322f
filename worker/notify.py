"""What every handler that messages someone shares: one send through the configured provider of a
channel, and recording how it went on its notification_log row."""

from __future__ import annotations

from typing import Any

from brigade import queries
from brigade.receipts import receipt_html, receipt_pdf, receipt_text
from brigade.providers import Attachment, Sent
from worker.registry import Context


async def sms_sender(ctx: Context, business_id: Any) -> dict[str, Any] | None:
    """The business's own SMS sender (number or Messaging Service), or None for the platform number."""
    if business_id is None:
        return None
    row = await (await ctx.conn.execute(queries.get("sms_sender"), {"business_id": business_id})).fetchone()
    return row["sender"] if row else None


async def deliver(ctx: Context, channel: str, recipient: str, subject: str, text: str, *, idempotency_key: str,
                  status_callback: str | None = None, headers: dict[str, str] | None = None, business_id: Any = None,
                  html: str | None = None, attachments: list[Attachment] | None = None) -> Sent:
    """Send on one channel (sms, email or voice); raises ProviderError when the provider refuses.
    SMS go out from the business's own sender when it has one (so STOP reaches that business only)."""
    if channel == "sms":
        return await ctx.providers.sms.send(recipient, text, status_callback=status_callback,
                                            sender=await sms_sender(ctx, business_id))
    if channel == "email":
        return await ctx.providers.email.send(recipient, subject, text, idempotency_key=idempotency_key, headers=headers,
                                              html=html, attachments=attachments)
    if channel == "voice":
        return await ctx.providers.voice.call(recipient, text)
    raise ValueError(f"no provider for channel {channel!r}")


async def mark(ctx: Context, business_id: Any, row_id: Any, sent: Sent | None, error: str | None) -> None:
    """Record a send on its notification_log row: sent (provider, id, cost) or failed (the error)."""
    await ctx.conn.execute(queries.get("mark_notification"), {
        "business_id": business_id, "id": row_id, "status": "failed" if sent is None else "sent",
        "provider": sent.provider if sent else None, "message_id": sent.message_id if sent else None,
        "cost": sent.cost_cents if sent else 0, "error": error})


async def receipt_parts(ctx: Context, kind: str, payable_id: Any, locale: str | None = None) -> tuple[dict[str, Any], str, str, list[Attachment]]:
    """The receipt of a paid order or booking for its email: (data, HTML body, text body, [the PDF]);
    with a locale (the customer's), money and dates are written that way instead of the business's."""
    row = await (await ctx.conn.execute(queries.get("receipt"), {"kind": kind, "id": payable_id, "token": None})).fetchone()
    data = row["receipt"] if row else {}
    if locale and data.get("business"):
        data = {**data, "business": {**data["business"], "locale": locale}}
    pdf = Attachment(f"receipt-{data['business']['name'].replace(' ', '-').lower()}-{data['number'].lstrip('#')}.pdf", receipt_pdf(data))
    return data, receipt_html(data), receipt_text(data), [pdf]
