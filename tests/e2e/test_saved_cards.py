"""Saved cards at checkout (issue 23 item 3), over HTTP against the fake Stripe with the real SDK: a
signed-in customer checks out as their Stripe Customer (created once), Checkout is asked to offer
saving the card; payment_method.attached saves its metadata for the customer, who reads it under RLS;
the returning customer's next checkout (an order, then a booking) reuses the same Customer, so Checkout
offers the saved card;
payment_method.detached removes it and a late attached event does not bring it back; guests are
unchanged."""

from __future__ import annotations

import json
from typing import Any

import httpx
import psycopg

from brigade.auth import Claims
from tests.bookings_kit import build_activity, hold
from tests.conftest import Api, Factory
from tests.e2e.test_connect_payouts import webhook
from tests.functions.test_payments import bearer
from tests.ordering_fixtures import Outside
from tests.ordering_kit import Menu, order_payload, stripe_event

Conn = psycopg.Connection[dict[str, Any]]


def checkout(outside: Outside, order: dict[str, Any], claims: Claims | None) -> dict[str, str]:
    """POST /checkout for the order; the form the SDK sent Stripe for the session."""
    headers = bearer(outside, claims) if claims else {}
    r = httpx.post(f"{outside.functions.url}/functions/v1/checkout", headers=headers, timeout=30,
                   json={"order_id": order["order_id"], "access_token": order["access_token"]})
    assert r.status_code == 200, r.text
    created = [c for c in outside.stripe.sessions() if c.form.get("client_reference_id") == [order["order_id"]]]
    return {k: v[0] for k, v in created[-1].form.items()}


def card_event(kind: str, pm: str, customer: str | None, previous: str | None = None) -> dict[str, Any]:
    event = stripe_event(kind, {"id": pm, "object": "payment_method", "type": "card", "customer": customer,
                                "card": {"brand": "visa", "last4": "4242", "exp_month": 12, "exp_year": 2031}})
    if previous:
        event["data"]["previous_attributes"] = {"customer": previous}
    return event


def test_a_returning_customer_is_offered_their_saved_card(api: Api, conn: Conn, menu: Menu, factory: Factory, outside: Outside) -> None:
    b = menu.tenant.business_id
    ada = Claims.user(factory.user("ada@cards.test"), email="ada@cards.test")
    first = api.run(ada, "select public.place_order(%s) as r", (json.dumps(order_payload(menu)),))[0]["r"]
    form = checkout(outside, first, ada)
    [created] = outside.stripe.customers()
    cus = conn.execute("select stripe_customer_id, id from public.customers where business_id = %s and user_id = %s",
                       (b, ada.user_id)).fetchone()
    assert cus is not None and cus["stripe_customer_id"] and form["customer"] == cus["stripe_customer_id"]
    assert created.headers["idempotency-key"] == f"customer:{b}:{cus['id']}" and created.form["email"] == ["ada@example.test"]
    assert form["saved_payment_method_options[payment_method_save]"] == "enabled" and "customer_email" not in form

    # Checkout saved the card (the customer agreed): Stripe attaches it to the Customer and tells us
    webhook(outside, card_event("payment_method.attached", "pm_ada_visa", cus["stripe_customer_id"]))
    mine = api.run(ada, "select brand, last4, exp_month, exp_year from public.customer_payment_methods")
    assert mine == [{"brand": "visa", "last4": "4242", "exp_month": 12, "exp_year": 2031}]
    assert api.run(factory.tenant("Other Diner").claims("owner"), "select id from public.customer_payment_methods") == []

    # the returning customer: the same Customer, no second one created, so Checkout offers the saved card
    second = api.run(ada, "select public.place_order(%s) as r", (json.dumps(order_payload(menu)),))[0]["r"]
    again = checkout(outside, second, ada)
    assert again["customer"] == cus["stripe_customer_id"] and len(outside.stripe.customers()) == 1
    offered = conn.execute("select app.checkout_customer(%s, %s) as c", (second["order_id"], ada.user_id)).fetchone()["c"]  # type: ignore[index]
    assert [(c["brand"], c["last4"]) for c in offered["saved_cards"]] == [("visa", "4242")]

    # removed at Stripe: gone here; a late, reordered attached event does not bring it back
    webhook(outside, card_event("payment_method.detached", "pm_ada_visa", None, previous=cus["stripe_customer_id"]))
    webhook(outside, card_event("payment_method.attached", "pm_ada_visa", cus["stripe_customer_id"]))
    assert api.run(ada, "select id from public.customer_payment_methods") == []
    # an attached card of a Customer nobody here knows changes nothing
    webhook(outside, card_event("payment_method.attached", "pm_stranger", "cus_nobody"))
    assert conn.execute("select count(*) as n from public.customer_payment_methods").fetchone() == {"n": 0}

    # a booking of the same signed-in customer checks out as the same Customer too
    act = build_activity(conn, menu.tenant)
    booking = hold(api, act, claims=ada)
    r = httpx.post(f"{outside.functions.url}/functions/v1/checkout", headers=bearer(outside, ada), timeout=30,
                   json={"booking_id": booking["booking_id"], "access_token": booking["access_token"]})
    assert r.status_code == 200, r.text
    [booked] = [c for c in outside.stripe.sessions() if c.form.get("client_reference_id") == [booking["booking_id"]]]
    assert booked.form["customer"] == [cus["stripe_customer_id"]] and len(outside.stripe.customers()) == 1

    # erasing the customer drops the Stripe link and any saved card
    webhook(outside, card_event("payment_method.attached", "pm_ada_mc", cus["stripe_customer_id"]))
    assert len(api.run(ada, "select id from public.customer_payment_methods")) == 1
    conn.execute("select app.anonymise_customer(%s, %s)", (b, cus["id"]))
    assert conn.execute("select stripe_customer_id from public.customers where id = %s", (cus["id"],)).fetchone() == {"stripe_customer_id": None}
    assert conn.execute("select count(*) as n from public.customer_payment_methods").fetchone() == {"n": 0}

    # a guest's checkout has no Customer (Stripe gets the email only); someone else's order is not theirs to save to
    guest = api.run(Claims.anon(), "select public.place_order(%s) as r", (json.dumps(order_payload(menu)),))[0]["r"]
    guest_form = checkout(outside, guest, None)
    assert "customer" not in guest_form and guest_form["customer_email"] == "ada@example.test"
    assert conn.execute("select app.checkout_customer(%s, %s) as c", (guest["order_id"], ada.user_id)).fetchone() == {"c": None}
