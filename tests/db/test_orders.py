"""place_order, the status machines, pickup codes, stock and the menu, in SQL as PostgREST runs it."""

from __future__ import annotations

import json
from datetime import datetime, time, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest

from brigade.auth import Claims
from tests.conftest import Api, Factory
from tests.ordering_kit import EXPECTED_TOTAL, Menu, build_menu, order_payload, session_completed


def place(api: Api, payload: dict[str, Any], claims: Claims | None = None) -> dict[str, Any]:
    return api.run(claims or Claims.anon(), "select public.place_order(%s) as r", (json.dumps(payload),))[0]["r"]


def refused(api: Api, payload: dict[str, Any]) -> tuple[str | None, str | None]:
    try:
        place(api, payload)
    except psycopg.Error as exc:
        return exc.sqlstate, exc.diag.message_hint
    return None, None


def footprint(conn: psycopg.Connection[dict[str, Any]]) -> tuple[Any, ...]:
    return tuple(conn.execute(sql).fetchone()["n"] for sql in (  # type: ignore[index]
        "select count(*) as n from public.orders", "select count(*) as n from public.order_items",
        "select count(*) as n from app.business_counters", "select count(*) as n from pgmq.q_brigade_events",
        "select count(*) as n from public.order_status_history"))


def pay(conn: psycopg.Connection[dict[str, Any]], order: dict[str, Any], n: int = 1) -> None:
    conn.execute("select app.apply_stripe_event(%s)", (json.dumps(session_completed(order, f"cs_{n}", f"pi_{n}")),))


def _other_tenant_product(conn: psycopg.Connection[dict[str, Any]], factory: Factory) -> str:
    other = factory.tenant("Elsewhere")
    return str(build_menu(conn, other, loyalty=False).products["latte"])


@pytest.mark.parametrize(("case", "code", "hint"), [
    ("tampered price", "BR104", "price_mismatch"),
    ("tampered total", "BR104", "total_mismatch"),
    ("unavailable product", "BR103", "product_unavailable"),
    ("unpublished product", "BR103", "product_unavailable"),
    ("other tenant's product", "BR105", "unknown_product"),
    pytest.param("closed venue", "BR101", "venue_closed", marks=pytest.mark.clock),
    pytest.param("closed at scheduled time", "BR101", "venue_closed", marks=pytest.mark.clock),
    ("missing delivery address", "BR108", "delivery_address_required"),
    ("outside delivery area", "BR109", "outside_delivery_area"),
    ("no items", "BR102", "no_items"),
    ("zero quantity", "BR102", "invalid_quantity"),
    ("foreign variant", "BR106", "invalid_variant"),
    ("modifier of another product", "BR107", "invalid_modifier"),
    ("too many modifiers", "BR107", "modifier_rules"),
    ("dine-in without table", "BR110", "table_required"),
    ("no contact", "BR111", "contact_required"),
    ("scheduled in the past", "BR112", "scheduled_in_past"),
    ("bad phone", "BR113", "invalid_phone"),
    ("unpublished venue", "PT404", "venue_not_found"),
    ("ordering switched off", "PT403", "module_disabled"),
    ("negative tip", "22023", "invalid_tip"),
])
def test_refusals_have_their_own_code_and_write_nothing(
    api: Api, conn: psycopg.Connection[dict[str, Any]], factory: Factory, menu: Menu, case: str, code: str, hint: str
) -> None:
    b, venue = menu.tenant.business_id, menu.venue_id
    payload = order_payload(menu)
    latte = payload["items"][0]
    if case == "tampered price":
        latte["unit_price_cents"] = 1
    elif case == "tampered total":
        payload["expected_total_cents"] = EXPECTED_TOTAL - 100
    elif case == "unavailable product":
        conn.execute("insert into public.venue_products (business_id, venue_id, product_id, is_available, unavailable_reason) "
                     "values (%s, %s, %s, false, 'manual')", (b, venue, menu.products["croissant"]))
    elif case == "unpublished product":
        conn.execute("update public.products set is_published = false where id = %s", (menu.products["croissant"],))
    elif case == "other tenant's product":
        payload["items"][1]["product_id"] = _other_tenant_product(conn, factory)
    elif case == "closed venue":
        conn.execute("insert into public.venue_hours_exceptions (business_id, venue_id, on_date, is_closed) "  # today and tomorrow in the
                     "select %s, %s, (now() at time zone time_zone)::date + d, true from public.venues, generate_series(0, 1) d "  # venue's zone:
                     "where id = %s", (b, venue, venue))  # the order may be placed after midnight
    elif case == "closed at scheduled time":
        conn.execute("insert into public.venue_opening_hours (business_id, venue_id, weekday, opens_at, closes_at) "
                     "select %s, %s, d, '09:00', '17:00' from generate_series(0, 6) d", (b, venue))
        zone = ZoneInfo(conn.execute("select time_zone from public.venues where id = %s", (venue,)).fetchone()["time_zone"])  # type: ignore[index]
        tomorrow_3am = datetime.combine(datetime.now(zone).date() + timedelta(days=1), time(3), zone)  # 03:00 at the venue
        payload["scheduled_for"] = tomorrow_3am.isoformat()
    elif case == "missing delivery address":
        payload["fulfilment"] = "delivery"
    elif case == "outside delivery area":
        payload.update(fulfilment="delivery", delivery_address={"line1": "1 Far Away Rd", "latitude": 41.5, "longitude": -74.0})
    elif case == "no items":
        payload["items"] = []
    elif case == "zero quantity":
        latte["quantity"] = 0
    elif case == "foreign variant":
        payload["items"][1]["variant_id"] = str(menu.variants["large"])
    elif case == "modifier of another product":
        payload["items"][1]["modifier_ids"] = [str(menu.modifiers["oat"])]
    elif case == "too many modifiers":
        conn.execute("update public.modifier_groups set max_choices = 1 where name = 'Extra shots' and business_id = %s", (b,))
        latte["modifier_ids"] = [str(menu.modifiers["shot"]), str(menu.modifiers["decaf shot"])]
    elif case == "dine-in without table":
        payload["fulfilment"] = "dine_in"
    elif case == "no contact":
        payload["customer"] = {"name": "Nobody"}
    elif case == "scheduled in the past":
        payload["scheduled_for"] = (datetime.now(timezone.utc) - timedelta(hours=1)).isoformat()
    elif case == "bad phone":
        payload["customer"]["phone"] = "call me"
    elif case == "unpublished venue":
        payload["venue_id"] = str(menu.tenant.venues[1])
    elif case == "ordering switched off":
        conn.execute("update public.businesses set modules_json = modules_json || '{\"ordering\": false}' where id = %s", (b,))
    elif case == "negative tip":
        payload["tip_cents"] = -5
    before = footprint(conn)
    assert refused(api, payload) == (code, hint)
    assert footprint(conn) == before, "a refused order wrote something"


