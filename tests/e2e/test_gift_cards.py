"""Gift cards end to end (issue 23 item 4), over HTTP against the fake Stripe with the real SDK: a card
bought through Checkout and issued by the paid webhook (its code emailed once by the worker), spent
across two orders (one paid wholly by the card with no Stripe call, one in part with Checkout charging
the rest), and refunded back: card first to Stripe, the rest onto the gift card."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import psycopg

from brigade.auth import Claims
from tests.conftest import Api
from tests.e2e.test_connect_payouts import webhook
from tests.functions.test_payments import bearer
from tests.gift_cards_kit import balance, buy, issued_code, kinds, place
from tests.ordering_fixtures import Outside
from tests.ordering_kit import EXPECTED_TOTAL, Menu, stripe_event
from worker import main as worker_main

Conn = psycopg.Connection[dict[str, Any]]


def drain(outside: Outside) -> None:
    asyncio.run(worker_main.run(outside.settings, drain=True))


def checkout(outside: Outside, body: dict[str, Any], status: int = 200) -> dict[str, Any]:
    r = httpx.post(f"{outside.functions.url}/functions/v1/checkout", json=body, timeout=30)
    assert r.status_code == status, r.text
    return r.json()


def paid(outside: Outside, session_id: str, pi: str) -> dict[str, Any]:
    """The customer pays on Stripe's page; Stripe sends checkout.session.completed."""
    return webhook(outside, stripe_event("checkout.session.completed", dict(outside.stripe.pay(session_id, pi))))


def refund(outside: Outside, menu: Menu, order_id: str, amount: int | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"order_id": order_id, **({"amount_cents": amount} if amount else {})}
    r = httpx.post(f"{outside.functions.url}/functions/v1/refund", json=body, timeout=30,
                   headers=bearer(outside, menu.tenant.claims("owner")))
    assert r.status_code == 200, r.text
    return r.json()


