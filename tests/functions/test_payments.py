"""checkout and refund over HTTP, with the real stripe SDK against a fake Stripe."""

from __future__ import annotations

import json
import threading
from typing import Any

import httpx
import psycopg
import pytest

from brigade import auth
from brigade.auth import Claims
from tests.conftest import Api
from tests.ordering_fixtures import Outside
from tests.ordering_kit import EXPECTED_TOTAL, Menu, order_payload, session_completed, signed


def place(api: Api, menu: Menu, **overrides: Any) -> dict[str, Any]:
    return api.run(Claims.anon(), "select public.place_order(%s) as r", (json.dumps(order_payload(menu, **overrides)),))[0]["r"]


def checkout(outside: Outside, body: dict[str, Any], headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(f"{outside.functions.url}/functions/v1/checkout", json=body, headers=headers or {}, timeout=30)


def bearer(outside: Outside, claims: Claims) -> dict[str, str]:
    return {"authorization": f"Bearer {auth.sign(claims, outside.settings.jwt_secret)}"}


def paid_order(api: Api, menu: Menu, outside: Outside, n: int = 1) -> dict[str, Any]:
    order = place(api, menu)
    raw, headers = signed(session_completed(order, f"cs_{n}", f"pi_{n}"), outside.settings.stripe_webhook_secret)
    assert httpx.post(f"{outside.functions.url}/functions/v1/stripe-webhook", content=raw, headers=headers).json()["outcome"] == "paid"
    return order


def test_concurrent_checkouts_create_one_session(api: Api, menu: Menu, outside: Outside) -> None:
    order = place(api, menu)
    body = {"order_id": order["order_id"], "access_token": order["access_token"]}
    barrier = threading.Barrier(3)
    results: list[dict[str, Any]] = []

    def go() -> None:
        barrier.wait()
        results.append(checkout(outside, body).json())

    threads = [threading.Thread(target=go) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({r["session_id"] for r in results}) == 1, results
    assert len(outside.stripe.sessions()) == 1


def test_staff_may_open_checkout_without_the_token(api: Api, menu: Menu, outside: Outside) -> None:
    order = place(api, menu)
    r = checkout(outside, {"order_id": order["order_id"]}, bearer(outside, menu.tenant.claims("staff")))
    assert r.status_code == 200 and r.json()["session_id"].startswith("cs_test_")


def test_connect_businesses_get_an_application_fee(api: Api, conn: psycopg.Connection[dict[str, Any]], menu: Menu, outside: Outside) -> None:
    conn.execute("update public.businesses set stripe_account_id = 'acct_123' where id = %s", (menu.tenant.business_id,))
    order = place(api, menu)
    assert checkout(outside, {"order_id": order["order_id"], "access_token": order["access_token"]}).status_code == 200
    [created] = outside.stripe.sessions()
    # the plan's platform fee (starter: 3 % + 30 cents), 0072
    assert created.form["payment_intent_data[application_fee_amount]"] == [str(round(EXPECTED_TOTAL * 0.03) + 30)]
    assert created.headers["stripe-account"] == "acct_123"


@pytest.mark.parametrize(("case", "status", "error"), [
    ("wrong token", 404, "order_not_found"),
    ("no token", 404, "order_not_found"),
    ("paid", 409, "order_already_paid"),
    ("module off", 403, "module_disabled"),
    ("bad body", 400, "invalid_input"),
    ("forged bearer", 401, "invalid_token"),
])
def test_checkout_refusals(api: Api, conn: psycopg.Connection[dict[str, Any]], menu: Menu, outside: Outside,
                           case: str, status: int, error: str) -> None:
    order = place(api, menu)
    body: dict[str, Any] = {"order_id": order["order_id"], "access_token": order["access_token"]}
    headers: dict[str, str] = {}
    if case == "wrong token":
        body["access_token"] = "00000000-0000-4000-8000-000000000000"
    elif case == "no token":
        body.pop("access_token")
    elif case == "paid":
        conn.execute("select app.apply_stripe_event(%s)", (json.dumps(session_completed(order, "cs_x", "pi_x")),))
    elif case == "module off":
        conn.execute("update public.businesses set modules_json = modules_json || '{\"ordering\": false}' where id = %s", (menu.tenant.business_id,))
    elif case == "bad body":
        body["order_id"] = "nope"
    elif case == "forged bearer":
        headers = {"authorization": "Bearer " + auth.sign(Claims.service(), "x" * 40)}
    r = checkout(outside, body, headers)
    assert r.status_code == status and r.json()["error"] == error, r.text
    assert outside.stripe.sessions() == []


def refund(outside: Outside, claims: Claims, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{outside.functions.url}/functions/v1/refund", json=body, headers=bearer(outside, claims), timeout=30)


def snapshot(conn: psycopg.Connection[dict[str, Any]], order_id: str) -> dict[str, Any]:
    o = conn.execute("select payment_status, refunded_cents, customer_id from public.orders where id = %s", (order_id,)).fetchone()
    assert o is not None
    return {
        "payment_status": o["payment_status"], "refunded": o["refunded_cents"],
        "spent": conn.execute("select total_spent_cents as s, total_orders as n from public.customer_venue_stats where customer_id = %s",
                              (o["customer_id"],)).fetchone(),
        "points": conn.execute("select balance from public.loyalty_accounts where customer_id = %s", (o["customer_id"],)).fetchone()["balance"],  # type: ignore[index]
        "butter": float(conn.execute("select quantity from public.stock_items where sku = 'butter'").fetchone()["quantity"]),  # type: ignore[index]
    }


def test_line_refund_with_restock_then_the_rest(api: Api, conn: psycopg.Connection[dict[str, Any]], menu: Menu, outside: Outside) -> None:
    order = paid_order(api, menu, outside)
    before = snapshot(conn, order["order_id"])
    croissants = conn.execute("select id from public.order_items where order_id = %s and name = 'Croissant'", (order["order_id"],)).fetchone()
    r = refund(outside, menu.tenant.claims("manager"), {"order_id": order["order_id"], "lines": {str(croissants["id"]): 1},  # type: ignore[index]
                                                        "restock": True, "reason": "burnt"})
    assert r.status_code == 200, r.text
    line_amount = 350 + round(350 * 111 / 1390)
    assert r.json()["amount_cents"] == line_amount and r.json()["status"] == "succeeded"
    [call] = outside.stripe.server.calls("POST", "/v1/refunds")
    assert call.headers["idempotency-key"] == f"refund:{order['order_id']}:1"
    assert call.form["payment_intent"] == ["pi_1"] and call.form["amount"] == [str(line_amount)]

    after = snapshot(conn, order["order_id"])
    assert after["payment_status"] == "partially_refunded" and after["refunded"] == line_amount
    assert after["spent"] == {"s": before["spent"]["s"] - line_amount, "n": 1}
    assert after["points"] == before["points"] - (EXPECTED_TOTAL // 100) * line_amount // EXPECTED_TOTAL
    assert after["butter"] == pytest.approx(before["butter"] + 0.02), "one croissant's butter back in stock"

    # Stripe's own webhooks for it change nothing more
    rid = conn.execute("select provider_refund_id from public.refunds where order_id = %s", (order["order_id"],)).fetchone()["provider_refund_id"]  # type: ignore[index]
    for event in ({"type": "refund.updated", "obj": {"id": rid, "object": "refund", "status": "succeeded", "amount": line_amount,
                                                     "payment_intent": "pi_1"}},
                  {"type": "charge.refunded", "obj": {"id": "ch_1", "object": "charge", "payment_intent": "pi_1", "amount_refunded": line_amount}}):
        from tests.ordering_kit import stripe_event

        raw, headers = signed(stripe_event(event["type"], event["obj"]), outside.settings.stripe_webhook_secret)  # type: ignore[arg-type]
        assert httpx.post(f"{outside.functions.url}/functions/v1/stripe-webhook", content=raw, headers=headers).status_code == 200
    assert snapshot(conn, order["order_id"]) == after

    rest = refund(outside, menu.tenant.claims("owner"), {"order_id": order["order_id"]})
    assert rest.status_code == 200 and rest.json()["amount_cents"] == EXPECTED_TOTAL - line_amount
    final = snapshot(conn, order["order_id"])
    assert final["payment_status"] == "refunded" and final["refunded"] == EXPECTED_TOTAL
    assert final["spent"] == {"s": 0, "n": 0} and final["points"] == 0

    over = refund(outside, menu.tenant.claims("owner"), {"order_id": order["order_id"], "amount_cents": 1})
    assert over.status_code == 400 and over.json()["code"] == "BR130"


@pytest.mark.parametrize(("who", "body", "status", "code"), [
    ("staff", {}, 403, "42501"),  # a member without the refund permission (issue 22)
    ("manager", {"amount_cents": EXPECTED_TOTAL + 1}, 400, "BR131"),
    ("manager", {"lines": {"00000000-0000-4000-8000-000000000000": 1}}, 400, "BR132"),
])
def test_refund_refusals(api: Api, conn: psycopg.Connection[dict[str, Any]], menu: Menu, outside: Outside,
                         who: str, body: dict[str, Any], status: int, code: str) -> None:
    order = paid_order(api, menu, outside)
    r = refund(outside, menu.tenant.claims(who), {"order_id": order["order_id"], **body})
    assert r.status_code == status and r.json()["code"] == code, r.text
    assert conn.execute("select count(*) as n from public.refunds").fetchone() == {"n": 0}
    assert outside.stripe.server.calls("POST", "/v1/refunds") == []


def test_a_refund_stripe_refuses_is_reported_and_recorded(api: Api, conn: psycopg.Connection[dict[str, Any]], menu: Menu, outside: Outside) -> None:
    order = paid_order(api, menu, outside)
    outside.stripe.refund_status = "error"
    r = refund(outside, menu.tenant.claims("manager"), {"order_id": order["order_id"], "amount_cents": 100})
    assert r.status_code == 502 and r.json()["error"] == "refund_failed"
    assert conn.execute("select status, failure_reason is not null as why from public.refunds").fetchone() == {"status": "failed", "why": True}
    assert snapshot(conn, order["order_id"])["payment_status"] == "paid"


def test_the_local_checkout_page_pays_only_with_the_log_provider(api: Api, conn: psycopg.Connection[dict[str, Any]], menu: Menu,
                                                                 settings: Any) -> None:
    from functions.app import create_app
    from tests.conftest import ServerThread

    order = place(api, menu)
    with ServerThread(create_app(settings)) as server:  # payments_provider = "log": no Stripe keys
        session = httpx.post(f"{server.url}/functions/v1/checkout", json={"order_id": order["order_id"],
                                                                         "access_token": order["access_token"]}).json()
        assert session["url"].endswith(f"/functions/v1/checkout/local/{session['session_id']}")
        page = httpx.get(f"{server.url}/functions/v1/checkout/local/{session['session_id']}")
        assert page.status_code == 200 and f"Order #{order['order_number']}" in page.text
        paid = httpx.post(f"{server.url}/functions/v1/checkout/local/{session['session_id']}/pay").json()
        assert paid["outcome"] == "paid"
        assert httpx.post(f"{server.url}/functions/v1/checkout/local/{session['session_id']}/pay").json()["outcome"] == "duplicate"
    assert conn.execute("select payment_status from public.orders where id = %s", (order["order_id"],)).fetchone() == {"payment_status": "paid"}


def test_no_local_checkout_page_with_real_stripe(api: Api, menu: Menu, outside: Outside) -> None:
    order = place(api, menu)
    session = checkout(outside, {"order_id": order["order_id"], "access_token": order["access_token"]}).json()
    assert httpx.post(f"{outside.functions.url}/functions/v1/checkout/local/{session['session_id']}/pay").status_code == 404
