"""Issue 19's seams in the database: each test is named after the item it closes."""

from __future__ import annotations

from typing import Any

import psycopg

from tests.bookings_kit import build_activity, hold, pay
from tests.conftest import Api, Factory

Conn = psycopg.Connection[dict[str, Any]]


def test_item_4_bookings_earn_points_reversed_on_refund_and_count_in_total_bookings(api: Api, conn: Conn, factory: Factory) -> None:
    tenant = factory.tenant("Escape Points", {"bookings": True, "loyalty": True})
    b = tenant.business_id
    conn.execute("insert into public.loyalty_programs (business_id, points_per_currency_unit, points_per_visit) values (%s, 2, 5) "
                 "on conflict (business_id) do update set points_per_currency_unit = 2, points_per_visit = 5", (b,))
    act = build_activity(conn, tenant)
    booking = hold(api, act)
    assert pay(conn, booking) == "paid"
    customer = conn.execute("select customer_id from public.bookings where id = %s", (booking["booking_id"],)).fetchone()["customer_id"]  # type: ignore[index]
    earned = (booking["total_cents"] // 100) * 2 + 5
    balance = "select balance from public.loyalty_accounts where business_id = %s and customer_id = %s"
    assert conn.execute(balance, (b, customer)).fetchone() == {"balance": earned}
    stats = "select total_orders, total_bookings from public.customer_venue_stats where business_id = %s and customer_id = %s"
    assert conn.execute(stats, (b, customer)).fetchone() == {"total_orders": 1, "total_bookings": 1}
    # a replayed payment earns nothing more
    conn.execute("select app.mark_booking_paid(%s, %s, 'pi_again', null, %s, 'evt_again')", (b, booking["booking_id"], booking["total_cents"]))
    assert conn.execute(balance, (b, customer)).fetchone() == {"balance": earned}

    # cancelled with a partial refund, which succeeds at Stripe: points back in proportion
    part = booking["total_cents"] // 4
    r = api.run(tenant.claims("manager"), "select public.cancel_booking(%s, 'rain', %s) as r", (booking["booking_id"], part))[0]["r"]
    refund_id = conn.execute("select id from public.refunds where booking_id = %s", (booking["booking_id"],)).fetchone()["id"]  # type: ignore[index]
    conn.execute("select app.record_booking_refund(%s, %s, %s, 're_pts19', 'succeeded', %s, null)", (b, booking["booking_id"], refund_id, part))
    assert r["refund_cents"] == part
    assert conn.execute(balance, (b, customer)).fetchone() == {"balance": earned - earned * part // booking["total_cents"]}
    assert conn.execute(stats, (b, customer)).fetchone() == {"total_orders": 1, "total_bookings": 1}

    # a second booking refunded in full (in Stripe's dashboard): its points all go, and it leaves the count
    second = hold(api, act, 1)
    assert pay(conn, second) == "paid"
    assert conn.execute(stats, (b, customer)).fetchone()["total_bookings"] == 2  # type: ignore[index]
    pi = conn.execute("select payment_intent_id from public.bookings where id = %s", (second["booking_id"],)).fetchone()["payment_intent_id"]  # type: ignore[index]
    before = conn.execute(balance, (b, customer)).fetchone()["balance"]  # type: ignore[index]
    conn.execute("select app.record_booking_refund(%s, %s, null, 're_full19', 'succeeded', %s, null)", (b, second["booking_id"], second["total_cents"]))
    assert pi is not None
    assert conn.execute(balance, (b, customer)).fetchone() == {"balance": before - earned}
    assert conn.execute(stats, (b, customer)).fetchone() == {"total_orders": 1, "total_bookings": 1}
    kinds = conn.execute("select reason, count(*) as n from public.loyalty_transactions where business_id = %s and booking_id is not null "
                         "group by reason order by reason", (b,)).fetchall()
    assert kinds == [{"reason": "booking", "n": 2}, {"reason": "refund", "n": 2}]


def test_item_7_get_menu_returns_allergens_and_ratings(api: Api, conn: Conn, factory: Factory) -> None:
    import json

    from brigade.auth import Claims
    from tests.ordering_kit import build_menu, order_payload, session_completed

    tenant = factory.tenant("Menu Facts", {"ordering": True})
    menu = build_menu(conn, tenant)
    conn.execute("update public.products set allergens = '{gluten,dairy}' where id = %s", (menu.products["croissant"],))
    order = api.run(Claims.anon(), "select public.place_order(%s) as r", (json.dumps(order_payload(menu)),))[0]["r"]
    conn.execute("select app.apply_stripe_event(%s)", (json.dumps(session_completed(order, "cs_menu19", "pi_menu19")),))
    review = {"rating": 4, "products": [{"product_id": str(menu.products["croissant"]), "rating": 4}]}
    api.run(Claims.anon(), "select public.submit_review(%s, %s, %s)", (order["order_id"], order["access_token"], json.dumps(review)))
    conn.execute("update public.product_reviews set status = 'approved' where product_id = %s", (menu.products["croissant"],))
    slugs = conn.execute("select b.slug as b, v.slug as v from public.businesses b join public.venues v on v.business_id = b.id "
                         "where v.id = %s", (menu.venue_id,)).fetchone()
    assert slugs is not None
    got = api.run(Claims.anon(), "select public.get_menu(%s, %s) as m", (slugs["b"], slugs["v"]))[0]["m"]
    products = {p["name"]: p for p in got["products"]}
    assert products["Croissant"]["allergens"] == ["gluten", "dairy"]
    assert (products["Croissant"]["rating_count"], float(products["Croissant"]["rating_average"])) == (1, 4.0)
    assert (products["Latte"]["allergens"], products["Latte"]["rating_count"], products["Latte"]["rating_average"]) == ([], 0, None)
