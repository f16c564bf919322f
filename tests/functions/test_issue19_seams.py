"""Issue 19's seams that show over HTTP: each test is named after the item it closes."""

from __future__ import annotations

from typing import Any

import httpx
import psycopg

from tests.functions.test_payments import checkout, paid_order, place, refund
from tests.ordering_fixtures import Outside
from tests.ordering_kit import EXPECTED_TOTAL, Menu, session_completed, signed


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


def test_item_1_connect_fee_and_platform_fee_are_one_figure_returned_in_proportion_on_refunds(
        api: Any, conn: psycopg.Connection[dict[str, Any]], menu: Menu, outside: Outside) -> None:
    b = menu.tenant.business_id
    # the old second rate must not matter any more
    conn.execute("update public.businesses set stripe_account_id = 'acct_fee19', application_fee_bps = 900 where id = %s", (b,))
    fee = conn.execute("select app.platform_fee_cents(%s, %s) as f", (b, EXPECTED_TOTAL)).fetchone()["f"]  # type: ignore[index]
    assert fee == round(EXPECTED_TOTAL * 0.03) + 30  # the starter plan
    order = place(api, menu)
    assert checkout(outside, {"order_id": order["order_id"], "access_token": order["access_token"]}).status_code == 200
    [created] = outside.stripe.sessions()
    assert created.form["payment_intent_data[application_fee_amount]"] == [str(fee)]

    raw, headers = signed(session_completed(order, "cs_fee19", "pi_fee19"), outside.settings.stripe_webhook_secret)
    assert httpx.post(f"{outside.functions.url}/functions/v1/stripe-webhook", content=raw, headers=headers).json()["outcome"] == "paid"
    recorded = conn.execute("select p.application_fee_cents as app_fee, f.fee_cents from public.payments p join public.platform_fees f "
                            "on f.business_id = p.business_id and f.payment_id = p.id and f.refund_id is null where p.order_id = %s",
                            (order["order_id"],)).fetchone()
    assert recorded == {"app_fee": fee, "fee_cents": fee}

    part = 400
    assert refund(outside, menu.tenant.claims("manager"), {"order_id": order["order_id"], "amount_cents": part}).status_code == 200
    assert refund(outside, menu.tenant.claims("manager"), {"order_id": order["order_id"]}).status_code == 200
    calls = outside.stripe.server.calls("POST", "/v1/refunds")
    assert [c.form.get("refund_application_fee") for c in calls] == [["true"], ["true"]]
    back = [r["fee_cents"] for r in conn.execute("select fee_cents from public.platform_fees where order_id = %s and refund_id is not null "
                                                 "order by created_at, base_amount_cents desc", (order["order_id"],))]
    assert back == [-round(fee * part / EXPECTED_TOTAL), -(fee - round(fee * part / EXPECTED_TOTAL))]
    assert conn.execute("select sum(fee_cents) as s from public.platform_fees where order_id = %s", (order["order_id"],)).fetchone() == {"s": 0}


def test_item_1_booking_checkout_takes_the_plans_fee(api: Any, conn: psycopg.Connection[dict[str, Any]], factory: Any) -> None:
    from tests.bookings_kit import build_activity, hold

    tenant = factory.tenant("Escape Fee", {"bookings": True})
    conn.execute("update public.businesses set stripe_account_id = 'acct_bk19', application_fee_bps = 900 where id = %s", (tenant.business_id,))
    booking = hold(api, build_activity(conn, tenant))
    ctx = conn.execute("select app.booking_checkout_context(%s, %s) as c", (booking["booking_id"], booking["access_token"])).fetchone()["c"]  # type: ignore[index]
    expected = conn.execute("select app.platform_fee_cents(%s, %s) as f", (tenant.business_id, booking["total_cents"])).fetchone()["f"]  # type: ignore[index]
    assert expected > 0 and ctx["application_fee_cents"] == expected
    assert ctx["metadata"]["platform_fee_percent"] == "3.00"
