"""Platform topics and maintenance jobs."""

from __future__ import annotations

from brigade import queries
from brigade.events import Event
from worker.registry import Context, registry


@registry.on("business.module_changed")
async def module_changed(event: Event, ctx: Context) -> None:
    """Log the switch; module setup/teardown of later modules hooks in here."""
    ctx.log.info(
        "module switched",
        extra={"action": "module_changed", "business_id": str(event.business_id), **event.payload},
    )


@registry.scheduled("maintenance.prune", "15 4 * * *")
async def prune(ctx: Context) -> None:
    """Forget old scheduled-run claims and workers gone for an hour."""
    await ctx.conn.execute(queries.get("prune_runs"), {"days": 30})
    await ctx.conn.execute(queries.get("prune_workers"))
