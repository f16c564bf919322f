"""Gift cards pay booking deposits end to end (issue 23 item 4, the bookings half), over HTTP against
the fake Stripe with the real SDK: a card spent on a booking in part (Checkout charges the rest), the
booking cancelled and refunded card first (Stripe gets its part back through the worker, the rest goes
back onto the gift card), and a second booking paid wholly by the card with no Stripe call."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import psycopg
import pytest

from tests.bookings_kit import ADULT, CHILD, Activity, build_activity, hold, status
from tests.conftest import Api, Factory
from tests.e2e.test_connect_payouts import webhook
from tests.gift_cards_kit import balance, issue, kinds
from tests.ordering_fixtures import Outside
from tests.ordering_kit import stripe_event
from worker import main as worker_main

Conn = psycopg.Connection[dict[str, Any]]
TOTAL = 2 * ADULT + CHILD


@pytest.fixture
def act(factory: Factory, conn: Conn) -> Activity:
    return build_activity(conn, factory.tenant("Gift Rooms", {"ordering": True}))


def drain(outside: Outside, conn: Conn) -> None:
    """Run the worker until the queue is empty; the holds' delayed booking.expired events are made due
    (the drain waits for delayed events), and before a hold's time they change nothing."""
    conn.execute("update pgmq.q_brigade_events set vt = now() where message ->> 'topic' = 'booking.expired'")
    asyncio.run(worker_main.run(outside.settings, drain=True))


def checkout(outside: Outside, body: dict[str, Any], status_code: int = 200) -> dict[str, Any]:
    r = httpx.post(f"{outside.functions.url}/functions/v1/checkout", json=body, timeout=30)
    assert r.status_code == status_code, r.text
    return r.json()


def test_a_gift_card_pays_part_of_a_booking_deposit_checkout_the_rest_then_refunded_back(
        api: Api, conn: Conn, act: Activity, outside: Outside) -> None:
    b = act.tenant.business_id
    card, code = issue(conn, api, b, 2000)
    booking = hold(api, act)
    body = {"booking_id": booking["booking_id"], "access_token": booking["access_token"], "gift_card_code": code.lower()}
    part = checkout(outside, body)
    due = TOTAL - 2000
    assert part["paid"] is False and part["gift_card_cents"] == 2000 and part["amount_due_cents"] == due and part["session_id"]
    [made] = outside.stripe.sessions()
    form = {k: v[0] for k, v in made.form.items()}
    assert form["line_items[0][price_data][unit_amount]"] == str(due) and "line_items[1][quantity]" not in form
    assert form["metadata[kind]"] == "booking" and form["metadata[gift_card_cents]"] == "2000"
    # a retried checkout with the code neither applies it twice nor makes a second session
    again = checkout(outside, body)
    assert again["reused"] is True and again["session_id"] == part["session_id"] and again["gift_card_cents"] == 2000
    assert len(outside.stripe.sessions()) == 1
    assert balance(conn, card["gift_card_id"]) == {"balance_cents": 0, "status": "active", "ledger": 0}

    done = webhook(outside, stripe_event("checkout.session.completed", dict(outside.stripe.pay(part["session_id"], "pi_gift_booking"))))
    assert done["outcome"] == "paid"
    assert (status(conn, booking)["status"], status(conn, booking)["payment_status"]) == ("confirmed", "paid")
    assert conn.execute("select amount_cents from public.payments where booking_id = %s", (booking["booking_id"],)).fetchone() == \
        {"amount_cents": due}

    # the venue cancels with a full refund: the worker sends Stripe the card part, the gift part goes back onto the card
    out = api.run(act.tenant.claims("manager"), "select public.cancel_booking(%s, 'closed for repairs') as r", (booking["booking_id"],))[0]["r"]
    assert out["refund_cents"] == TOTAL
    drain(outside, conn)
    [sent] = outside.stripe.server.calls("POST", r"/v1/refunds")
    assert sent.form["amount"] == [str(due)] and sent.form["payment_intent"] == ["pi_gift_booking"]
    assert sent.form["metadata[booking_id]"] == [booking["booking_id"]]
    s = status(conn, booking)
    assert (s["status"], s["payment_status"], s["refunded_cents"]) == ("cancelled", "refunded", TOTAL)
    assert kinds(conn, card["gift_card_id"]) == [("issue", 2000), ("redeem", -2000), ("refund_back", 2000)]
    assert balance(conn, card["gift_card_id"]) == {"balance_cents": 2000, "status": "active", "ledger": 2000}
    # Stripe's charge.refunded for the card part adopts no phantom refund
    charge = {"id": "ch_gift_booking", "object": "charge", "payment_intent": "pi_gift_booking", "amount_refunded": due,
              "metadata": {"kind": "booking", "booking_id": booking["booking_id"], "business_id": str(b)}}
    assert webhook(outside, stripe_event("charge.refunded", charge))["outcome"] == "refunds_reconciled"
    assert conn.execute("select count(*) as n from public.refunds where booking_id = %s", (booking["booking_id"],)).fetchone() == {"n": 1}


def test_a_card_that_covers_the_deposit_confirms_the_booking_without_stripe(api: Api, conn: Conn, act: Activity, outside: Outside) -> None:
    b = act.tenant.business_id
    card, code = issue(conn, api, b, 10000)
    booking = hold(api, act)
    full = checkout(outside, {"booking_id": booking["booking_id"], "access_token": booking["access_token"], "gift_card_code": code})
    assert full["paid"] is True and full["session_id"] is None and full["gift_card_cents"] == TOTAL and full["amount_due_cents"] == 0
    assert outside.stripe.sessions() == []
    assert (status(conn, booking)["status"], status(conn, booking)["payment_status"]) == ("confirmed", "paid")
    assert balance(conn, card["gift_card_id"])["balance_cents"] == 10000 - TOTAL
    # a wrong code is a clear 400 that holds nothing
    other = hold(api, act, 1)
    refused = checkout(outside, {"booking_id": other["booking_id"], "access_token": other["access_token"],
                                 "gift_card_code": "NOPE-NOPE-NOPE-NOPE"}, 400)
    assert refused["error"] == "gift_card_unknown_code"
    assert conn.execute("select gift_card_cents from public.bookings where id = %s", (other["booking_id"],)).fetchone() == {"gift_card_cents": 0}
    assert outside.stripe.sessions() == []
