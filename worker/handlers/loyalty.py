"""Loyalty: the nightly tier recompute (and inactivity expiry where the business sets one)."""

from __future__ import annotations

from brigade import queries
from worker.registry import Context, registry


@registry.scheduled("loyalty.tiers", "0 4 * * *")
async def tiers(ctx: Context) -> None:
    """Trailing-12-month spend, tiers and loyalty.tier_changed events, once across worker copies."""
    row = await (await ctx.conn.execute(queries.get("recompute_tiers"))).fetchone()
    ctx.log.info("loyalty tiers", extra={"action": "loyalty_tiers", "changed": row["changed"] if row else 0})
