"""Gift cards (issue 23 item 4): a card bought and paid, one order of the tenant paid in part with it,
so both gift_cards and gift_card_ledger hold rows of each tenant for the walk; and a booking held on
the bookings seed's published session, paid in part with a second card (ledger rows with booking_id,
bookings.gift_card_id set)."""

from __future__ import annotations

import json

from brigade.auth import Claims
from tests.db.tenant_rows import TenantRows
from tests.gift_cards_kit import issue
from tests.ordering_kit import order_payload


def seed(ctx: TenantRows) -> None:
    b = ctx.tenant.business_id
    _, code = issue(ctx.conn, ctx.api, b, 500)
    order = ctx.api.run(Claims.anon(), "select public.place_order(%s) as r", (json.dumps(order_payload(ctx.menu)),))[0]["r"]
    applied = ctx.api.run(Claims.anon(), "select public.apply_gift_card(%s, %s, %s) as r",
                          (order["order_id"], order["access_token"], code))[0]["r"]
    assert applied["applied"] and applied["gift_card_cents"] == 500
    _, second = issue(ctx.conn, ctx.api, b, 500)
    row = ctx.conn.execute("select s.id from public.activity_sessions s where s.business_id = %s and s.venue_id = %s limit 1",
                           (b, ctx.tenant.venues[0])).fetchone()
    assert row is not None, "the bookings seed runs first (modules are seeded in name order)"
    booking = ctx.api.run(Claims.anon(), "select public.hold_booking(%s) as r", (json.dumps({
        "session_id": str(row["id"]), "party": {"adult": 1}, "customer": {"name": "Gift Walker", "email": "gift-walker@example.test"}}),))[0]["r"]
    on_booking = ctx.api.run(Claims.anon(), "select public.apply_gift_card_to_booking(%s, %s, %s) as r",
                             (booking["booking_id"], booking["access_token"], second))[0]["r"]
    assert on_booking["applied"] and on_booking["gift_card_cents"] == 500 and not on_booking["paid"]
