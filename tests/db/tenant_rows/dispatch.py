"""Dispatch rows for the two-tenant RLS walk: a driver (the tenant's driver user) assigned to its
business with a window and positions written through the API, dispatch rules, a delivery with an
offer, a provider event, the driver's earnings and their payout."""

from __future__ import annotations

import json

from tests.db.tenant_rows import TenantRows


def seed(ctx: TenantRows) -> None:
    conn, t = ctx.conn, ctx.tenant
    b, venue = t.business_id, t.venues[0]
    conn.execute("select app.set_business_module(%s, 'dispatch', true)", (b,))
    driver = conn.execute("insert into public.drivers (business_id, user_id, display_name, phone, is_online) "
                          "values (%s, %s, 'Walk Driver', '+12125550177', true) returning id", (b, t.users["driver"])).fetchone()["id"]  # type: ignore[index]
    conn.execute("insert into public.driver_business_assignments (business_id, driver_business_id, driver_id) values (%s, %s, %s)",
                 (b, b, driver))
    me = t.claims("driver")
    ctx.api.run(me, "insert into public.driver_availability_windows (business_id, driver_id, weekday, starts_at, ends_at) "
                    "values (%s, %s, 1, '08:00', '20:00')", (b, driver))
    ctx.api.run(me, "insert into public.driver_locations (business_id, driver_id, latitude, longitude) values (%s, %s, 40.71, -74.0)",
                (b, driver))
    conn.execute("insert into public.venue_dispatch_rules (business_id, venue_id, offer_timeout_seconds) values (%s, %s, 20)", (b, venue))
    order_id = ctx.orders[0]["order_id"]
    delivery = conn.execute(
        "insert into public.deliveries (business_id, venue_id, order_id, external_delivery_id, pickup, dropoff, currency, dropoff_pin, "
        "provider, driver_business_id, driver_id, status) values (%s, %s, %s, %s, '{}', '{}', 'USD', '1234', 'own', %s, %s, 'offering') "
        "returning id", (b, venue, order_id, f"brg-walk-{b}", b, driver)).fetchone()["id"]  # type: ignore[index]
    conn.execute("insert into public.delivery_offers (business_id, delivery_id, venue_id, driver_business_id, driver_id, round, score, "
                 "expires_at) values (%s, %s, %s, %s, %s, 1, 1.0, now() + interval '30 seconds')", (b, delivery, venue, b, driver))
    conn.execute("insert into public.delivery_events (business_id, delivery_id, source, external_event_id, kind, outcome, payload) "
                 "values (%s, %s, 'uber', %s, 'pickup', 'applied', %s)", (b, delivery, f"evt_{b}", json.dumps({"id": f"evt_{b}"})))
    conn.execute("insert into public.driver_earnings (business_id, delivery_id, order_id, venue_id, driver_business_id, driver_id, "
                 "base_fee_cents, distance_fee_cents, tip_cents, surge_multiplier, surge_cents, platform_fee_cents, net_cents, currency) "
                 "values (%s, %s, %s, %s, %s, %s, 300, 100, 50, 1, 0, 40, 410, 'USD')", (b, delivery, order_id, venue, b, driver))
    # the driver's payout of that earning (issue 23): the roll-up run two weeks on
    conn.execute("select app.run_driver_payouts(now() + interval '14 days')")
