"""Messaging: a support conversation a signed-in customer opened at the venue, with a staff reply."""

from __future__ import annotations

from brigade.auth import Claims
from tests.db.tenant_rows import TenantRows


def seed(ctx: TenantRows) -> None:
    customer = Claims.user(ctx.factory.user())
    opened = ctx.api.run(customer, "select public.open_support_conversation(%s, 'Do you have oat milk?') as r", (ctx.menu.venue_id,))[0]["r"]
    ctx.api.run(Claims.user(ctx.tenant.users["staff"]), "select public.send_message(%s, 'We do.')", (opened["conversation_id"],))
