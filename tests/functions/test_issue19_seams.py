"""Issue 19's seams that show over HTTP: each test is named after the item it closes."""

from __future__ import annotations

from typing import Any

import psycopg

from tests.functions.test_payments import paid_order, refund
from tests.ordering_fixtures import Outside
from tests.ordering_kit import EXPECTED_TOTAL, Menu


def test_item_2_order_refunds_of_a_connect_business_go_to_its_stripe_account(
        api: Any, conn: psycopg.Connection[dict[str, Any]], menu: Menu, outside: Outside) -> None:
    conn.execute("update public.businesses set stripe_account_id = 'acct_conn19' where id = %s", (menu.tenant.business_id,))
    order = paid_order(api, menu, outside)
    r = refund(outside, menu.tenant.claims("manager"), {"order_id": order["order_id"], "amount_cents": 100})
    assert r.status_code == 200, r.text
    [call] = outside.stripe.server.calls("POST", "/v1/refunds")
    assert call.headers.get("stripe-account") == "acct_conn19"
    assert call.form["amount"] == ["100"]


def test_item_2_platform_refunds_carry_no_stripe_account(api: Any, menu: Menu, outside: Outside) -> None:
    order = paid_order(api, menu, outside)
    assert refund(outside, menu.tenant.claims("manager"), {"order_id": order["order_id"]}).json()["amount_cents"] == EXPECTED_TOTAL
    [call] = outside.stripe.server.calls("POST", "/v1/refunds")
    assert "stripe-account" not in call.headers