def test_client_prices_are_never_used(api: Api, menu: Menu) -> None:
    payload = order_payload(menu)
    payload["items"][1]["price_cents"] = 1  # not a field place_order knows: ignored
    payload["subtotal_cents"] = 5
    order = place(api, payload)
    assert order["total_cents"] == EXPECTED_TOTAL


def test_scheduled_delivery_and_qr_dine_in_are_priced(api: Api, conn: psycopg.Connection[dict[str, Any]], menu: Menu) -> None:
    later = (datetime.now(timezone.utc) + timedelta(hours=2)).isoformat()
    delivery = place(api, order_payload(menu, fulfilment="delivery", scheduled_for=later,
                                        delivery_address={"line1": "5 Near St", "latitude": 40.72, "longitude": -74.0}))
    assert delivery["delivery_fee_cents"] == 299 and delivery["total_cents"] == EXPECTED_TOTAL + 299
    qr = place(api, order_payload(menu, channel="qr", fulfilment="dine_in", table_ref="T12"))
    row = conn.execute("select channel, fulfilment, table_ref, order_number from public.orders where id = %s", (qr["order_id"],)).fetchone()
    assert row == {"channel": "qr", "fulfilment": "dine_in", "table_ref": "T12", "order_number": delivery["order_number"] + 1}


def test_signed_in_customers_see_their_orders_and_nobody_elses(api: Api, conn: psycopg.Connection[dict[str, Any]], factory: Factory, menu: Menu) -> None:
    me, other = factory.user("me@example.test"), factory.user("other@example.test")
    mine = place(api, order_payload(menu), Claims.user(me, email="me@example.test"))
    place(api, order_payload(menu), Claims.user(other, email="other@example.test"))
    rows = api.run(Claims.user(me), "select id, guest_email from public.orders")
    assert [str(r["id"]) for r in rows] == [mine["order_id"]]
    assert len(api.run(Claims.user(me), "select id, name, quantity, line_total_cents from public.order_items")) == 2
    with pytest.raises(psycopg.errors.InsufficientPrivilege):  # the merchant's costs are not the customer's to read
        api.run(Claims.user(me), "select * from public.order_items")
    assert api.run(Claims.anon(), "select public.get_order(%s, %s) as r", (mine["order_id"], mine["access_token"]))[0]["r"]["total_cents"] == EXPECTED_TOTAL
    with pytest.raises(psycopg.Error) as wrong:
        api.run(Claims.anon(), "select public.get_order(%s, %s)", (mine["order_id"], "00000000-0000-4000-8000-000000000000"))
    assert wrong.value.sqlstate == "PT404"


