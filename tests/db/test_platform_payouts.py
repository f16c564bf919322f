"""Platform fees per payment (from the plan), per-period payouts with refunds and delivery costs,
and the CSV export for the operator and the merchant."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import psycopg
import pytest

from brigade.auth import Claims
from tests.conftest import Api, Factory
from tests.ordering_kit import Menu, build_menu, order_payload, session_completed

Conn = psycopg.Connection[dict[str, Any]]


def paid_order(api: Api, conn: Conn, menu: Menu, **overrides: Any) -> dict[str, Any]:
    order = api.run(Claims.anon(), "select public.place_order(%s) as r", (json.dumps(order_payload(menu, **overrides)),))[0]["r"]
    conn.execute("select app.apply_stripe_event(%s)", (json.dumps(session_completed(order, f"cs_{order['order_id']}", f"pi_{order['order_id']}")),))
    return order


def fee_of(conn: Conn, order: dict[str, Any]) -> dict[str, Any]:
    row = conn.execute("select f.plan_key, f.fee_cents, f.base_amount_cents, p.amount_cents from public.platform_fees f "
                       "join public.payments p on p.business_id = f.business_id and p.id = f.payment_id where f.order_id = %s and f.refund_id is null",
                       (order["order_id"],)).fetchone()
    assert row is not None
    return row


def test_a_fee_per_payment_from_the_plan(api: Api, conn: Conn, menu: Menu) -> None:
    first = paid_order(api, conn, menu)
    fee = fee_of(conn, first)
    assert fee["plan_key"] == "starter" and fee["base_amount_cents"] == fee["amount_cents"] == first["total_cents"]
    assert fee["fee_cents"] == round(first["total_cents"] * 300 / 10000) + 30
    conn.execute("select app.change_plan(%s, 'enterprise')", (menu.tenant.business_id,))
    second = paid_order(api, conn, menu)
    assert fee_of(conn, second)["fee_cents"] == round(second["total_cents"] * 100 / 10000) + 10
    # a replayed webhook records no second payment and no second fee
    conn.execute("select app.apply_stripe_event(%s)", (json.dumps(session_completed(second, f"cs_{second['order_id']}", f"pi_{second['order_id']}")),))
    assert conn.execute("select count(*) as n from public.platform_fees where order_id = %s", (second["order_id"],)).fetchone() == {"n": 1}
    with pytest.raises(psycopg.Error) as err:
        conn.execute("update public.platform_fees set fee_cents = 0 where order_id = %s", (second["order_id"],))
    assert err.value.diag.sqlstate == "BR006"


def test_payouts_net_out_fees_refunds_and_delivery_costs(api: Api, conn: Conn, menu: Menu, operator: Claims) -> None:
    b = menu.tenant.business_id
    pickup = paid_order(api, conn, menu)
    delivery = paid_order(api, conn, menu, fulfilment="delivery",
                          delivery_address={"line1": "1 Main St", "latitude": 40.713, "longitude": -74.006})
    refund = api.run(menu.tenant.claims("owner"), "select public.request_refund(%s, 250) as r", (pickup["order_id"],))[0]["r"]
    conn.execute("select app.record_refund(%s, %s, %s, 're_payout_1', 'succeeded', 250, null)", (b, pickup["order_id"], refund["refund_id"]))
    window = conn.execute("select now() - interval '1 hour' as s, now() + interval '1 hour' as e").fetchone()
    assert window is not None

    def run() -> dict[str, Any]:
        out = api.run(operator, "select public.generate_payouts(%s, %s, %s) as r", (window["s"], window["e"], b))[0]["r"]
        return out["payouts"][0]

    # the refund gave back its share of the pickup's fee (0072)
    fees = fee_of(conn, pickup)["fee_cents"] + fee_of(conn, delivery)["fee_cents"] \
        - round(fee_of(conn, pickup)["fee_cents"] * 250 / pickup["total_cents"])
    payout = run()
    gross = pickup["total_cents"] + delivery["total_cents"]
    assert (payout["gross_cents"], payout["platform_fee_cents"], payout["refunds_cents"], payout["delivery_cost_cents"]) == (gross, fees, 250, 0)
    assert payout["net_cents"] == gross - fees - 250 and payout["payments_count"] == 2

    # what dispatch paid to deliver the delivery order (app.order_delivery_cost) comes off the payout
    conn.execute("insert into public.deliveries (business_id, venue_id, order_id, external_delivery_id, pickup, dropoff, currency, "
                 "dropoff_pin, cost_cents) values (%s, %s, %s, %s, '{}', '{}', 'USD', '1234', 675)",
                 (b, menu.venue_id, delivery["order_id"], f"BRG-{delivery['order_id']}"))
    payout = run()
    assert payout["delivery_cost_cents"] == 675 and payout["net_cents"] == gross - fees - 250 - 675

    # a paid payout is final; the operator's actions are audited
    assert api.run(operator, "select app.mark_payout_paid(%s, %s) as r", (b, payout["id"])) == [{"r": True}]
    conn.execute("update public.deliveries set cost_cents = 0 where order_id = %s", (delivery["order_id"],))
    assert run()["delivery_cost_cents"] == 675, "a paid payout keeps its figures"
    with pytest.raises(psycopg.Error) as err:
        conn.execute("update public.business_payouts set status = 'pending' where id = %s", (payout["id"],))
    assert err.value.diag.sqlstate == "BR742"
    actions = [r["action"] for r in conn.execute("select action from public.audit_log where business_id = %s and action like 'payout.%%' order by id", (b,))]
    assert actions == ["payout.computed", "payout.computed", "payout.paid", "payout.computed"]
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        api.run(menu.tenant.claims("owner"), "select public.generate_payouts(%s, %s, %s)", (window["s"], window["e"], b))


def test_payout_csv_for_the_operator_and_the_merchant(api: Api, conn: Conn, factory: Factory, operator: Claims) -> None:
    a, other = factory.tenant('Comma, "Quoted" Café'), factory.tenant("Bravo")
    for t in (a, other):
        paid_order(api, conn, build_menu(conn, t))
    window = conn.execute("select now() - interval '1 hour' as s, now() + interval '1 hour' as e").fetchone()
    assert window is not None
    out = api.run(operator, "select public.generate_payouts(%s, %s) as r", (window["s"], window["e"]))[0]["r"]
    assert {p["business_id"] for p in out["payouts"]} >= {str(a.business_id), str(other.business_id)}

    def rows(claims: Claims, business: Any = None) -> list[dict[str, str]]:
        text = api.run(claims, "select public.payouts_csv(%s) as t", (business,))[0]["t"]
        return list(csv.DictReader(io.StringIO(text)))

    everything = rows(operator)
    assert {r["business_id"] for r in everything} == {str(a.business_id), str(other.business_id)}
    mine = rows(a.claims("owner"))
    assert [r["business_name"] for r in mine] == ['Comma, "Quoted" Café']
    row = mine[0]
    assert int(row["net_cents"]) == int(row["gross_cents"]) - int(row["platform_fee_cents"]) - int(row["refunds_cents"]) - int(row["delivery_cost_cents"])
    assert rows(a.claims("owner"), other.business_id) == []
    assert rows(a.claims("manager")) == []
