"""stripe-webhook: signatures, and the promise that duplicates and any arrival order converge."""

from __future__ import annotations

import json
import random
import threading
from typing import Any

import httpx
import psycopg
import pytest

from brigade.auth import Claims
from tests.conftest import Api
from tests.ordering_fixtures import Outside
from tests.ordering_kit import Menu, order_payload, payment_intent, session_completed, signed, stripe_event


def place(api: Api, menu: Menu, **overrides: Any) -> dict[str, Any]:
    return api.run(Claims.anon(), "select public.place_order(%s) as r", (json.dumps(order_payload(menu, **overrides)),))[0]["r"]


def post(outside: Outside, event: dict[str, Any]) -> httpx.Response:
    raw, headers = signed(event, outside.settings.stripe_webhook_secret)
    return httpx.post(f"{outside.functions.url}/functions/v1/stripe-webhook", content=raw, headers=headers, timeout=30)


def state(conn: psycopg.Connection[dict[str, Any]], order_id: str) -> dict[str, Any]:
    """Everything the payment events decide about an order, without ids and timestamps."""
    o = conn.execute("select status, payment_status, refunded_cents, checkout_session_id, payment_intent_id, "
                     "pickup_code_hash is not null as has_code, customer_id is not null as has_customer "
                     "from public.orders where id = %s", (order_id,)).fetchone()
    q = lambda sql: conn.execute(sql, (order_id,)).fetchall()  # noqa: E731
    return {
        "order": o,
        "payments": q("select payment_intent_id, checkout_session_id, amount_cents, status from public.payments where order_id = %s"),
        "tickets": q("select status, allergens from public.kitchen_tickets where order_id = %s"),
        "stats": q("select s.total_orders, s.total_spent_cents from public.customer_venue_stats s "
                   "join public.orders o on o.business_id = s.business_id and o.customer_id = s.customer_id and o.venue_id = s.venue_id where o.id = %s"),
        "points": q("select points, reason from public.loyalty_transactions where order_id = %s order by points desc"),
        "stock": q("select reason, sum(delta)::text as delta from public.stock_movements where order_id = %s group by reason order by reason"),
        "refunds": q("select amount_cents, status, source, applied_at is not null as applied from public.refunds where order_id = %s order by amount_cents"),
        "notifications": q("select channel, template, status from public.notification_log where order_id = %s order by channel"),
        "paid_events": conn.execute("select count(*) as n from pgmq.q_brigade_events where message ->> 'topic' = 'order.paid' "
                                    "and message -> 'payload' ->> 'order_id' = %s", (order_id,)).fetchone(),
    }


def events_for(order: dict[str, Any], n: int) -> list[dict[str, Any]]:
    session, pi = f"cs_test_{n}", f"pi_test_{n}"
    charge = {"id": f"ch_test_{n}", "object": "charge", "payment_intent": pi, "amount": order["total_cents"],
              "amount_refunded": 500, "refunded": False}
    return [
        session_completed(order, session, pi),
        payment_intent(order, "payment_intent.succeeded", pi),
        payment_intent(order, "payment_intent.payment_failed", pi),  # a late failure must not un-pay
        stripe_event("checkout.session.expired", {"id": session, "object": "checkout.session", "payment_status": "unpaid",
                                                  "metadata": {"order_id": order["order_id"], "business_id": order["business_id"]}}),
        stripe_event("charge.refunded", charge),  # 5.00 refunded in the Stripe dashboard
        stripe_event("charge.unknown_future_event", {"id": "x", "object": "thing"}),
    ]


def test_replayed_and_shuffled_events_converge(api: Api, conn: psycopg.Connection[dict[str, Any]], menu: Menu, outside: Outside) -> None:
    calm = place(api, menu)
    stormy = place(api, menu, customer={"name": "Bo", "phone": "+12125550111", "email": "bo@example.test"})
    for event in events_for(calm, 1):
        assert post(outside, event).status_code == 200
    storm = [json.loads(json.dumps(e)) for e in events_for(stormy, 2) for _ in range(5)]
    random.Random(20261121).shuffle(storm)
    outcomes = [post(outside, e) for e in storm]
    assert all(r.status_code == 200 for r in outcomes), [r.text for r in outcomes if r.status_code != 200]
    assert sum(r.json()["outcome"] == "duplicate" for r in outcomes) == 24

    a, b = state(conn, calm["order_id"]), state(conn, stormy["order_id"])
    for s in (a, b):
        s["order"].pop("checkout_session_id"), s["order"].pop("payment_intent_id")
        for p in s["payments"]:
            p.pop("payment_intent_id"), p.pop("checkout_session_id")
    assert a == b
    assert a["order"]["payment_status"] == "partially_refunded" and a["order"]["refunded_cents"] == 500
    assert len(a["payments"]) == 1 and len(a["tickets"]) == 1 and a["paid_events"] == {"n": 1}
    assert a["refunds"] == [{"amount_cents": 500, "status": "succeeded", "source": "stripe", "applied": True}]
    paid = conn.execute("select checkout_session_id from public.orders where id = %s", (stormy["order_id"],)).fetchone()
    assert paid == {"checkout_session_id": "cs_test_2"}


