"""Cash rows for the RLS walk: a pay-at-counter order at the main venue, its cash collected (as the
service) and handed over, so cash_collections, cash_handovers and cash_reconciliation hold a row per tenant."""

from __future__ import annotations

import json

from tests.db.tenant_rows import TenantRows
from tests.ordering_kit import order_payload


def seed(ctx: TenantRows) -> None:
    conn, menu = ctx.conn, ctx.menu
    conn.execute("update public.venues set cash_methods = '{pay_at_counter}' where id = %s", (menu.venue_id,))
    row = conn.execute("select app.place_order(%s) as r", (json.dumps(order_payload(menu, payment_method="pay_at_counter")),)).fetchone()
    assert row is not None
    order = row["r"]
    conn.execute("select app.record_cash_collection(%s, %s, 0)", (order["order_id"], order["total_cents"]))
    conn.execute("select app.record_cash_handover(%s, null, %s)", (menu.venue_id, order["total_cents"]))
    # a cash order's kitchen takes its stock at admission: put it back, so the walk's later seeds can still order
    conn.execute("insert into public.stock_movements (business_id, venue_id, stock_item_id, delta, reason) "
                 "select business_id, venue_id, id, 100, 'delivery' from public.stock_items where venue_id = %s", (menu.venue_id,))