def test_the_status_machine(api: Api, conn: psycopg.Connection[dict[str, Any]], menu: Menu) -> None:
    staff = menu.tenant.claims("staff")
    order = place(api, order_payload(menu, fulfilment="dine_in", table_ref="T1"))
    oid = order["order_id"]

    def move(status: str, reason: str | None = None) -> str | None:
        try:
            api.run(staff, "select public.set_order_status(%s, %s, %s)", (oid, status, reason))
        except psycopg.Error as exc:
            return exc.sqlstate
        return None

    assert move("accepted") == "BR121", "unpaid orders do not reach the kitchen"
    assert move("ready") == "BR120"
    pay(conn, order)
    assert move("completed") == "BR120"
    assert move("accepted") is None and move("preparing") is None
    assert move("accepted") == "BR120", "no going back"
    assert move("cancelled") == "BR123"
    assert move("ready") is None and move("completed") is None
    assert move("cancelled", "changed mind") == "BR120", "completed is final"
    assert conn.execute("select status from public.kitchen_tickets where order_id = %s", (oid,)).fetchone() == {"status": "done"}
    with pytest.raises(psycopg.Error) as back:
        conn.execute("update public.orders set payment_status = 'unpaid' where id = %s", (oid,))
    assert back.value.sqlstate == "BR124", "not even the service role un-pays an order"


def test_staff_of_another_venue_cannot_touch_the_order(api: Api, conn: psycopg.Connection[dict[str, Any]], factory: Factory, menu: Menu) -> None:
    order = place(api, order_payload(menu))
    pay(conn, order)
    elsewhere = factory.user()
    factory.member(menu.tenant.business_id, elsewhere, "staff", [menu.tenant.venues[1]])
    with pytest.raises(psycopg.Error) as exc:
        api.run(Claims.user(elsewhere), "select public.set_order_status(%s, 'accepted')", (order["order_id"],))
    assert exc.value.sqlstate == "PT404"
    with pytest.raises(psycopg.Error) as code:
        api.run(Claims.user(elsewhere), "select public.verify_pickup_code(%s, '123456')", (order["order_id"],))
    assert code.value.sqlstate == "PT404"


def ready_pickup(api: Api, conn: psycopg.Connection[dict[str, Any]], menu: Menu) -> tuple[str, str]:
    """A paid pickup order moved to ready, and its code (read from the outbox message)."""
    order = place(api, order_payload(menu))
    pay(conn, order)
    code = conn.execute("select message -> 'payload' ->> 'pickup_code' as c from pgmq.q_brigade_events "
                        "where message ->> 'topic' = 'order.paid'").fetchone()["c"]  # type: ignore[index]
    for status in ("accepted", "ready"):
        api.run(menu.tenant.claims("staff"), "select public.set_order_status(%s, %s)", (order["order_id"], status))
    return order["order_id"], code


def verify(api: Api, menu: Menu, order_id: str, code: str) -> dict[str, Any]:
    return api.run(menu.tenant.claims("staff"), "select public.verify_pickup_code(%s, %s) as r", (order_id, code))[0]["r"]


def test_pickup_code_five_attempts(api: Api, conn: psycopg.Connection[dict[str, Any]], menu: Menu) -> None:
    oid, code = ready_pickup(api, conn, menu)
    wrong = f"{(int(code) + 1) % 1000000:06d}"
    results = [verify(api, menu, oid, wrong) for _ in range(5)]
    assert [r["reason"] for r in results] == ["wrong_code"] * 5
    assert [r["attempts_left"] for r in results] == [4, 3, 2, 1, 0]
    assert verify(api, menu, oid, code) == {"verified": False, "reason": "too_many_attempts", "attempts_left": 0}, "the sixth try is refused"
    assert conn.execute("select status from public.orders where id = %s", (oid,)).fetchone() == {"status": "ready"}