def test_the_same_event_twice_at_the_same_instant_fans_out_once(
    api: Api, conn: psycopg.Connection[dict[str, Any]], menu: Menu, outside: Outside
) -> None:
    order = place(api, menu)
    completed = session_completed(order, "cs_test_9", "pi_test_9")
    succeeded = payment_intent(order, "payment_intent.succeeded", "pi_test_9")
    barrier = threading.Barrier(4)
    results: list[httpx.Response] = []

    def send(event: dict[str, Any]) -> None:
        raw, headers = signed(event, outside.settings.stripe_webhook_secret)
        barrier.wait()
        results.append(httpx.post(f"{outside.functions.url}/functions/v1/stripe-webhook", content=raw, headers=headers, timeout=30))

    threads = [threading.Thread(target=send, args=(e,)) for e in (completed, completed, succeeded, succeeded)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    outcomes = sorted(r.json()["outcome"] for r in results)
    assert outcomes == ["already_paid", "duplicate", "duplicate", "paid"], outcomes
    s = state(conn, order["order_id"])
    assert len(s["payments"]) == 1 and len(s["tickets"]) == 1 and s["paid_events"] == {"n": 1}
    assert s["stats"] == [{"total_orders": 1, "total_spent_cents": order["total_cents"]}]
    assert len(s["points"]) == 1


def test_async_payment_methods_wait_then_pay_or_fail(api: Api, conn: psycopg.Connection[dict[str, Any]], menu: Menu, outside: Outside) -> None:
    order = place(api, menu)
    assert post(outside, session_completed(order, "cs_a", "pi_a", payment_status="unpaid")).json()["outcome"] == "awaiting_payment"
    assert state(conn, order["order_id"])["order"]["payment_status"] == "pending"
    assert post(outside, session_completed(order, "cs_a", "pi_a", event_type="checkout.session.async_payment_succeeded")).json()["outcome"] == "paid"

    other = place(api, menu)
    post(outside, session_completed(other, "cs_b", "pi_b", payment_status="unpaid"))
    assert post(outside, session_completed(other, "cs_b", "pi_b", event_type="checkout.session.async_payment_failed")).json()["outcome"] == "failed"
    assert state(conn, other["order_id"])["order"]["payment_status"] == "failed"
    assert state(conn, other["order_id"])["tickets"] == []


def test_an_underpaid_session_does_not_pay_the_order(api: Api, conn: psycopg.Connection[dict[str, Any]], menu: Menu, outside: Outside) -> None:
    order = place(api, menu)
    event = session_completed(order, "cs_c", "pi_c")
    event["data"]["object"]["amount_total"] = order["total_cents"] - 1
    assert post(outside, event).json()["outcome"] == "amount_mismatch"
    assert state(conn, order["order_id"])["order"]["payment_status"] == "unpaid"


def test_dispute_marks_the_payment(api: Api, conn: psycopg.Connection[dict[str, Any]], menu: Menu, outside: Outside) -> None:
    order = place(api, menu)
    post(outside, session_completed(order, "cs_d", "pi_d"))
    dispute = stripe_event("charge.dispute.created", {"id": "dp_1", "object": "dispute", "payment_intent": "pi_d", "amount": 500,
                                                      "reason": "fraudulent"})
    assert post(outside, dispute).json()["outcome"] == "disputed"
    s = state(conn, order["order_id"])
    assert s["order"]["payment_status"] == "disputed" and s["payments"][0]["status"] == "disputed"


@pytest.mark.parametrize("tamper", ["signature", "body", "secret", "missing", "stale"])
def test_bad_signatures_are_400_and_change_nothing(
    api: Api, conn: psycopg.Connection[dict[str, Any]], menu: Menu, outside: Outside, tamper: str
) -> None:
    import stripe

    order = place(api, menu)
    event = session_completed(order, "cs_e", "pi_e")
    raw, headers = signed(event, outside.settings.stripe_webhook_secret)
    if tamper == "signature":
        headers["stripe-signature"] = headers["stripe-signature"][:-4] + "0000"
    elif tamper == "body":
        raw = raw.replace(b'"paid"', b'"PAID"')
    elif tamper == "secret":
        raw, headers = signed(event, "whsec_someone_else")
    elif tamper == "missing":
        headers.pop("stripe-signature")
    elif tamper == "stale":
        headers["stripe-signature"] = stripe.WebhookSignature.generate_signature_header(raw.decode(), outside.settings.stripe_webhook_secret,
                                                                                        timestamp=1_700_000_000)
    r = httpx.post(f"{outside.functions.url}/functions/v1/stripe-webhook", content=raw, headers=headers)
    assert r.status_code == 400 and r.json()["error"] in {"bad_signature", "missing_signature"}
    assert conn.execute("select count(*) as n from public.stripe_events").fetchone() == {"n": 0}
    assert state(conn, order["order_id"])["order"]["payment_status"] == "unpaid"


def test_signed_garbage_is_a_400(outside: Outside) -> None:
    import stripe

    for body in ("not json", json.dumps(["a list"]), json.dumps({"id": "evt_1", "type": "x", "data": {"object": "nope"}})):
        header = stripe.WebhookSignature.generate_signature_header(body, outside.settings.stripe_webhook_secret)
        r = httpx.post(f"{outside.functions.url}/functions/v1/stripe-webhook", content=body, headers={"stripe-signature": header})
        assert r.status_code == 400, (body, r.text)


def test_unknown_event_types_are_recorded_and_answered_200(conn: psycopg.Connection[dict[str, Any]], outside: Outside) -> None:
    r = post(outside, stripe_event("customer.created", {"id": "cus_1", "object": "customer"}, "evt_unknown_1"))
    assert r.status_code == 200 and r.json()["outcome"] == "ignored"
    assert conn.execute("select type, outcome from public.stripe_events where id = 'evt_unknown_1'").fetchone() == {
        "type": "customer.created", "outcome": "ignored"}
