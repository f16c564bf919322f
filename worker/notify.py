"""What every handler that messages someone shares: one send through the configured provider of a
channel, and recording how it went on its notification_log row."""

from __future__ import annotations

from typing import Any

from brigade import queries
from brigade.providers import Sent
from worker.registry import Context


async def sms_sender(ctx: Context, business_id: Any) -> dict[str, Any] | None:
    """The business's own SMS sender (number or Messaging Service), or None for the platform number."""
    if business_id is None:
        return None
    row = await (await ctx.conn.execute(queries.get("sms_sender"), {"business_id": business_id})).fetchone()
    return row["sender"] if row else None


async def deliver(ctx: Context, channel: str, recipient: str, subject: str, text: str, *, idempotency_key: str,
                  status_callback: str | None = None, headers: dict[str, str] | None = None, business_id: Any = None) -> Sent:
    """Send on one channel (sms, email or voice); raises ProviderError when the provider refuses.
    SMS go out from the business's own sender when it has one (so STOP reaches that business only)."""
    if channel == "sms":
        return await ctx.providers.sms.send(recipient, text, status_callback=status_callback,
                                            sender=await sms_sender(ctx, business_id))
    if channel == "email":
        return await ctx.providers.email.send(recipient, subject, text, idempotency_key=idempotency_key, headers=headers)
    if channel == "voice":
        return await ctx.providers.voice.call(recipient, text)
    raise ValueError(f"no provider for channel {channel!r}")


async def mark(ctx: Context, business_id: Any, row_id: Any, sent: Sent | None, error: str | None) -> None:
    """Record a send on its notification_log row: sent (provider, id, cost) or failed (the error)."""
    await ctx.conn.execute(queries.get("mark_notification"), {
        "business_id": business_id, "id": row_id, "status": "failed" if sent is None else "sent",
        "provider": sent.provider if sent else None, "message_id": sent.message_id if sent else None,
        "cost": sent.cost_cents if sent else 0, "error": error})