def test_pickup_code_expires_after_60_minutes(api: Api, conn: psycopg.Connection[dict[str, Any]], menu: Menu) -> None:
    oid, code = ready_pickup(api, conn, menu)
    expiry = conn.execute("select pickup_code_expires_at - paid_at as ttl from public.orders where id = %s", (oid,)).fetchone()
    assert expiry and expiry["ttl"] == timedelta(minutes=60)
    conn.execute("update public.orders set pickup_code_expires_at = now() - interval '1 second' where id = %s", (oid,))
    assert verify(api, menu, oid, code)["reason"] == "expired"


def test_right_code_completes_once(api: Api, conn: psycopg.Connection[dict[str, Any]], menu: Menu) -> None:
    oid, code = ready_pickup(api, conn, menu)
    with pytest.raises(psycopg.Error) as direct:
        api.run(menu.tenant.claims("staff"), "select public.set_order_status(%s, 'completed')", (oid,))
    assert direct.value.sqlstate == "BR122"
    assert verify(api, menu, oid, code)["verified"] is True
    with pytest.raises(psycopg.Error) as again:
        verify(api, menu, oid, code)
    assert again.value.sqlstate == "BR125"
    stored = conn.execute("select pickup_code_hash from public.orders where id = %s", (oid,)).fetchone()
    assert stored == {"pickup_code_hash": None}


def test_pickup_code_is_stored_only_as_an_hmac(api: Api, conn: psycopg.Connection[dict[str, Any]], menu: Menu) -> None:
    order = place(api, order_payload(menu))
    pay(conn, order)
    code = conn.execute("select message -> 'payload' ->> 'pickup_code' as c from pgmq.q_brigade_events "
                        "where message ->> 'topic' = 'order.paid'").fetchone()["c"]  # type: ignore[index]
    row = conn.execute("select to_jsonb(o) as o from public.orders o where id = %s", (order["order_id"],)).fetchone()
    assert code not in json.dumps(row) and len(row["o"]["pickup_code_hash"]) == 64  # type: ignore[index]
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        api.run(menu.tenant.claims("owner"), "select pickup_code_hash from public.orders")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        api.run(menu.tenant.claims("owner"), "select * from app.secrets")


def test_stock_critical_and_out_of_stock(api: Api, conn: psycopg.Connection[dict[str, Any]], menu: Menu) -> None:
    # oat milk: 1 L, critical at 0.5 L, 0.25 L per oat latte
    payload = order_payload(menu, items=[{"product_id": str(menu.products["latte"]), "modifier_ids": [str(menu.modifiers["oat"])], "quantity": 1}])

    def critical_events() -> int:
        return conn.execute("select count(*) as n from pgmq.q_brigade_events where message ->> 'topic' = 'stock.critical' "
                            "and message -> 'payload' ->> 'sku' = 'oat'").fetchone()["n"]  # type: ignore[index]

    for n in range(1, 5):
        pay(conn, place(api, payload), n)
        if n == 1:
            assert critical_events() == 0
        if n == 2:
            assert critical_events() == 1, "crossing 0.5 L emits stock.critical"
    assert critical_events() == 1, "once per crossing"
    oat = conn.execute("select quantity from public.stock_items where id = %s", (menu.stock["oat"],)).fetchone()
    assert oat and float(oat["quantity"]) == 0
    availability = conn.execute("select is_available, unavailable_reason from public.venue_products where product_id = %s",
                                (menu.products["latte"],)).fetchone()
    assert availability == {"is_available": False, "unavailable_reason": "out_of_stock"}
    assert refused(api, payload) == ("BR103", "product_unavailable")
    slugs = conn.execute("select b.slug as b, v.slug as v from public.businesses b join public.venues v on v.business_id = b.id "
                         "where v.id = %s", (menu.venue_id,)).fetchone()
    m = api.run(Claims.anon(), "select public.get_menu(%s, %s) as m", (slugs["b"], slugs["v"]))[0]["m"]  # type: ignore[index]
    assert {p["name"]: p["available"] for p in m["products"]} == {"Latte": False, "Croissant": True}

    api.run(menu.tenant.claims("manager"), "insert into public.stock_movements (business_id, venue_id, stock_item_id, delta, reason) "
                                           "values (%s, %s, %s, 5, 'delivery')", (menu.tenant.business_id, menu.venue_id, menu.stock["oat"]))
    assert place(api, payload)["total_cents"] > 0, "restocking makes it orderable again"


