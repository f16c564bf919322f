"""The order flow end to end, as PostgREST, Stripe and Twilio would drive it: an anonymous order,
checkout through the real stripe SDK against a fake Stripe, the signed webhook and its fan-out, the
worker texting the pickup code through a fake Twilio, staff moving the order along, the call when it
is ready, and the code completing it."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import httpx
import psycopg

from brigade.auth import Claims
from tests.conftest import Api
from tests.ordering_fixtures import Outside
from tests.ordering_kit import EXPECTED_SUBTOTAL, EXPECTED_TAX, EXPECTED_TOTAL, Menu, order_payload, session_completed, signed
from worker import main as worker_main


def place(api: Api, payload: dict[str, Any], claims: Claims | None = None) -> dict[str, Any]:
    return api.run(claims or Claims.anon(), "select public.place_order(%s) as r", (json.dumps(payload),))[0]["r"]


def drain(outside: Outside) -> None:
    asyncio.run(worker_main.run(outside.settings, drain=True))


def test_anonymous_order_to_pickup(api: Api, conn: psycopg.Connection[dict[str, Any]], menu: Menu, outside: Outside) -> None:
    b = menu.tenant.business_id
    # a returning customer's allergens reach the kitchen ticket
    conn.execute("insert into public.customers (business_id, full_name, phone, allergens) values (%s, 'Ada', '+12125550199', '{sesame}')", (b,))

    order = place(api, order_payload(menu))
    assert order["subtotal_cents"] == EXPECTED_SUBTOTAL and order["tax_cents"] == EXPECTED_TAX
    assert order["total_cents"] == EXPECTED_TOTAL and order["payment_status"] == "unpaid"
    assert [line["unit_price_cents"] for line in order["lines"]] == [690, 350]
    assert "cost" not in json.dumps(order), "the placer never sees costs"

    # checkout through the stripe SDK; a second call returns the same session
    url = f"{outside.functions.url}/functions/v1/checkout"
    body = {"order_id": order["order_id"], "access_token": order["access_token"]}
    first = httpx.post(url, json=body)
    assert first.status_code == 200, first.text
    again = httpx.post(url, json=body).json()
    assert again["session_id"] == first.json()["session_id"] and again["reused"] is True
    [created] = outside.stripe.sessions()
    form = {k: v[0] for k, v in created.form.items()}
    assert created.headers["idempotency-key"] == f"checkout:{order['order_id']}:1"
    assert form["metadata[order_id]"] == order["order_id"] and form["metadata[business_id]"] == str(b)
    assert form["line_items[0][price_data][unit_amount]"] == "690" and form["line_items[1][quantity]"] == "2"
    charged = sum(int(form[f"line_items[{i}][price_data][unit_amount]"]) * int(form[f"line_items[{i}][quantity]"])
                  for i in range(4))
    assert charged == EXPECTED_TOTAL, "lines + tax + tip add up to the order total"

    # Stripe calls back, signed
    raw, headers = signed(session_completed(order, first.json()["session_id"]), outside.settings.stripe_webhook_secret)
    r = httpx.post(f"{outside.functions.url}/functions/v1/stripe-webhook", content=raw, headers=headers)
    assert r.status_code == 200 and r.json()["outcome"] == "paid", r.text

    # the fan-out, in that one transaction
    o = conn.execute("select * from public.orders where id = %s", (order["order_id"],)).fetchone()
    assert o and o["payment_status"] == "paid" and o["pickup_code_hash"] and o["customer_id"]
    assert conn.execute("select count(*) as n from public.customers where business_id = %s", (b,)).fetchone() == {"n": 1}, \
        "the guest was matched to the existing customer by phone"
    stats = conn.execute("select total_orders, total_spent_cents from public.customer_venue_stats where customer_id = %s",
                         (o["customer_id"],)).fetchone()
    assert stats == {"total_orders": 1, "total_spent_cents": EXPECTED_TOTAL}
    ticket = conn.execute("select * from public.kitchen_tickets where order_id = %s", (o["id"],)).fetchone()
    assert ticket and ticket["allergens"] == ["sesame"] and ticket["status"] == "new"
    assert [i["name"] for i in ticket["items"]] == ["Latte", "Croissant"] and ticket["items"][0]["modifiers"] == ["Oat", "Shot"]
    stock = {r["sku"]: float(r["quantity"]) for r in conn.execute("select sku, quantity from public.stock_items where business_id = %s", (b,))}
    assert stock == {"milk": 10 - 0.35, "oat": 1 - 0.25, "beans": 5 - 0.027, "butter": 2 - 0.04}
    points = conn.execute("select points, reason from public.loyalty_transactions where order_id = %s", (o["id"],)).fetchall()
    assert points == [{"points": EXPECTED_TOTAL // 100, "reason": "order"}]
    assert conn.execute("select count(*) as n from public.payments where order_id = %s", (o["id"],)).fetchone() == {"n": 1}
    pending = conn.execute("select channel, template, status from public.notification_log where order_id = %s order by channel", (o["id"],)).fetchall()
    assert pending == [{"channel": "email", "template": "receipt", "status": "pending"},
                       {"channel": "sms", "template": "pickup_code", "status": "pending"}]

    # the worker sends the code (fake Twilio) and the receipt (fake Resend)
    drain(outside)
    [sms] = outside.twilio.messages()
    assert sms["To"] == "+12125550199" and sms["From"] == outside.settings.twilio_from_number
    code = re.search(r"pickup code is (\d{6})", sms["Body"])
    assert code, sms["Body"]
    [email] = outside.resend.emails()
    assert email["to"] == ["ada@example.test"] and code.group(1) in email["text"]
    sent = conn.execute("select channel, status, provider, cost_cents from public.notification_log where order_id = %s order by channel",
                        (o["id"],)).fetchall()
    assert [(s["channel"], s["status"], s["provider"]) for s in sent] == [("email", "sent", "resend"), ("sms", "sent", "twilio")]
    assert float(sent[1]["cost_cents"]) == outside.settings.sms_cost_cents
    assert code.group(1) not in json.dumps(conn.execute("select * from public.orders where id = %s", (o["id"],)).fetchone(), default=str)

    # staff move it along; ready places the call
    staff = menu.tenant.claims("staff")
    for status in ("accepted", "preparing", "ready"):
        assert api.run(staff, "select public.set_order_status(%s, %s) as r", (o["id"], status))[0]["r"]["status"] == status
    drain(outside)
    [call] = outside.twilio.calls()
    assert call["To"] == "+12125550199" and f"order #{o['order_number']}" in call["Twiml"]
    voice = conn.execute("select status, provider from public.notification_log where order_id = %s and channel = 'voice'", (o["id"],)).fetchone()
    assert voice == {"status": "sent", "provider": "twilio"}

    # the customer shows the code
    assert api.run(staff, "select public.verify_pickup_code(%s, %s) as r", (o["id"], "000000" if code.group(1) != "000000" else "111111"))[0]["r"]["verified"] is False
    result = api.run(staff, "select public.verify_pickup_code(%s, %s) as r", (o["id"], code.group(1)))[0]["r"]
    assert result["verified"] is True
    final = conn.execute("select status, completed_at from public.orders where id = %s", (o["id"],)).fetchone()
    assert final and final["status"] == "completed" and final["completed_at"]
    history = [h["to_status"] for h in conn.execute("select to_status from public.order_status_history where order_id = %s order by id", (o["id"],))]
    assert history == ["placed", "accepted", "preparing", "ready", "completed"]
    assert conn.execute("select status from public.kitchen_tickets where order_id = %s", (o["id"],)).fetchone() == {"status": "done"}

    profit = api.run(menu.tenant.claims("owner"), "select * from public.order_profit where order_id = %s", (o["id"],))[0]
    assert profit["revenue_cents"] == EXPECTED_TOTAL - EXPECTED_TAX - 100
    assert profit["cost_of_goods_cents"] == (120 + 30 + 20 + 15) + 2 * 90
    assert profit["stripe_fee_cents"] == round(EXPECTED_TOTAL * 0.029) + 30
    assert float(profit["messaging_cost_cents"]) == outside.settings.sms_cost_cents + outside.settings.voice_cost_cents_per_minute
    summary = api.run(menu.tenant.claims("owner"), "select * from public.venue_sales_summary where venue_id = %s", (menu.venue_id,))[0]
    assert summary["orders_today"] == 1 and summary["revenue_today_cents"] == EXPECTED_TOTAL


def test_a_failed_ready_call_falls_back_to_sms(api: Api, conn: psycopg.Connection[dict[str, Any]], menu: Menu, outside: Outside) -> None:
    order = place(api, order_payload(menu))
    raw, headers = signed(session_completed(order, "cs_f", "pi_f"), outside.settings.stripe_webhook_secret)
    assert httpx.post(f"{outside.functions.url}/functions/v1/stripe-webhook", content=raw, headers=headers).json()["outcome"] == "paid"
    drain(outside)
    outside.twilio.fail_calls = True
    for status in ("accepted", "ready"):
        api.run(menu.tenant.claims("staff"), "select public.set_order_status(%s, %s)", (order["order_id"], status))
    drain(outside)
    rows = conn.execute("select channel, template, status, error is not null as has_error from public.notification_log "
                        "where event_key = %s order by channel", (f"order.ready:{order['order_id']}",)).fetchall()
    assert rows == [{"channel": "sms", "template": "order_ready", "status": "sent", "has_error": False},
                    {"channel": "voice", "template": "order_ready", "status": "failed", "has_error": True}]
    texts = [m["Body"] for m in outside.twilio.messages()]
    assert any("is ready at" in t for t in texts), texts


def test_no_points_while_loyalty_is_off(api: Api, conn: psycopg.Connection[dict[str, Any]], menu: Menu, outside: Outside) -> None:
    conn.execute("update public.businesses set modules_json = modules_json || '{\"loyalty\": false}' where id = %s", (menu.tenant.business_id,))
    order = place(api, order_payload(menu))
    raw, headers = signed(session_completed(order, "cs_g", "pi_g"), outside.settings.stripe_webhook_secret)
    httpx.post(f"{outside.functions.url}/functions/v1/stripe-webhook", content=raw, headers=headers)
    assert conn.execute("select payment_status from public.orders where id = %s", (order["order_id"],)).fetchone() == {"payment_status": "paid"}
    assert conn.execute("select count(*) as n from public.loyalty_transactions").fetchone() == {"n": 0}


def test_stock_critical_alerts_reach_managers_not_customers(api: Api, conn: psycopg.Connection[dict[str, Any]], menu: Menu,
                                                            outside: Outside) -> None:
    b = menu.tenant.business_id
    conn.execute("update auth.users set email = 'owner@cafe.test' where id = %s", (menu.tenant.users["owner"],))
    conn.execute("update auth.users set email = 'manager@cafe.test' where id = %s", (menu.tenant.users["manager"],))
    oat_latte = [{"product_id": str(menu.products["latte"]), "modifier_ids": [str(menu.modifiers["oat"])], "quantity": 2}]
    order = place(api, order_payload(menu, items=oat_latte))  # 0.5 L of oat milk: 1 -> 0.5, its critical level
    raw, headers = signed(session_completed(order, "cs_s", "pi_s"), outside.settings.stripe_webhook_secret)
    httpx.post(f"{outside.functions.url}/functions/v1/stripe-webhook", content=raw, headers=headers)
    drain(outside)
    alerts = [e for e in outside.resend.emails() if e["subject"].startswith("Low stock")]
    assert sorted(e["to"][0] for e in alerts) == ["manager@cafe.test", "owner@cafe.test"]
    assert "Oat milk" in alerts[0]["subject"]
    rows = conn.execute("select recipient, status from public.notification_log where business_id = %s and template = 'stock_critical' "
                        "order by recipient", (b,)).fetchall()
    assert rows == [{"recipient": "manager@cafe.test", "status": "sent"}, {"recipient": "owner@cafe.test", "status": "sent"}]
