"""Messaging: a new message nudges each recipient who has not read the conversation in the last two
minutes, once per message (a notification_log row per recipient and channel): by push when they have
a subscription at the business, else by SMS (customers and drivers; staff are pushed only). The
nudge names the side that wrote, never its phone number or the message itself."""

from __future__ import annotations

from brigade import i18n, queries
from brigade.events import Event
from brigade.providers import ProviderError
from worker.notify import deliver, mark
from worker.push import push_to
from worker.registry import Context, registry


@registry.on("message.sent")
async def message_sent(event: Event, ctx: Context) -> None:
    """Nudge the offline side of a conversation about a new message."""
    message_id = event.payload["message_id"]
    targets = await (await ctx.conn.execute(queries.get("message_nudge_targets"),
                                            {"business_id": event.business_id, "message_id": message_id})).fetchall()
    for t in targets:
        if t["online"] or (not t["has_push"] and (t["role"] == "staff" or not t["phone"])):
            continue
        channel = "push" if t["has_push"] else "sms"
        recipient = f"user:{t['user_id']}" if channel == "push" else t["phone"]
        row = await (await ctx.conn.execute(queries.get("record_message_nudge"), {
            "business_id": event.business_id, "event_key": f"message:{message_id}", "channel": channel, "recipient": recipient,
            "conversation_id": t["conversation_id"], "role": t["role"]})).fetchone()
        if row is None:
            continue  # nudged by an earlier delivery of this event
        loc = t["locale"]
        about = i18n.text(loc, "message.about", number=t["order_number"]) if t["order_number"] else ""
        text = i18n.text(loc, "message.nudge", sender=i18n.text(loc, f"message.from_{t['sender_role']}"), venue=t["venue_name"], about=about)
        try:
            if channel == "push":
                subs = await (await ctx.conn.execute(queries.get("push_subscriptions_of_user"),
                                                     {"business_id": event.business_id, "user_id": t["user_id"]})).fetchall()
                sent = await push_to(ctx, event.business_id, subs, {"title": t["venue_name"], "body": text,
                                                                   "tag": f"conversation-{t['conversation_id']}", "lang": i18n.pick(loc)})
            else:
                sent = await deliver(ctx, "sms", t["phone"], "", text, idempotency_key=f"message:{message_id}:{t['role']}",
                                     business_id=event.business_id)
        except ProviderError as exc:
            await mark(ctx, event.business_id, row["id"], None, exc.message)
            continue
        await mark(ctx, event.business_id, row["id"], sent, None)
