"""The rewards engine: earn rules and tiers, redemptions that cannot overspend, vouchers that
place_order applies, and their reversal."""

from __future__ import annotations

import json
import threading
from typing import Any

import psycopg
import pytest

from brigade.auth import Claims
from tests.conftest import Api, Factory
from tests.ordering_kit import EXPECTED_TOTAL, Menu, order_payload, session_completed

PHONE = "+12125550500"


def place(api: Api, menu: Menu, claims: Claims | None = None, **overrides: Any) -> dict[str, Any]:
    payload = order_payload(menu, customer={"name": "Rita", "phone": PHONE, "email": "rita@example.test"}, **overrides)
    return api.run(claims or Claims.anon(), "select public.place_order(%s) as r", (json.dumps(payload),))[0]["r"]


def pay(conn: psycopg.Connection[dict[str, Any]], order: dict[str, Any]) -> None:
    conn.execute("select app.apply_stripe_event(%s)", (json.dumps(session_completed(order, f"cs_{order['order_id']}", f"pi_{order['order_id']}")),))


def customer_id(conn: psycopg.Connection[dict[str, Any]], order: dict[str, Any]) -> Any:
    return conn.execute("select customer_id from public.orders where id = %s", (order["order_id"],)).fetchone()["customer_id"]  # type: ignore[index]


def balance(conn: psycopg.Connection[dict[str, Any]], cust: Any) -> int:
    row = conn.execute("select balance from public.loyalty_accounts where customer_id = %s", (cust,)).fetchone()
    return row["balance"] if row else 0


@pytest.fixture
def reward(conn: psycopg.Connection[dict[str, Any]], menu: Menu) -> Any:
    return conn.execute("insert into public.rewards (business_id, name, kind, points_cost, product_id) values (%s, 'Free croissant', "
                        "'free_product', 10, %s) returning id", (menu.tenant.business_id, menu.products["croissant"])).fetchone()["id"]  # type: ignore[index]


