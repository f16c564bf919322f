"""The abandoned-cart automation through the worker and a fake Twilio: carts of signed-in customers
idle past the rule's minutes send once, to the customer who consented, and never to the one who did
not; guest carts and carts that became orders never trigger it."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import psycopg

from brigade.auth import Claims
from tests.campaigns_kit import automation, enable, sends
from tests.conftest import Api, Factory
from tests.ordering_fixtures import Outside
from tests.ordering_kit import Menu
from worker import main as worker_main


def drain(outside: Outside) -> None:
    asyncio.run(worker_main.run(outside.settings, idle=True))


def shopper(api: Api, conn: psycopg.Connection[dict[str, Any]], factory: Factory, menu: Menu, name: str, phone: str,
            consent: bool) -> tuple[Claims, uuid.UUID, str]:
    """A signed-in customer (auth user linked to a customer row) with a croissant in a cart."""
    b = menu.tenant.business_id
    email = f"{name.lower()}-{uuid.uuid4().hex[:6]}@example.test"
    user = factory.user(email)
    cid = conn.execute("insert into public.customers (business_id, user_id, full_name, phone, email) values (%s, %s, %s, %s, %s) returning id",
                       (b, user, name, phone, email)).fetchone()["id"]  # type: ignore[index]
    if consent:
        conn.execute("select app.record_consent(%s, %s, 'SMS_MARKETING', true, 'checkout')", (b, cid))
    claims = Claims.user(user, email=email)
    token = api.run(claims, "select public.start_cart(%s) as r", (menu.venue_id,))[0]["r"]["session_token"]
    api.run(claims, "select public.add_to_cart(%s, %s)", (token, json.dumps({"product_id": str(menu.products["croissant"]), "quantity": 2})))
    return claims, cid, token


def idle_for(conn: psycopg.Connection[dict[str, Any]], business_id: uuid.UUID, minutes: int) -> int:
    """Time passes for every cart of the business (their last use moves back), then the evaluator runs."""
    conn.execute("update public.customer_sessions set last_activity_at = now() - make_interval(mins => %s) where business_id = %s",
                 (minutes, business_id))
    n: int = conn.execute("select app.evaluate_abandoned_carts(%s) as n", (business_id,)).fetchone()["n"]  # type: ignore[index]
    return n


def test_an_abandoned_cart_is_texted_once_with_consent_and_never_without(api: Api, conn: psycopg.Connection[dict[str, Any]], factory: Factory,
                                                                          menu: Menu, outside: Outside) -> None:
    b = menu.tenant.business_id
    enable(conn, b)
    rule = automation(conn, b, name="Cart reminder", trigger="cart.abandoned", cart_idle_minutes=120,
                      body="{{first_name}}, your {{cart_items}} items are waiting at {{venue_name}}.")
    _, kim, _ = shopper(api, conn, factory, menu, "Kim", "+442079460001", consent=True)
    _, lee, _ = shopper(api, conn, factory, menu, "Lee", "+442079460002", consent=False)
    buyer, _, bought = shopper(api, conn, factory, menu, "Bo", "+442079460003", consent=True)
    api.run(buyer, "select public.set_cart_details(%s, %s)", (bought, json.dumps({"customer": {"phone": "+442079460003"}})))
    api.run(buyer, "select public.checkout_cart(%s)", (bought,))
    guest = api.run(Claims.anon(), "select public.start_cart(%s) as r", (menu.venue_id,))[0]["r"]["session_token"]
    api.run(Claims.anon(), "select public.add_to_cart(%s, %s)", (guest, json.dumps({"product_id": str(menu.products["latte"]), "quantity": 1})))

    assert idle_for(conn, b, 119) == 0
    assert idle_for(conn, b, 121) == 2
    assert idle_for(conn, b, 300) == 0, "once per cart"
    assert {s["customer_id"] for s in sends(conn, b, automation_id=rule)} == {kim, lee}

    drain(outside)
    texts = [m for m in outside.twilio.messages() if "pickup code" not in m["Body"]]
    assert [(m["To"], m["Body"].split(" Reply STOP")[0]) for m in texts] == [("+442079460001", "Kim, your 2 items are waiting at Main.")]
    outcome = {s["customer_id"]: (s["status"], s["skip_reason"]) for s in sends(conn, b, automation_id=rule)}
    assert outcome == {kim: ("sent", None), lee: ("skipped", "no_consent")}
    drain(outside)
    assert len([m for m in outside.twilio.messages() if "pickup code" not in m["Body"]]) == 1
