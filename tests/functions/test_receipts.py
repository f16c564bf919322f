"""Receipts (issue 14 item 1): the receipt of a paid order over HTTP as PDF and HTML, read back with
pypdf; who may fetch it; the receipt email with the PDF attached."""

from __future__ import annotations

import asyncio
import base64
import io
import json
from typing import Any

import httpx
import psycopg
import pytest
from pypdf import PdfReader

from brigade import auth
from brigade.auth import Claims
from tests.conftest import Api, Factory
from tests.ordering_fixtures import Outside
from tests.ordering_kit import Menu, order_payload, session_completed, signed, stripe_event
from worker import main as worker_main


def pdf_text(content: bytes) -> str:
    """The PDF's text with every run of whitespace (no-break spaces included) as one space."""
    reader = PdfReader(io.BytesIO(content))
    return " ".join(" ".join(page.extract_text() for page in reader.pages).split())


def webhook(outside: Outside, event: dict[str, Any]) -> httpx.Response:
    raw, headers = signed(event, outside.settings.stripe_webhook_secret)
    return httpx.post(f"{outside.functions.url}/functions/v1/stripe-webhook", content=raw, headers=headers)


def receipt(outside: Outside, claims: Claims | None = None, **params: Any) -> httpx.Response:
    headers = {"authorization": f"Bearer {auth.sign(claims, outside.settings.jwt_secret)}"} if claims else {}
    return httpx.get(f"{outside.functions.url}/functions/v1/receipt", params=params, headers=headers, timeout=30)


