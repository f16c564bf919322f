"""Web Push to every device of one person: each subscription gets the message; one the push service
reports gone (404/410) is deleted; the outcome is one Sent (how many devices took it) or an error."""

from __future__ import annotations

from typing import Any

from brigade import queries
from brigade.providers import ProviderError, Sent
from worker.registry import Context


async def push_to(ctx: Context, business_id: Any, subscriptions: list[dict[str, Any]], payload: dict[str, Any]) -> Sent:
    """Push one message to these subscriptions; raises ProviderError when no device took it."""
    if ctx.providers.push is None:
        raise ProviderError("no push provider configured", hint="push_unconfigured")
    if not subscriptions:
        raise ProviderError("no push subscription", hint="no_subscription")
    delivered, gone, errors = 0, 0, []
    for sub in subscriptions:
        info = {"endpoint": sub["endpoint"], "keys": {"p256dh": sub["p256dh"], "auth": sub["auth"]}}
        result = await ctx.providers.push.push(info, payload, ttl=ctx.settings.push_ttl_seconds)
        params = {"business_id": sub.get("business_id", business_id), "id": sub["id"]}  # a driver's device may be saved elsewhere
        if result.gone:
            await ctx.conn.execute(queries.get("push_gone"), params)
            gone += 1
            ctx.log.info("push subscription gone", extra={"action": "push_subscription_removed", "business_id": str(business_id),
                                                          "subscription_id": str(sub["id"]), "status": result.status})
        elif result.error:
            errors.append(result.error)
        else:
            await ctx.conn.execute(queries.get("push_delivered"), params)
            delivered += 1
    if delivered == 0:
        raise ProviderError("; ".join(errors) or f"every subscription is gone ({gone})", hint="push_failed")
    return Sent(ctx.providers.push.name, f"{delivered}/{len(subscriptions)} devices", "sent", 0.0)
