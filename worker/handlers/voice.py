"""Voice: the plan's included credits, topped up at each billing period's start and on a plan change
(app.top_up_plan_voice_credits: idempotent per period and allowance)."""

from __future__ import annotations

from brigade import queries
from brigade.events import Event
from worker.registry import Context, registry


async def top_up(event: Event, ctx: Context) -> None:
    row = await (await ctx.conn.execute(queries.get("top_up_plan_voice_credits"), {"business_id": event.business_id})).fetchone()
    ctx.log.info("plan voice credits", extra={"action": "voice_plan_credits", "business_id": str(event.business_id),
                                              "granted": row["granted"] if row else 0})


registry.on("billing.period_started")(top_up)
registry.on("business.plan_changed")(top_up)
