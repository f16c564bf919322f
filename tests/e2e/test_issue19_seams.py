"""Issue 19's seams end to end (functions, fakes and a drained worker): each test is named after its item."""

from __future__ import annotations

import json
from typing import Any

import psycopg

from tests.conftest import Api
from tests.e2e.test_order_flow import drain, place
from tests.ordering_fixtures import Outside
from tests.ordering_kit import Menu, order_payload, session_completed


def paid(conn: psycopg.Connection[dict[str, Any]], api: Api, menu: Menu, n: int, **overrides: Any) -> dict[str, Any]:
    order = place(api, order_payload(menu, customer={"name": f"Guest {n}", "phone": f"+1 212 555 01{n:02d}",
                                                     "email": f"g{n}@example.test"}, **overrides))
    conn.execute("select app.apply_stripe_event(%s)", (json.dumps(session_completed(order, f"cs_19_{n}", f"pi_19_{n}")),))
    return order


def test_item_3_only_pickup_orders_get_the_ready_call(api: Api, conn: psycopg.Connection[dict[str, Any]], menu: Menu,
                                                      outside: Outside) -> None:
    pickup = paid(conn, api, menu, 1)
    delivery = paid(conn, api, menu, 2, fulfilment="delivery",
                    delivery_address={"line1": "200 Broadway", "city": "New York", "postal_code": "10007", "country": "US",
                                      "latitude": 40.7115, "longitude": -74.0090})
    dine_in = paid(conn, api, menu, 3, fulfilment="dine_in", table_ref="T7")
    drain(outside)
    staff = menu.tenant.claims("staff")
    for order in (pickup, delivery, dine_in):
        for status in ("accepted", "ready"):
            api.run(staff, "select public.set_order_status(%s, %s)", (order["order_id"], status))
    drain(outside)
    assert [c["To"] for c in outside.twilio.calls()] == ["+12125550101"], "one call, to the pickup guest"
    ready = conn.execute("select order_id::text, channel from public.notification_log where template = 'order_ready'").fetchall()
    assert ready == [{"order_id": pickup["order_id"], "channel": "voice"}]
    texts = [m["Body"] for m in outside.twilio.messages() if m["To"] in ("+12125550102", "+12125550103")]
    assert not any("pickup code" in t for t in texts), texts


def test_item_5_a_paid_order_cancelled_by_staff_is_refunded_automatically(api: Api, conn: psycopg.Connection[dict[str, Any]],
                                                                        menu: Menu, outside: Outside) -> None:
    butter = "select quantity from public.stock_items where sku = 'butter'"
    before = float(conn.execute(butter).fetchone()["quantity"])  # type: ignore[index]
    order = paid(conn, api, menu, 5)
    drain(outside)
    customer = conn.execute("select customer_id from public.orders where id = %s", (order["order_id"],)).fetchone()["customer_id"]  # type: ignore[index]
    points = "select balance from public.loyalty_accounts where customer_id = %s"
    assert conn.execute(points, (customer,)).fetchone()["balance"] > 0  # type: ignore[index]
    assert float(conn.execute(butter).fetchone()["quantity"]) < before  # type: ignore[index]
    api.run(menu.tenant.claims("staff"), "select public.set_order_status(%s, 'cancelled', 'kitchen fire')", (order["order_id"],))
    drain(outside)
    drain(outside)  # a second pass (and any redelivery) sends nothing more
    [call] = outside.stripe.server.calls("POST", "/v1/refunds")
    assert call.headers["idempotency-key"] == f"refund:{order['order_id']}:auto"
    assert call.form["amount"] == [str(order["total_cents"])] and call.form["payment_intent"] == ["pi_19_5"]
    after = conn.execute("select payment_status, refunded_cents from public.orders where id = %s", (order["order_id"],)).fetchone()
    assert after == {"payment_status": "refunded", "refunded_cents": order["total_cents"]}
    assert conn.execute(points, (customer,)).fetchone()["balance"] == 0  # type: ignore[index]
    assert float(conn.execute(butter).fetchone()["quantity"]) == before, "the croissants' butter is back"
    assert conn.execute("select total_orders, total_spent_cents from public.customer_venue_stats where customer_id = %s",
                        (customer,)).fetchone() == {"total_orders": 0, "total_spent_cents": 0}


def test_item_5_a_payment_after_cancellation_is_refunded_automatically(api: Api, conn: psycopg.Connection[dict[str, Any]],
                                                                     menu: Menu, outside: Outside) -> None:
    order = place(api, order_payload(menu))
    api.run(menu.tenant.claims("staff"), "select public.set_order_status(%s, 'cancelled', 'guest left')", (order["order_id"],))
    drain(outside)
    assert outside.stripe.server.calls("POST", "/v1/refunds") == [], "nothing was paid yet"
    conn.execute("select app.apply_stripe_event(%s)", (json.dumps(session_completed(order, "cs_late19", "pi_late19")),))
    drain(outside)
    [call] = outside.stripe.server.calls("POST", "/v1/refunds")
    assert call.form["amount"] == [str(order["total_cents"])] and call.form["payment_intent"] == ["pi_late19"]
    assert conn.execute("select payment_status from public.orders where id = %s", (order["order_id"],)).fetchone() == {"payment_status": "refunded"}
    assert conn.execute("select restock from public.refunds where order_id = %s", (order["order_id"],)).fetchone() == {"restock": False}