@pytest.mark.clock
def test_receipt_of_an_order_with_modifiers_voucher_tip_and_a_partial_refund(
        api: Api, conn: psycopg.Connection[dict[str, Any]], factory: Factory, menu: Menu, outside: Outside) -> None:
    b = menu.tenant.business_id
    conn.execute("update public.businesses set currency = 'EUR', locale = 'fr-FR' where id = %s", (b,))
    me = factory.user("rita@example.test")
    rita = Claims.user(me, email="rita@example.test")
    first = api.run(rita, "select public.place_order(%s) as r", (json.dumps(order_payload(menu)),))[0]["r"]
    assert webhook(outside, session_completed(first, "cs_1", "pi_1")).json()["outcome"] == "paid"
    customer = conn.execute("select customer_id from public.orders where id = %s", (first["order_id"],)).fetchone()["customer_id"]  # type: ignore[index]
    reward = conn.execute("insert into public.rewards (business_id, name, kind, points_cost, credit_cents) values (%s, 'Free delivery', "
                          "'delivery_credit', 5, 500) returning id", (b,)).fetchone()["id"]  # type: ignore[index]
    conn.execute("insert into public.reward_redemptions (business_id, customer_id, reward_id, points_spent, code) "
                 "values (%s, %s, %s, 5, 'FREEDEL1')", (b, customer, reward))

    payload = order_payload(menu, fulfilment="delivery", tip_cents=250, voucher_code="FREEDEL1",
                            delivery_address={"line1": "5 Near St", "latitude": 40.72, "longitude": -74.0})
    order = api.run(rita, "select public.place_order(%s) as r", (json.dumps(payload),))[0]["r"]
    assert (order["subtotal_cents"], order["discount_cents"], order["delivery_fee_cents"], order["tax_cents"]) == (1390, 299, 299, 111)
    assert order["total_cents"] == 1390 - 299 + 111 + 299 + 250

    # not paid yet: no receipt exists, even with the token
    assert receipt(outside, order_id=order["order_id"], token=order["access_token"]).status_code == 404

    # Stripe: the session completes, then the charge says which card paid (brand and last 4)
    assert webhook(outside, session_completed(order, "cs_2", "pi_2")).json()["outcome"] == "paid"
    charge = {"id": "ch_2", "object": "charge", "payment_intent": "pi_2", "amount": order["total_cents"], "status": "succeeded",
              "payment_method_details": {"type": "card", "card": {"brand": "visa", "last4": "4242", "exp_month": 4, "exp_year": 2031}},
              "metadata": {"order_id": order["order_id"], "business_id": str(b)}}
    assert webhook(outside, stripe_event("charge.succeeded", charge)).status_code == 200

    # a manager refunds one croissant
    croissants = conn.execute("select id from public.order_items where order_id = %s and name = 'Croissant'", (order["order_id"],)).fetchone()
    r = httpx.post(f"{outside.functions.url}/functions/v1/refund", timeout=30,
                   headers={"authorization": f"Bearer {auth.sign(menu.tenant.claims('manager'), outside.settings.jwt_secret)}"},
                   json={"order_id": order["order_id"], "lines": {str(croissants["id"]): 1}, "reason": "burnt"})  # type: ignore[index]
    assert r.status_code == 200 and r.json()["status"] == "succeeded", r.text
    refunded = r.json()["amount_cents"]

    got = receipt(outside, order_id=order["order_id"], token=order["access_token"])
    assert got.status_code == 200 and got.headers["content-type"] == "application/pdf", got.text
    text = pdf_text(got.content)
    number = conn.execute("select order_number from public.orders where id = %s", (order["order_id"],)).fetchone()["order_number"]  # type: ignore[index]

    def euros(cents: int) -> str:  # fr-FR: "17,51 €"
        return f"{cents // 100},{cents % 100:02d} €"

    expected = ["Cafe Nova", f"Order #{number}",
                "1 × Latte (Large) 6,90 €", "+ Oat +0,60 €", "+ Shot +0,80 €", "2 × Croissant 7,00 €", "1 refunded",
                "Subtotal 13,90 €", "Discount −2,99 €", "Tax 1,11 €", "Delivery fee 2,99 €", "Tip 2,50 €",
                f"Total {euros(order['total_cents'])}", f"−{euros(refunded)}", "burnt",
                f"Paid after refunds {euros(order['total_cents'] - refunded)}",
                "Vouchers: Free delivery (FREEDEL1): −2,99 €", "Paid with Visa •••• 4242"]
    missing = [e for e in expected if e not in text]
    assert missing == [], text
    assert text.index("Latte") < text.index("Croissant") < text.index("Subtotal") < text.index("Total") < text.index("burnt")

    html = receipt(outside, order_id=order["order_id"], token=order["access_token"], format="html")
    assert html.status_code == 200 and "text/html" in html.headers["content-type"]
    assert "Visa •••• 4242" in html.text and euros(order["total_cents"]) in html.text.replace("\u202f", " ").replace("\xa0", " ")

    # who may fetch it: the token holder, the signed-in customer, staff of the venue; anyone else gets 404
    other = factory.tenant("Elsewhere", {"ordering": True})
    back_room = factory.user()
    factory.member(b, back_room, "staff", [menu.tenant.venues[1]])
    for who, params, status in (
            (None, {"token": order["access_token"]}, 200), (rita, {}, 200), (menu.tenant.claims("staff"), {}, 200),
            (menu.tenant.claims("owner"), {"format": "json"}, 200),
            (None, {}, 404), (None, {"token": first["access_token"]}, 404), (Claims.user(factory.user()), {}, 404),
            (Claims.user(back_room), {}, 404), (other.claims("owner"), {}, 404), (other.claims("owner"), {"token": "nope"}, 400)):
        got = receipt(outside, who, order_id=order["order_id"], **params)
        assert got.status_code == status, (who, params, got.text)
    assert receipt(outside, order_id=order["order_id"], booking_id=order["order_id"]).status_code == 400

    # the receipt email: HTML body and the same receipt attached as a PDF
    asyncio.run(worker_main.run(outside.settings, drain=True))
    [email] = [e for e in outside.resend.emails() if e["subject"].startswith("Your receipt") and f"#{number}" in e["subject"]]
    assert email["to"] == ["ada@example.test"] and "Paid with Visa •••• 4242" in email["html"]
    [attachment] = email["attachments"]
    assert attachment["filename"].endswith(f"-{number}.pdf") and attachment["content_type"] == "application/pdf"
    mailed = pdf_text(base64.b64decode(attachment["content"]))
    assert "2 × Croissant 7,00 €" in mailed and f"Total {euros(order['total_cents'])}" in mailed

    # the monthly financial report of the month the last payment fell in (the business's time zone)
    zone = conn.execute("select time_zone from public.businesses where id = %s", (b,)).fetchone()["time_zone"]  # type: ignore[index]
    month = conn.execute("select to_char(max(created_at) at time zone %s, 'YYYY-MM') as m from public.payments where business_id = %s",
                         (zone, b)).fetchone()["m"]  # type: ignore[index]
    figures = conn.execute(
        "select count(distinct p.order_id) as orders, sum(p.amount_cents) as gross from public.payments p "
        "where p.business_id = %s and to_char(p.created_at at time zone %s, 'YYYY-MM') = %s", (b, zone, month)).fetchone()
    refunds = conn.execute("select coalesce(sum(amount_cents), 0) as r from public.refunds where business_id = %s and status = 'succeeded' "
                           "and to_char(coalesce(applied_at, created_at) at time zone %s, 'YYYY-MM') = %s", (b, zone, month)).fetchone()["r"]  # type: ignore[index]
    owner = {"authorization": f"Bearer {auth.sign(menu.tenant.claims('owner'), outside.settings.jwt_secret)}"}
    report = httpx.get(f"{outside.functions.url}/functions/v1/report.pdf", params={"business_id": str(b), "month": month},
                       headers=owner, timeout=30)
    assert report.status_code == 200 and report.headers["content-type"] == "application/pdf", report.text
    text = pdf_text(report.content)
    for expected_text in (f"Orders paid {figures['orders']}", f"Gross revenue {euros(figures['gross'])}",  # type: ignore[index]
                          f"Refunds −{euros(refunds)}", f"Net revenue {euros(figures['gross'] - refunds)}", "Top products"):  # type: ignore[index]
        assert expected_text in text, (expected_text, text)
    assert text.index("Croissant") > text.index("Top products")
    for who, params, status in ((menu.tenant.claims("staff"), {"month": month}, 404), (other.claims("owner"), {"month": month}, 404),
                                (menu.tenant.claims("owner"), {"month": "2026-13"}, 400)):
        r = httpx.get(f"{outside.functions.url}/functions/v1/report.pdf", params={"business_id": str(b), **params},
                      headers={"authorization": f"Bearer {auth.sign(who, outside.settings.jwt_secret)}"}, timeout=30)
        assert r.status_code == status, (who, params, r.text)