def test_a_gift_card_bought_spent_across_two_orders_and_refunded_back(api: Api, conn: Conn, menu: Menu, outside: Outside) -> None:
    b = menu.tenant.business_id
    amount = 2500
    card = buy(api, b, amount)
    session = checkout(outside, {"gift_card_id": card["gift_card_id"], "access_token": card["access_token"]})
    assert session["gift_card_id"] == card["gift_card_id"] and session["amount_due_cents"] == amount
    [made] = outside.stripe.sessions()
    form = {k: v[0] for k, v in made.form.items()}
    assert form["metadata[kind]"] == "gift_card" and form["line_items[0][price_data][unit_amount]"] == str(amount)
    assert form["customer_email"] == "pat@gift.test"
    assert checkout(outside, {"gift_card_id": card["gift_card_id"], "access_token": card["access_token"]})["reused"] is True
    # not paid yet: no code anywhere, nothing to spend
    assert balance(conn, card["gift_card_id"]) == {"balance_cents": 0, "status": "pending", "ledger": 0}

    done = paid(outside, session["session_id"], "pi_gift_card_1")
    assert done["outcome"] == "gift_card_issued"
    event = stripe_event("checkout.session.completed", outside.stripe.stored[session["session_id"]])
    assert webhook(outside, event)["outcome"] == "already_issued"  # a second delivery (new event id) issues nothing
    assert webhook(outside, event)["outcome"] == "duplicate"
    code = issued_code(conn, card["gift_card_id"])
    drain(outside)
    [email] = [e for e in outside.resend.emails() if code in e.get("text", "")]
    assert email["to"] in (["robin@gift.test"], "robin@gift.test") and "gift card" in email["subject"]
    drain(outside)
    assert len([e for e in outside.resend.emails() if code in e.get("text", "")]) == 1, "the code is sent once"
    assert balance(conn, card["gift_card_id"]) == {"balance_cents": amount, "status": "active", "ledger": amount}

    # order one: the card pays it all — paid with no Checkout session, the paid fan-out as for a card
    sessions_before = len(outside.stripe.sessions())
    first = place(api, menu)
    full = checkout(outside, {"order_id": first["order_id"], "access_token": first["access_token"], "gift_card_code": code.lower()})
    assert full["paid"] is True and full["session_id"] is None and full["gift_card_cents"] == EXPECTED_TOTAL
    assert len(outside.stripe.sessions()) == sessions_before
    row = conn.execute("select payment_status, payment_intent_id from public.orders where id = %s", (first["order_id"],)).fetchone()
    assert row == {"payment_status": "paid", "payment_intent_id": None}
    assert conn.execute("select count(*) as n from public.kitchen_tickets where order_id = %s", (first["order_id"],)).fetchone() == {"n": 1}

    # order two: the rest of the card, Checkout for what is left
    rest = amount - EXPECTED_TOTAL
    second = place(api, menu)
    part = checkout(outside, {"order_id": second["order_id"], "access_token": second["access_token"], "gift_card_code": code})
    due = EXPECTED_TOTAL - rest
    assert part["paid"] is False and part["gift_card_cents"] == rest and part["amount_due_cents"] == due and part["session_id"]
    form = {k: v[0] for k, v in outside.stripe.sessions()[-1].form.items()}
    assert form["line_items[0][price_data][unit_amount]"] == str(due) and "line_items[1][quantity]" not in form
    # a retried checkout with the code neither applies it twice nor makes a second session
    again = checkout(outside, {"order_id": second["order_id"], "access_token": second["access_token"], "gift_card_code": code})
    assert again["reused"] is True and again["session_id"] == part["session_id"] and again["gift_card_cents"] == rest
    assert paid(outside, part["session_id"], "pi_order_two")["outcome"] == "paid"
    pay = conn.execute("select amount_cents from public.payments where order_id = %s", (second["order_id"],)).fetchone()
    assert pay == {"amount_cents": due}
    assert balance(conn, card["gift_card_id"]) == {"balance_cents": 0, "status": "active", "ledger": 0}

    # an empty card cannot pay a third order: 400, nothing held, no session
    third = place(api, menu)
    refused = checkout(outside, {"order_id": third["order_id"], "access_token": third["access_token"], "gift_card_code": code}, 400)
    assert refused["error"] == "gift_card_empty"
    assert conn.execute("select gift_card_cents from public.orders where id = %s", (third["order_id"],)).fetchone() == {"gift_card_cents": 0}

    # refunds: order two in full — Stripe gets the card part back, the rest goes back onto the gift card
    refunds_before = len(outside.stripe.server.calls("POST", r"/v1/refunds"))
    whole = refund(outside, menu, second["order_id"])
    assert whole["amount_cents"] == EXPECTED_TOTAL and whole["gift_card_cents"] == rest and whole["status"] == "succeeded"
    [sent] = outside.stripe.server.calls("POST", r"/v1/refunds")[refunds_before:]
    assert sent.form["amount"] == [str(due)] and sent.form["payment_intent"] == ["pi_order_two"]
    assert balance(conn, card["gift_card_id"])["balance_cents"] == rest
    # Stripe's charge.refunded for the card part adopts no phantom refund
    charge = {"id": "ch_two", "object": "charge", "payment_intent": "pi_order_two", "amount_refunded": due,
              "metadata": {"order_id": second["order_id"], "business_id": str(b)}}
    assert webhook(outside, stripe_event("charge.refunded", charge))["outcome"] == "refunds_reconciled"
    assert conn.execute("select count(*) as n from public.refunds where order_id = %s", (second["order_id"],)).fetchone() == {"n": 1}
    assert conn.execute("select payment_status, refunded_cents from public.orders where id = %s", (second["order_id"],)).fetchone() == \
        {"payment_status": "refunded", "refunded_cents": EXPECTED_TOTAL}

    # order one, paid by the card alone: a part refund goes back onto it, no Stripe call
    calls = len(outside.stripe.server.calls("POST", r"/v1/refunds"))
    back = refund(outside, menu, first["order_id"], 600)
    assert back == {**back, "amount_cents": 600, "gift_card_cents": 600, "provider_refund_id": None, "status": "succeeded"}
    assert len(outside.stripe.server.calls("POST", r"/v1/refunds")) == calls
    assert balance(conn, card["gift_card_id"]) == {"balance_cents": rest + 600, "status": "active", "ledger": rest + 600}
    assert kinds(conn, card["gift_card_id"]) == [("issue", amount), ("redeem", -EXPECTED_TOTAL), ("redeem", -rest),
                                                  ("refund_back", rest), ("refund_back", 600)]
    assert conn.execute("select payment_status from public.orders where id = %s", (first["order_id"],)).fetchone() == \
        {"payment_status": "partially_refunded"}
    # and what is left on the card now pays again
    assert api.run(Claims.anon(), "select public.check_gift_card_balance(%s, %s) as r", (b, code))[0]["r"]["balance_cents"] == rest + 600
    assert json.loads(json.dumps(full))  # the answers are plain JSON


def test_an_expired_session_gives_the_hold_back(api: Api, conn: Conn, menu: Menu, outside: Outside) -> None:
    b = menu.tenant.business_id
    card = buy(api, b, 1000)
    session = checkout(outside, {"gift_card_id": card["gift_card_id"], "access_token": card["access_token"]})
    paid(outside, session["session_id"], "pi_gift_card_2")
    code = issued_code(conn, card["gift_card_id"])
    order = place(api, menu)
    part = checkout(outside, {"order_id": order["order_id"], "access_token": order["access_token"], "gift_card_code": code})
    assert part["gift_card_cents"] == 1000 and balance(conn, card["gift_card_id"])["balance_cents"] == 0
    expired = dict(outside.stripe.stored[part["session_id"]], status="expired")
    assert webhook(outside, stripe_event("checkout.session.expired", expired))["outcome"] == "session_expired"
    assert balance(conn, card["gift_card_id"]) == {"balance_cents": 1000, "status": "active", "ledger": 1000}
    # the next checkout can use the card again, in a new session for the new amount
    again = checkout(outside, {"order_id": order["order_id"], "access_token": order["access_token"], "gift_card_code": code})
    assert again["gift_card_cents"] == 1000 and again["session_id"] != part["session_id"] and again["reused"] is False
