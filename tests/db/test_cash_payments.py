"""Cash on delivery and pay at counter (issue 23 item 5): the venue's methods, the unpaid kitchen,
recording the cash once, the card payment's fan-out, refusals, hand-overs and the reconciliation by
the venue's local business day."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest

from brigade.auth import Claims
from tests.conftest import Api, Factory, sqlstate
from tests.ordering_kit import Menu, build_menu, order_payload, session_completed

Conn = psycopg.Connection[dict[str, Any]]
ADDRESS = {"line1": "1 Main St", "city": "New York", "latitude": 40.7138, "longitude": -74.0060}


def allow_cash(conn: Conn, menu: Menu, methods: str = "{cash_on_delivery,pay_at_counter}", limit: int | None = None) -> None:
    conn.execute("update public.venues set cash_methods = %s, cash_max_order_cents = %s where id = %s", (methods, limit, menu.venue_id))


def place(api: Api, payload: dict[str, Any]) -> dict[str, Any]:
    return api.run(Claims.anon(), "select public.place_order(%s) as r", (json.dumps(payload),))[0]["r"]


def cod_payload(menu: Menu, phone: str = "+1 212 555 0111", email: str = "cash@example.test") -> dict[str, Any]:
    return order_payload(menu, fulfilment="delivery", delivery_address=ADDRESS, payment_method="cash_on_delivery",
                         customer={"name": "Cash Customer", "phone": phone, "email": email})


def collect(api: Api, claims: Claims, order_id: str, received: int, change: int = 0, at: Any = None) -> dict[str, Any]:
    return api.run(claims, "select public.record_cash_collection(%s, %s, %s, %s) as r", (order_id, received, change, at))[0]["r"]


def code_of(fn: Any) -> tuple[str | None, str | None]:
    try:
        fn()
    except psycopg.Error as exc:
        return exc.sqlstate, exc.diag.message_hint
    return None, None


@pytest.fixture
def menu(conn: Conn, factory: Factory) -> Menu:
    return build_menu(conn, factory.tenant("Cash Cafe", {"ordering": True}))


def test_cash_methods_are_the_venues_choice_and_a_refusal_writes_nothing(api: Api, conn: Conn, menu: Menu) -> None:
    before = conn.execute("select count(*) as n from public.orders").fetchone()
    assert code_of(lambda: place(api, cod_payload(menu))) == ("BR150", "payment_method_not_allowed")
    allow_cash(conn, menu, "{pay_at_counter}")
    assert code_of(lambda: place(api, cod_payload(menu))) == ("BR150", "payment_method_not_allowed")
    allow_cash(conn, menu)
    assert code_of(lambda: place(api, order_payload(menu, payment_method="cash_on_delivery"))) == ("BR151", "payment_method_fulfilment")
    assert code_of(lambda: place(api, {**cod_payload(menu), "payment_method": "pay_at_counter"})) == ("BR151", "payment_method_fulfilment")
    assert code_of(lambda: place(api, order_payload(menu, payment_method="iou"))) == ("22023", "invalid_payment_method")
    allow_cash(conn, menu, limit=1000)
    assert code_of(lambda: place(api, cod_payload(menu))) == ("BR152", "cash_limit_exceeded")
    assert conn.execute("select count(*) as n from public.orders").fetchone() == before
    assert conn.execute("select count(*) as n from public.kitchen_tickets").fetchone()["n"] == 0  # type: ignore[index]
    allow_cash(conn, menu, limit=5000)
    order = place(api, cod_payload(menu))
    assert order["payment_method"] == "cash_on_delivery" and order["amount_due_cents"] == order["total_cents"]


def test_a_cash_order_reaches_the_kitchen_unpaid_and_may_be_accepted(api: Api, conn: Conn, menu: Menu) -> None:
    allow_cash(conn, menu)
    cash = place(api, cod_payload(menu))
    card = place(api, order_payload(menu, fulfilment="delivery", delivery_address=ADDRESS))
    row = conn.execute("select payment_status, cash_admitted_at, customer_id from public.orders where id = %s", (cash["order_id"],)).fetchone()
    assert row and row["payment_status"] == "unpaid" and row["cash_admitted_at"] is not None and row["customer_id"] is not None
    tickets = {r["order_id"] for r in conn.execute("select order_id::text from public.kitchen_tickets").fetchall()}
    assert tickets == {cash["order_id"]}
    moved = conn.execute("select count(*) as n from public.stock_movements where order_id = %s", (cash["order_id"],)).fetchone()
    assert moved and moved["n"] > 0
    staff = menu.tenant.claims("staff")
    api.run(staff, "update public.orders set status = 'accepted' where id = %s", (cash["order_id"],))
    assert sqlstate(lambda: api.run(staff, "update public.orders set status = 'accepted' where id = %s", (card["order_id"],))) == "BR121"
    events = conn.execute("select message ->> 'topic' as topic from pgmq.q_brigade_events where message -> 'payload' ->> 'order_id' = %s",
                          (cash["order_id"],)).fetchall()
    assert "order.cash_accepted" in {e["topic"] for e in events} and "order.paid" not in {e["topic"] for e in events}


def test_cash_is_recorded_once_and_pays_the_order_like_a_card(api: Api, conn: Conn, menu: Menu) -> None:
    allow_cash(conn, menu)
    b = menu.tenant.business_id
    card = place(api, order_payload(menu, customer={"name": "Card Twin", "phone": "+1 212 555 0122", "email": "card@example.test"}))
    conn.execute("select app.apply_stripe_event(%s)", (json.dumps(session_completed(card, "cs_twin", "pi_twin")),))
    cash = place(api, order_payload(menu, payment_method="pay_at_counter",
                                    customer={"name": "Cash Twin", "phone": "+1 212 555 0133", "email": "cashtwin@example.test"}))
    assert cash["total_cents"] == card["total_cents"]
    staff = menu.tenant.claims("staff")
    first = collect(api, staff, cash["order_id"], 2000, 2000 - cash["total_cents"])
    assert first["duplicate"] is False and first["collected_cents"] == cash["total_cents"] and first["difference_cents"] == 0
    again = collect(api, staff, cash["order_id"], 2000, 2000 - cash["total_cents"])
    assert again["duplicate"] is True and again["id"] == first["id"]
    assert code_of(lambda: collect(api, staff, cash["order_id"], 5000, 0)) == ("BR154", "cash_already_recorded")
    assert code_of(lambda: collect(api, staff, card["order_id"], 5000, 0)) == ("BR153", "not_a_cash_order")

    def twin(order: dict[str, Any]) -> dict[str, Any]:
        row = conn.execute("""
            select o.payment_status::text, s.total_orders, s.total_spent_cents, a.lifetime_points, a.balance,
                   (select sum(f.fee_cents) from public.platform_fees f where f.business_id = o.business_id and f.order_id = o.id) as fee,
                   (select sum(p.amount_cents) from public.payments p where p.business_id = o.business_id and p.order_id = o.id) as paid,
                   (select jsonb_object_agg(m.stock_item_id, m.d) from (select stock_item_id, sum(delta) as d from public.stock_movements
                     where order_id = o.id group by stock_item_id) m) as stock,
                   (select array_agg(n.channel || ':' || n.template order by n.channel) from public.notification_log n
                     where n.event_key = 'order.paid:' || o.id) as sends,
                   (select count(*) from pgmq.q_brigade_events q where q.message ->> 'topic' = 'order.paid'
                     and q.message -> 'payload' ->> 'order_id' = o.id::text) as paid_events,
                   (select count(*) from public.kitchen_tickets t where t.order_id = o.id) as tickets
            from public.orders o
            join public.customer_venue_stats s on s.business_id = o.business_id and s.customer_id = o.customer_id
            left join public.loyalty_accounts a on a.business_id = o.business_id and a.customer_id = o.customer_id
            where o.business_id = %s and o.id = %s""", (b, order["order_id"])).fetchone()
        assert row is not None
        return row

    assert twin(cash) == twin(card)
    assert twin(cash)["total_orders"] == 1 and twin(cash)["paid_events"] == 1 and twin(cash)["lifetime_points"]
    pay = conn.execute("select provider, payment_intent_id, fee_cents from public.payments where order_id = %s", (cash["order_id"],)).fetchall()
    assert [(p["provider"], p["payment_intent_id"], p["fee_cents"]) for p in pay] == [("cash", None, 0)]


def test_who_may_record_cash(api: Api, conn: Conn, factory: Factory, menu: Menu) -> None:
    allow_cash(conn, menu)
    order = place(api, cod_payload(menu))
    stranger = Claims.user(factory.user())
    other = factory.tenant("Other Cafe")
    for claims in (stranger, menu.tenant.claims("driver"), other.claims("manager")):
        assert code_of(lambda: collect(api, claims, order["order_id"], order["total_cents"]))[0] == "PT404"
    assert sqlstate(lambda: collect(api, Claims.anon(), order["order_id"], order["total_cents"])) == "42501"
    # a custom role without collect_cash
    role = conn.execute("insert into public.business_roles (business_id, name, permissions) values (%s, 'Runner', '{}') returning id",
                        (menu.tenant.business_id,)).fetchone()
    assert role
    conn.execute("update public.memberships set custom_role_id = %s where business_id = %s and user_id = %s",
                 (role["id"], menu.tenant.business_id, menu.tenant.users["staff"]))
    assert code_of(lambda: collect(api, menu.tenant.claims("staff"), order["order_id"], order["total_cents"]))[0] == "42501"
    assert sqlstate(lambda: collect(api, menu.tenant.claims("manager"), order["order_id"], -1)) == "BR155"
    assert sqlstate(lambda: collect(api, menu.tenant.claims("manager"), order["order_id"], 100, 200)) == "BR155"
    assert conn.execute("select count(*) as n from public.cash_collections").fetchone()["n"] == 0  # type: ignore[index]
    assert conn.execute("select payment_status::text as s from public.orders where id = %s", (order["order_id"],)).fetchone()["s"] == "unpaid"  # type: ignore[index]


def test_cash_refused_at_the_door_cancels_without_paying(api: Api, conn: Conn, menu: Menu) -> None:
    allow_cash(conn, menu)
    order = place(api, cod_payload(menu))
    manager = menu.tenant.claims("manager")
    assert sqlstate(lambda: api.run(manager, "select public.record_cash_refused(%s, ' ')", (order["order_id"],))) == "BR123"
    out = api.run(manager, "select public.record_cash_refused(%s, 'nobody home') as r", (order["order_id"],))[0]["r"]
    assert out["outcome"] == "refused" and out["collected_cents"] == 0
    row = conn.execute("select status::text, payment_status::text, cancel_reason from public.orders where id = %s", (order["order_id"],)).fetchone()
    assert row == {"status": "cancelled", "payment_status": "unpaid", "cancel_reason": "cash not collected: nobody home"}
    assert conn.execute("select count(*) as n from public.customer_venue_stats").fetchone()["n"] == 0  # type: ignore[index]
    assert code_of(lambda: collect(api, manager, order["order_id"], order["total_cents"])) == ("BR154", "cash_already_recorded")
    again = api.run(manager, "select public.record_cash_refused(%s, 'nobody home') as r", (order["order_id"],))[0]["r"]
    assert again["duplicate"] is True


@pytest.mark.clock
def test_reconciliation_sums_by_the_venues_local_day_across_midnight(api: Api, conn: Conn, menu: Menu) -> None:
    """Two collections 30 s either side of the venue's last local midnight land on two business days;
    the hand-over takes both and the view shows what reached the venue."""
    allow_cash(conn, menu)
    zone = conn.execute("select time_zone from public.venues where id = %s", (menu.venue_id,)).fetchone()["time_zone"]  # type: ignore[index]
    # the last local midnight at least two minutes ago, and the local dates either side, from the database's clock
    mark = conn.execute("""select m as midnight, ((m - interval '30 seconds') at time zone %(z)s)::date as before_day,
                                  ((m + interval '30 seconds') at time zone %(z)s)::date as after_day
                           from (select (date_trunc('day', (now() - interval '2 minutes') at time zone %(z)s)) at time zone %(z)s as m) x""",
                        {"z": zone}).fetchone()
    assert mark and mark["before_day"] != mark["after_day"]
    orders = [place(api, order_payload(menu, payment_method="pay_at_counter")) for _ in range(2)]
    conn.execute("update public.orders set placed_at = %s::timestamptz - interval '1 hour' where id = any(%s::uuid[])",
                 (mark["midnight"], [o["order_id"] for o in orders]))
    manager = menu.tenant.claims("manager")
    collect(api, manager, orders[0]["order_id"], orders[0]["total_cents"], 0, mark["midnight"] - __import__("datetime").timedelta(seconds=30))
    collect(api, manager, orders[1]["order_id"], orders[1]["total_cents"] + 50, 0, mark["midnight"] + __import__("datetime").timedelta(seconds=30))
    rows = api.run(manager, "select business_day, expected_cents, collected_cents, difference_cents, outstanding_cents "
                            "from public.cash_reconciliation order by business_day")
    total = orders[0]["total_cents"]
    assert rows == [
        {"business_day": mark["before_day"], "expected_cents": total, "collected_cents": total, "difference_cents": 0, "outstanding_cents": total},
        {"business_day": mark["after_day"], "expected_cents": total, "collected_cents": total + 50, "difference_cents": 50,
         "outstanding_cents": total + 50},
    ]
    handover = api.run(manager, "select public.record_cash_handover(%s, null, %s, 'till') as r", (menu.venue_id, 2 * total))[0]["r"]
    assert handover["expected_cents"] == 2 * total + 50 and handover["difference_cents"] == -50 and handover["collections_count"] == 2
    assert code_of(lambda: api.run(manager, "select public.record_cash_handover(%s, null, 0)", (menu.venue_id,))) == ("BR157", "nothing_to_hand_over")
    rows = api.run(manager, "select sum(handed_over_cents) as h, sum(outstanding_cents) as o from public.cash_reconciliation")
    assert rows == [{"h": 2 * total + 50, "o": 0}]
    assert sqlstate(lambda: api.run(menu.tenant.claims("staff"), "select public.record_cash_handover(%s, null, 0)", (menu.venue_id,))) == "42501"
    assert api.run(menu.tenant.claims("staff"), "select count(*) as n from public.cash_reconciliation") == [{"n": 0}]
    assert sqlstate(lambda: conn.execute("update public.cash_collections set received_cents = 1")) == "BR154"


def test_the_payout_nets_a_cash_orders_platform_fee(api: Api, conn: Conn, menu: Menu) -> None:
    allow_cash(conn, menu)
    b = menu.tenant.business_id
    conn.execute("update public.plans set platform_fee_bps = 500 where key = (select (app.business_plan(%s)).key)", (b,))
    order = place(api, order_payload(menu, payment_method="pay_at_counter"))
    collect(api, menu.tenant.claims("staff"), order["order_id"], order["total_cents"])
    fee = conn.execute("select sum(fee_cents) as f from public.platform_fees where business_id = %s", (b,)).fetchone()["f"]  # type: ignore[index]
    assert fee > 0
    payout = conn.execute("select app.compute_payout(%s, now() - interval '1 day', now() + interval '1 day') as p", (b,)).fetchone()["p"]  # type: ignore[index]
    assert payout["gross_cents"] == 0 and payout["platform_fee_cents"] == fee and payout["net_cents"] == -fee


def test_a_cart_checks_out_as_a_cash_order_only_where_the_venue_takes_cash(api: Api, conn: Conn, menu: Menu) -> None:
    def rpc(fn: str, *args: Any) -> Any:
        marks = ", ".join(["%s"] * len(args))
        return api.run(Claims.anon(), f"select public.{fn}({marks}) as r", args)[0]["r"]

    token = rpc("start_cart", menu.venue_id)["session_token"]
    rpc("add_to_cart", token, json.dumps({"product_id": str(menu.products["croissant"]), "quantity": 2}))
    rpc("set_cart_details", token, json.dumps({"customer": {"name": "Cart Cash", "phone": "+1 212 555 0177"},
                                               "payment_method": "pay_at_counter"}))
    assert sqlstate(lambda: rpc("set_cart_details", token, json.dumps({"payment_method": "iou"}))) == "22023"
    assert sqlstate(lambda: rpc("checkout_cart", token)) == "BR150"
    allow_cash(conn, menu, "{pay_at_counter}")
    order = rpc("checkout_cart", token)
    assert order["payment_method"] == "pay_at_counter" and order["amount_due_cents"] == order["total_cents"]
    row = conn.execute("select payment_method, cash_admitted_at is not null as admitted from public.orders where id = %s",
                       (order["order_id"],)).fetchone()
    assert row == {"payment_method": "pay_at_counter", "admitted": True}


def test_a_cash_order_paid_online_after_all_is_not_collected_again(api: Api, conn: Conn, menu: Menu) -> None:
    allow_cash(conn, menu)
    order = place(api, cod_payload(menu))
    moved = conn.execute("select count(*) as n from public.stock_movements where order_id = %s", (order["order_id"],)).fetchone()
    conn.execute("insert into public.deliveries (business_id, venue_id, order_id, external_delivery_id, pickup, dropoff, currency, "
                 "dropoff_pin) values (%s, %s, %s, %s, '{}', '{}', 'USD', '1234')", (menu.tenant.business_id, menu.venue_id, order["order_id"], f"brg-{order['order_id']}"))
    assert conn.execute("select cash_due_cents from public.deliveries").fetchone() == {"cash_due_cents": order["total_cents"]}
    conn.execute("select app.apply_stripe_event(%s)", (json.dumps(session_completed(order, "cs_online", "pi_online")),))
    row = conn.execute("select payment_status::text from public.orders where id = %s", (order["order_id"],)).fetchone()
    assert row == {"payment_status": "paid"}
    assert conn.execute("select count(*) as n from public.stock_movements where order_id = %s", (order["order_id"],)).fetchone() == moved
    assert conn.execute("select cash_due_cents from public.deliveries").fetchone() == {"cash_due_cents": 0}
    assert code_of(lambda: collect(api, menu.tenant.claims("staff"), order["order_id"], order["total_cents"])) == ("BR153", "no_cash_due")


def test_the_hand_over_and_a_days_reconciliation_use_their_indexes(conn: Conn, menu: Menu) -> None:
    """2,500 collections over 50 days: a venue's open cash (hand-over) comes from the partial index, one
    business day's reconciliation from the (venue, day) index, neither from a scan of the history."""
    b, v = menu.tenant.business_id, menu.venue_id
    conn.execute("""
        with o as (
          insert into public.orders (business_id, venue_id, order_number, channel, fulfilment, currency, subtotal_cents, total_cents,
                                     payment_method)
          select %(b)s, %(v)s, 100000 + g, 'web', 'pickup', 'USD', 1000, 1000, 'pay_at_counter' from generate_series(1, 2500) g
          returning id, order_number)
        insert into public.cash_collections (business_id, venue_id, order_id, outcome, amount_due_cents, received_cents, currency,
                                             collected_at, business_day, handover_id)
        select %(b)s, %(v)s, o.id, 'collected', 1000, 1000, 'USD', now() - (o.order_number %% 50) * interval '1 day',
               (now() - (o.order_number %% 50) * interval '1 day')::date, null
        from o""", {"b": b, "v": v})
    handover = conn.execute("insert into public.cash_handovers (business_id, venue_id, collections_count, expected_cents, counted_cents, "
                            "currency, business_day) values (%s, %s, 0, 0, 0, 'USD', current_date) returning id", (b, v)).fetchone()
    assert handover
    conn.execute("update public.cash_collections set handover_id = %s where business_id = %s and business_day < current_date - 1",
                 (handover["id"], b))
    conn.execute("analyze public.cash_collections")

    def plan(query: str, params: Any) -> str:
        row = conn.execute("explain (format json) " + query, params).fetchone()
        assert row is not None
        return json.dumps(row["QUERY PLAN"])

    text = plan("select count(*), sum(c.collected_cents) from public.cash_collections c where c.business_id = %s and c.venue_id = %s "
                "and c.handover_id is null and c.outcome = 'collected' and c.driver_id is not distinct from null", (b, v))
    assert "cash_collections_open_idx" in text and "Seq Scan" not in text, text
    text = plan("select * from public.cash_reconciliation where business_id = %s and venue_id = %s and business_day = current_date - 7", (b, v))
    assert "cash_collections_venue_day_idx" in text and "Seq Scan" not in text, text
