"""Kitchen rows for the RLS walk: a printer per venue, each with a reprinted ticket it has fetched
(so print_jobs and print_job_events hold rows at both venues)."""

from __future__ import annotations

from tests.db.tenant_rows import TenantRows


def seed(ctx: TenantRows) -> None:
    conn, owner = ctx.conn, ctx.tenant.claims("owner")
    for venue, order in zip(ctx.tenant.venues, ctx.orders):
        printer = ctx.api.run(owner, "select public.register_printer(%s, 'Pass', 'kitchen', 'star_cloudprnt') as r", (venue,))[0]["r"]
        ticket = conn.execute("select id from public.kitchen_tickets where order_id = %s", (order["order_id"],)).fetchone()
        ctx.api.run(owner, "select public.reprint_ticket(%s, %s)", (ticket["id"], printer["printer_id"]))  # type: ignore[index]
        conn.execute("select app.printer_take_job(%s, null)", (printer["device_token"],))