def test_earn_rules_visit_points_tier_multiplier_and_first_order_bonus(api: Api, conn: psycopg.Connection[dict[str, Any]], menu: Menu) -> None:
    b = menu.tenant.business_id
    conn.execute("insert into public.loyalty_programs (business_id, points_per_currency_unit, points_per_visit, first_order_bonus) "
                 "values (%s, 2, 5, 50) on conflict (business_id) do update set points_per_currency_unit = 2, points_per_visit = 5, first_order_bonus = 50", (b,))
    first = place(api, menu)
    pay(conn, first)
    c = customer_id(conn, first)
    per_order = (EXPECTED_TOTAL // 100) * 2 + 5
    assert balance(conn, c) == per_order + 50
    conn.execute("insert into public.loyalty_tiers (business_id, name, min_spend_cents, multiplier) values (%s, 'Gold', %s, 1.5)", (b, EXPECTED_TOTAL))
    assert conn.execute("select app.recompute_tiers(%s) as n", (b,)).fetchone() == {"n": 1}
    second = place(api, menu)
    pay(conn, second)
    assert balance(conn, c) == per_order + 50 + int(per_order * 1.5), "gold earns 1.5x; the bonus came once"


def test_tiers_at_the_threshold_edges(api: Api, conn: psycopg.Connection[dict[str, Any]], menu: Menu) -> None:
    b = menu.tenant.business_id
    order = place(api, menu)
    pay(conn, order)
    c = customer_id(conn, order)
    conn.execute("insert into public.loyalty_tiers (business_id, name, min_spend_cents, multiplier) values "
                 "(%s, 'Bronze', 0, 1), (%s, 'Silver', %s, 1.2), (%s, 'Gold', %s, 1.5)", (b, b, EXPECTED_TOTAL, b, EXPECTED_TOTAL + 1))

    def tier() -> str:
        return conn.execute("select t.name from public.loyalty_accounts a join public.loyalty_tiers t on t.id = a.tier_id "
                            "where a.customer_id = %s", (c,)).fetchone()["name"]  # type: ignore[index]

    conn.execute("select app.recompute_tiers(%s)", (b,))
    assert tier() == "Silver", "spend exactly at the threshold reaches it; one cent short of Gold does not"
    conn.execute("update public.orders set paid_at = now() - interval '366 days' where id = %s", (order["order_id"],))
    conn.execute("select app.recompute_tiers(%s)", (b,))
    assert tier() == "Bronze", "spend older than 12 months no longer counts"
    changes = conn.execute("select message -> 'payload' as p from pgmq.q_brigade_events where message ->> 'topic' = 'loyalty.tier_changed'").fetchall()
    assert len(changes) == 2
    assert conn.execute("select app.recompute_tiers(%s) as n", (b,)).fetchone() == {"n": 0}, "no change, no event"


def test_points_never_go_negative(conn: psycopg.Connection[dict[str, Any]], menu: Menu, api: Api) -> None:
    order = place(api, menu)
    pay(conn, order)
    c = customer_id(conn, order)
    with pytest.raises(psycopg.Error) as overdraw:
        conn.execute("insert into public.loyalty_transactions (business_id, customer_id, points, reason) values (%s, %s, %s, 'manual')",
                     (menu.tenant.business_id, c, -(balance(conn, c) + 1)))
    assert overdraw.value.sqlstate == "BR301"
    with pytest.raises(psycopg.Error) as edit:
        conn.execute("update public.loyalty_transactions set points = 1000000")
    assert edit.value.sqlstate == "BR006"


def test_redeem_then_use_the_voucher_once(api: Api, conn: psycopg.Connection[dict[str, Any]], factory: Factory, menu: Menu, reward: Any) -> None:
    user = factory.user("rita@example.test")
    me = Claims.user(user, email="rita@example.test")
    order = place(api, menu, me)
    pay(conn, order)
    c = customer_id(conn, order)
    before = balance(conn, c)
    voucher = api.run(me, "select public.redeem_reward(%s) as r", (reward,))[0]["r"]
    assert voucher["points_spent"] == 10 and voucher["balance"] == before - 10 and balance(conn, c) == before - 10
    assert api.run(me, "select code, status from public.reward_redemptions") == [{"code": voucher["code"], "status": "issued"}]

    with_voucher = place(api, menu, me, voucher_code=voucher["code"].lower())
    free = [line for line in with_voucher["lines"] if line["unit_price_cents"] == 0]
    assert len(free) == 1 and free[0]["name"] == "Croissant"
    assert with_voucher["total_cents"] == EXPECTED_TOTAL, "the free line adds nothing to the bill"
    assert conn.execute("select status from public.reward_redemptions").fetchone() == {"status": "reserved"}
    with pytest.raises(psycopg.Error) as reused:
        place(api, menu, me, voucher_code=voucher["code"])
    assert reused.value.sqlstate == "BR115"
    pay(conn, with_voucher)
    used = conn.execute("select status, order_id::text as order_id from public.reward_redemptions").fetchone()
    assert used == {"status": "used", "order_id": with_voucher["order_id"]}


def test_someone_elses_voucher_is_refused(api: Api, conn: psycopg.Connection[dict[str, Any]], menu: Menu, reward: Any) -> None:
    order = place(api, menu)
    pay(conn, order)
    code = conn.execute("select app.redeem_reward(%s, %s) as r", (reward, customer_id(conn, order))).fetchone()["r"]["code"]  # type: ignore[index]
    other = order_payload(menu, customer={"name": "Mallory", "phone": "+12125550999"}, voucher_code=code)
    before = conn.execute("select count(*) as n from public.orders").fetchone()
    with pytest.raises(psycopg.Error) as refused:
        api.run(Claims.anon(), "select public.place_order(%s)", (json.dumps(other),))
    assert refused.value.sqlstate == "BR115"
    assert conn.execute("select count(*) as n from public.orders").fetchone() == before, "nothing written"


def test_two_redemptions_racing_for_the_same_points(conn: psycopg.Connection[dict[str, Any]], menu: Menu, api: Api, reward: Any) -> None:
    order = place(api, menu)
    pay(conn, order)
    c = customer_id(conn, order)
    conn.execute("update public.rewards set points_cost = %s where id = %s", (balance(conn, c) // 2 + 1, reward))  # only one fits
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def redeem() -> None:
        with psycopg.connect(api.dsn, autocommit=True) as own:
            own.execute("select set_config('request.jwt.claims', '{\"role\": \"service_role\"}', false)")
            barrier.wait()
            try:
                own.execute("select app.redeem_reward(%s, %s)", (reward, c))
                outcomes.append("won")
            except psycopg.Error as exc:
                outcomes.append(exc.sqlstate or "?")

    threads = [threading.Thread(target=redeem) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["BR302", "won"], outcomes
    assert conn.execute("select count(*) as n from public.reward_redemptions").fetchone() == {"n": 1}
    assert balance(conn, c) >= 0


def test_refund_and_cancellation_restore_vouchers_and_reverse_points(api: Api, conn: psycopg.Connection[dict[str, Any]], menu: Menu, reward: Any) -> None:
    first = place(api, menu)
    pay(conn, first)
    c = customer_id(conn, first)
    code = conn.execute("select app.redeem_reward(%s, %s) as r", (reward, c)).fetchone()["r"]["code"]  # type: ignore[index]
    unpaid = place(api, menu, voucher_code=code)
    api.run(menu.tenant.claims("staff"), "select public.set_order_status(%s, 'cancelled', 'left')", (unpaid["order_id"],))
    assert conn.execute("select status, order_id from public.reward_redemptions").fetchone() == {"status": "issued", "order_id": None}

    paid = place(api, menu, voucher_code=code)
    pay(conn, paid)
    earned = balance(conn, c)
    refund = api.run(menu.tenant.claims("manager"), "select public.request_refund(%s) as r", (paid["order_id"],))[0]["r"]
    conn.execute("select app.record_refund(%s, %s, %s, 're_full', 'succeeded', %s, null)",
                 (menu.tenant.business_id, paid["order_id"], refund["refund_id"], refund["amount_cents"]))
    assert conn.execute("select status from public.reward_redemptions").fetchone() == {"status": "issued"}, "the voucher is back"
    assert balance(conn, c) == earned - (paid["total_cents"] // 100), "that order's points are reversed"


def test_delivery_credit_and_customers_see_their_own(api: Api, conn: psycopg.Connection[dict[str, Any]], factory: Factory, menu: Menu) -> None:
    user = factory.user("rita@example.test")
    me = Claims.user(user, email="rita@example.test")
    pay(conn, place(api, menu, me))
    credit = conn.execute("insert into public.rewards (business_id, name, kind, points_cost, credit_cents) values (%s, 'Free delivery', "
                          "'delivery_credit', 5, 500) returning id", (menu.tenant.business_id,)).fetchone()["id"]  # type: ignore[index]
    code = api.run(me, "select public.redeem_reward(%s) as r", (credit,))[0]["r"]["code"]
    with pytest.raises(psycopg.Error) as pickup:
        place(api, menu, me, voucher_code=code)
    assert pickup.value.sqlstate == "BR116"
    order = place(api, menu, me, voucher_code=code, fulfilment="delivery", delivery_address={"line1": "5 Near St"})
    assert order["discount_cents"] == 299 and order["total_cents"] == EXPECTED_TOTAL, "credit capped at the delivery fee"
    mine = api.run(me, "select balance from public.loyalty_accounts")
    assert len(mine) == 1
    assert len(api.run(me, "select * from public.loyalty_transactions")) >= 2
    assert api.run(Claims.user(factory.user()), "select count(*) as n from public.reward_redemptions") == [{"n": 0}]
    assert len(api.run(menu.tenant.claims("staff"), "select * from public.reward_redemptions")) == 1