def test_stock_moves_only_through_the_ledger(api: Api, conn: psycopg.Connection[dict[str, Any]], menu: Menu) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        api.run(menu.tenant.claims("manager"), "update public.stock_items set quantity = 99 where id = %s", (menu.stock["milk"],))
    with pytest.raises(psycopg.Error) as service:
        conn.execute("update public.stock_items set quantity = 99 where id = %s", (menu.stock["milk"],))
    assert service.value.sqlstate == "42501"
    with pytest.raises(psycopg.Error) as fake_order:
        api.run(menu.tenant.claims("manager"), "insert into public.stock_movements (business_id, venue_id, stock_item_id, delta, reason) "
                                               "values (%s, %s, %s, -1, 'order')", (menu.tenant.business_id, menu.venue_id, menu.stock["milk"]))
    assert fake_order.value.sqlstate == "42501"
    with pytest.raises(psycopg.Error) as edit:
        conn.execute("update public.stock_movements set delta = 100")
    assert edit.value.sqlstate == "BR006"


def test_menu_for_anon_has_no_costs(api: Api, conn: psycopg.Connection[dict[str, Any]], menu: Menu) -> None:
    slugs = conn.execute("select b.slug as b, v.slug as v from public.businesses b join public.venues v on v.business_id = b.id "
                         "where v.id = %s", (menu.venue_id,)).fetchone()
    m = api.run(Claims.anon(), "select public.get_menu(%s, %s) as m", (slugs["b"], slugs["v"]))[0]["m"]  # type: ignore[index]
    assert m["venue"]["is_open_now"] is True and m["business"]["currency"] == "USD"
    latte = next(p for p in m["products"] if p["name"] == "Latte")
    assert [v["name"] for v in latte["variants"]] == ["Large", "Small"]
    assert {g["name"]: g["max_choices"] for g in latte["modifier_groups"]} == {"Extra shots": 2, "Milk": 1}
    assert "cost" not in json.dumps(m)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        api.run(Claims.anon(), "select * from public.products")
    unpublished = conn.execute("select slug from public.venues where id = %s", (menu.tenant.venues[1],)).fetchone()
    with pytest.raises(psycopg.Error) as hidden:
        api.run(Claims.anon(), "select public.get_menu(%s, %s)", (slugs["b"], unpublished["slug"]))  # type: ignore[index]
    assert hidden.value.sqlstate == "PT404"


@pytest.mark.parametrize(("hours", "local", "is_open"), [
    ([("09:00", "17:00")], "12:00", True),
    ([("09:00", "17:00")], "17:00", False),
    ([("18:00", "02:00")], "01:30", True),   # yesterday's window runs past midnight
    ([("18:00", "02:00")], "03:00", False),
    ([("00:00", "00:00")], "04:00", True),   # equal times: all day
])
def test_opening_hours(conn: psycopg.Connection[dict[str, Any]], menu: Menu, hours: list[tuple[str, str]], local: str, is_open: bool) -> None:
    b, v = menu.tenant.business_id, menu.venue_id
    for opens, closes in hours:
        conn.execute("insert into public.venue_opening_hours (business_id, venue_id, weekday, opens_at, closes_at) "
                     "select %s, %s, d, %s, %s from generate_series(0, 6) d", (b, v, opens, closes))
    at = f"2026-11-18 {local}:00"  # a Wednesday, in the venue's zone
    assert conn.execute("select app.venue_is_open(%s, %s, %s::timestamp at time zone time_zone) as o from public.venues where id = %s",
                        (b, v, at, v)).fetchone() == {"o": is_open}


def test_payment_after_cancellation_reaches_no_kitchen(api: Api, conn: psycopg.Connection[dict[str, Any]], menu: Menu) -> None:
    order = place(api, order_payload(menu))
    api.run(menu.tenant.claims("staff"), "select public.set_order_status(%s, 'cancelled', 'guest left')", (order["order_id"],))
    pay(conn, order)
    row = conn.execute("select status, payment_status, pickup_code_hash from public.orders where id = %s", (order["order_id"],)).fetchone()
    assert row == {"status": "cancelled", "payment_status": "paid", "pickup_code_hash": None}
    assert conn.execute("select count(*) as n from public.kitchen_tickets").fetchone() == {"n": 0}
    assert conn.execute("select count(*) as n from public.stock_movements where order_id is not null").fetchone() == {"n": 0}
    topics = [r["t"] for r in conn.execute("select message ->> 'topic' as t from pgmq.q_brigade_events order by msg_id")]
    assert "order.paid_after_cancellation" in topics and "order.paid" not in topics
    refund = api.run(menu.tenant.claims("manager"), "select public.request_refund(%s) as r", (order["order_id"],))[0]["r"]
    assert refund["amount_cents"] == order["total_cents"], "the whole amount can be given back"