def test_item_7_review_requests_carry_the_review_url(api: Api, conn: psycopg.Connection[dict[str, Any]], menu: Menu,
                                                     outside: Outside) -> None:
    import asyncio

    from tests.campaigns_kit import automation, enable, make_due, sends
    from worker import main as worker_main

    b = menu.tenant.business_id
    enable(conn, b)
    rule = automation(conn, b, trigger="order.review_request", body="How was order #{{order_number}}? Tell us: {{review_url}}")
    plain = automation(conn, b, trigger="order.review_request", name="No link in the text", body="How was it?")
    order = paid(conn, api, menu, 7, fulfilment="dine_in", table_ref="T2")
    customer = conn.execute("select customer_id from public.orders where id = %s", (order["order_id"],)).fetchone()["customer_id"]  # type: ignore[index]
    conn.execute("select app.record_consent(%s, %s, 'REVIEW_REQUEST', true, 'checkout')", (b, customer))
    for status in ("accepted", "ready", "completed"):
        api.run(menu.tenant.claims("staff"), "select public.set_order_status(%s, %s)", (order["order_id"], status))
    make_due(conn, [s["id"] for s in sends(conn, b, automation_id=rule) + sends(conn, b, automation_id=plain)])
    asyncio.run(worker_main.run(outside.settings, idle=True))
    url = outside.settings.review_url.format(order_id=order["order_id"], access_token=order["access_token"])
    bodies = sorted(m["Body"] for m in outside.twilio.messages() if m["To"] == "+12125550107" and "How was" in m["Body"])
    assert len(bodies) == 2, bodies
    assert bodies[0].startswith(f"How was it? Review: {url}")
    assert bodies[1].startswith(f"How was order #{order['order_number']}? Tell us: {url}")
    assert order["access_token"] in url


def test_item_8_stop_and_start_apply_per_sender_and_businesses_text_from_their_own_number(
        api: Api, conn: psycopg.Connection[dict[str, Any]], menu: Menu, factory: Any, outside: Outside) -> None:
    import httpx
    from twilio.request_validator import RequestValidator

    from tests.campaigns_kit import enable
    from tests.ordering_kit import build_menu

    own_number = "+15557770001"
    own = menu  # this business has its own number
    other = build_menu(conn, factory.tenant("Platform Texter", {"ordering": True}))  # this one texts from the platform number
    conn.execute("insert into public.sms_senders (business_id, phone_number) values (%s, %s)", (own.tenant.business_id, own_number))
    guest = {"name": "Sam Both", "phone": "+1 212 555 0188", "email": "sam@example.test"}
    customers = {}
    for m in (own, other):
        enable(conn, m.tenant.business_id)
        order = place(api, order_payload(m, customer=guest))
        conn.execute("select app.apply_stripe_event(%s)", (json.dumps(session_completed(order, f"cs_{order['order_id']}", f"pi_{order['order_id']}")),))
        cid = conn.execute("select customer_id from public.orders where id = %s", (order["order_id"],)).fetchone()["customer_id"]  # type: ignore[index]
        conn.execute("select app.record_consent(%s, %s, 'SMS_MARKETING', true, 'checkout')", (m.tenant.business_id, cid))
        customers[m.tenant.business_id] = cid
    drain(outside)
    froms = {m["Body"].split(":")[0]: m["From"] for m in outside.twilio.messages()}
    assert froms == {"Cafe Nova": own_number, "Platform Texter": outside.settings.twilio_from_number}, "each business texts as itself"

    def keyword(word: str, to: str) -> None:
        url = f"{outside.functions.url}/functions/v1/twilio-sms"
        form = {"From": "+12125550188", "To": to, "Body": word, "MessageSid": "SM" + "b" * 32}
        sig = RequestValidator(outside.settings.twilio_auth_token).compute_signature(url, form)
        assert httpx.post(url, data=form, headers={"X-Twilio-Signature": sig}).status_code == 200

    def consent() -> dict[Any, bool]:
        return {b: conn.execute("select app.has_consent(%s, %s, 'SMS_MARKETING') as ok", (b, c)).fetchone()["ok"]  # type: ignore[index]
                for b, c in customers.items()}

    keyword("STOP", own_number)
    assert consent() == {own.tenant.business_id: False, other.tenant.business_id: True}
    keyword("STOP", outside.settings.twilio_from_number)
    assert consent() == {own.tenant.business_id: False, other.tenant.business_id: False}
    keyword("START", own_number)
    assert consent() == {own.tenant.business_id: True, other.tenant.business_id: False}
    suppressed = conn.execute("select business_id from public.marketing_suppressions where address = '+12125550188'").fetchall()
    assert [r["business_id"] for r in suppressed] == [other.tenant.business_id]
