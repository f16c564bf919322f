"""Web Push as the third channel, through the worker and pywebpush against a fake push service that
verifies real VAPID signatures: a signed-in customer's devices get their order's status (a device
whose subscription is gone answers 410 and is forgotten, the result is in notification_log), and a
push automation reaches the subscribed customer by push and falls back to SMS for the one without a
subscription."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from typing import Any
from zoneinfo import ZoneInfo

from urllib.parse import urlparse

import httpx
import psycopg
import pytest

from brigade.auth import Claims
from tests.campaigns_kit import automation, customer, enable, sends
from tests.conftest import Api, Factory, sqlstate
from tests.dispatch_kit import DROPOFF, add_driver, delivery_of, make_fleet
from tests.fakes.http import FakeServer
from tests.fakes.push import FakePushService, vapid_keys
from tests.ordering_fixtures import Outside
from tests.ordering_kit import Menu, order_payload, session_completed
from worker import main as worker_main

Conn = psycopg.Connection[dict[str, Any]]


@pytest.fixture
def push(outside: Outside) -> Iterator[tuple[Outside, FakePushService]]:
    private, public = vapid_keys()
    with FakeServer() as server:
        outside.settings = outside.settings.model_copy(update={
            "push_provider": "webpush", "vapid_private_key": private, "vapid_public_key": public, "vapid_subject": "mailto:ops@brigade.test"})
        yield outside, FakePushService(server, public)


def drain(outside: Outside) -> None:
    asyncio.run(worker_main.run(outside.settings, idle=True))


def signed_in_customer(conn: Conn, factory: Factory, business_id: uuid.UUID, customer_id: uuid.UUID | None = None) -> Claims:
    """A user linked to a customer record of the business (a new record unless one is given)."""
    email = f"p{uuid.uuid4().hex[:8]}@example.test"
    user = factory.user(email)
    if customer_id is None:
        conn.execute("insert into public.customers (business_id, user_id, full_name, email) values (%s, %s, 'Pat Push', %s)",
                     (business_id, user, email))
    else:
        conn.execute("update public.customers set user_id = %s where business_id = %s and id = %s", (user, business_id, customer_id))
    return Claims.user(user, email=email)


def test_order_status_reaches_the_customers_devices_and_a_gone_one_is_forgotten(
        api: Api, conn: Conn, factory: Factory, menu: Menu, push: tuple[Outside, FakePushService]) -> None:
    outside, service = push
    b = menu.tenant.business_id
    pat = signed_in_customer(conn, factory, b)
    phone, old_laptop = service.browser(), service.browser(gone=True)
    save = "select public.save_push_subscription(%s, %s, 'customer', %s) as r"
    assert sqlstate(lambda: api.run(Claims.anon(), save, (b, json.dumps(phone.subscription()), True))) == "42501"
    forged = {**phone.subscription(), "endpoint": "ftp://example.test/x"}
    assert sqlstate(lambda: api.run(pat, save, (b, json.dumps(forged), True))) == "22023"
    assert sqlstate(lambda: api.run(pat, "select public.save_push_subscription(%s, %s, 'staff') as r", (b, json.dumps(phone.subscription())))) == "42501"
    saved = api.run(pat, save, (b, json.dumps(phone.subscription()), True))[0]["r"]
    assert saved["marketing_consent"] == "GRANTED"
    api.run(pat, save, (b, json.dumps(old_laptop.subscription()), False))
    assert conn.execute("select channel, action, source from public.customer_consent_log where business_id = %s", (b,)).fetchall() == [
        {"channel": "PUSH_MARKETING", "action": "GRANTED", "source": "customer"}]
    assert len(api.run(pat, "select endpoint from public.push_subscriptions")) == 2
    assert api.run(Claims.user(factory.user()), "select endpoint from public.push_subscriptions") == [], "only one's own devices"

    order = api.run(pat, "select public.place_order(%s) as r", (json.dumps(order_payload(menu)),))[0]["r"]
    conn.execute("select app.apply_stripe_event(%s)", (json.dumps(session_completed(order, "cs_push_1", "pi_push_1")),))
    api.run(menu.tenant.claims("staff"), "select public.set_order_status(%s, 'accepted')", (order["order_id"],))
    drain(outside)

    assert service.refused == [], "every request carried a valid VAPID signature"
    [message] = service.delivered(phone)
    assert message["title"] == f"Cafe Nova: order #{order['order_number']}"
    assert message["body"] == f"Order #{order['order_number']} is accepted" and order["order_id"] in message["url"]
    assert [r["endpoint"] for r in conn.execute("select endpoint from public.push_subscriptions where business_id = %s", (b,))] == [phone.endpoint]
    [row] = conn.execute("select status, provider, provider_message_id, recipient from public.notification_log "
                         "where business_id = %s and channel = 'push'", (b,)).fetchall()
    assert row == {"status": "sent", "provider": "webpush", "provider_message_id": "1/2 devices", "recipient": f"user:{pat.sub}"}

    api.run(menu.tenant.claims("staff"), "select public.set_order_status(%s, 'ready')", (order["order_id"],))
    drain(outside)
    drain(outside)
    assert [m["body"] for m in service.delivered(phone)] == [f"Order #{order['order_number']} is accepted",
                                                            f"Order #{order['order_number']} is ready at Main"]


def test_a_push_automation_falls_back_to_sms_without_a_subscription(
        api: Api, conn: Conn, factory: Factory, menu: Menu, push: tuple[Outside, FakePushService]) -> None:
    outside, service = push
    b = menu.tenant.business_id
    enable(conn, b)
    subscribed = customer(api, conn, menu, name="Sam Subscribed", days_ago=40)
    texted = customer(api, conn, menu, name="Tess Text", days_ago=40)
    sam = signed_in_customer(conn, factory, b, subscribed)
    device = service.browser()
    api.run(sam, "select public.save_push_subscription(%s, %s, 'customer', true)", (b, json.dumps(device.subscription())))
    rule = automation(conn, b, channel="push", push_fallback="sms", subject="We miss you", body="Hi {{first_name}}, your usual is waiting.")
    conn.execute("select app.evaluate_dormant_automations(%s)", (b,))
    channels = {s["customer_id"]: (s["channel"], s["context"].get("push_fallback", False)) for s in sends(conn, b, automation_id=rule)}
    assert channels == {subscribed: ("push", False), texted: ("sms", True)}

    drain(outside)
    [message] = service.delivered(device)
    assert (message["title"], message["body"]) == ("We miss you", "Hi Sam, your usual is waiting.")
    assert "/consent/unsubscribe?" in message["unsubscribe_url"] and "ch=PUSH_MARKETING" in message["unsubscribe_url"]
    sms = [m for m in outside.twilio.messages() if "pickup code" not in m["Body"]]
    assert [m["Body"].split(" Reply STOP")[0] for m in sms] == ["Hi Tess, your usual is waiting."]
    assert {s["customer_id"]: s["status"] for s in sends(conn, b, automation_id=rule)} == {subscribed: "sent", texted: "sent"}
    logged = conn.execute("select channel, provider from public.notification_log where business_id = %s and event_key like 'marketing:%%' "
                          "order by channel", (b,)).fetchall()
    assert logged == [{"channel": "push", "provider": "webpush"}, {"channel": "sms", "provider": "twilio"}]
    # the notification's unsubscribe link (one-click POST) revokes push marketing in the consent log
    link = urlparse(message["unsubscribe_url"])
    assert httpx.post(f"{outside.functions.url}{link.path}?{link.query}").status_code == 200
    assert [(r["action"], r["source"]) for r in conn.execute(
        "select action, source from public.customer_consent_log where customer_id = %s and channel = 'PUSH_MARKETING' order by id", (subscribed,))] == [
        ("GRANTED", "customer"), ("REVOKED", "unsubscribe_link")]


def test_delivery_steps_reach_a_french_customer_by_sms_and_push(api: Api, conn: Conn, factory: Factory,
                                                               push: tuple[Outside, FakePushService]) -> None:
    outside, service = push
    fleet = make_fleet(conn, factory)
    b = fleet.tenant.business_id
    driver = add_driver(conn, factory, fleet, "dan", km_north=0.5)
    conn.execute("update public.venues set time_zone = 'Europe/Paris' where id = %s", (fleet.menu.venue_id,))
    pat = signed_in_customer(conn, factory, b)
    conn.execute("update public.customers set locale = 'fr', phone = '+33612345678' where business_id = %s and user_id = %s", (b, pat.sub))
    device, van = service.browser(), service.browser()
    api.run(pat, "select public.save_push_subscription(%s, %s)", (b, json.dumps(device.subscription())))
    api.run(fleet.claims("dan"), "select public.save_push_subscription(%s, %s, 'driver')", (b, json.dumps(van.subscription())))
    payload = order_payload(fleet.menu, fulfilment="delivery", customer={"name": "Pat", "phone": "+33612345678"},
                            delivery_address={"line1": "200 Broadway", "latitude": DROPOFF[0], "longitude": DROPOFF[1]})
    order = api.run(pat, "select public.place_order(%s) as r", (json.dumps(payload),))[0]["r"]
    conn.execute("select app.apply_stripe_event(%s)", (json.dumps(session_completed(order, "cs_push_d", "pi_push_d")),))
    for step in ("accepted", "preparing", "ready"):
        api.run(fleet.tenant.claims("staff"), "select public.set_order_status(%s, %s)", (order["order_id"], step))
    conn.execute("select app.start_dispatch(%s, %s)", (b, order["order_id"]))
    delivery = delivery_of(conn, order)
    api.run(fleet.tenant.claims("staff"), "select public.assign_delivery(%s, %s)", (delivery["id"], driver))
    drain(outside)

    eta = delivery_of(conn, order)["eta"]
    head = f"Dispatch Diner : commande n°{order['order_number']}"
    [sms] = [m["Body"] for m in outside.twilio.messages() if "va vous la livrer" in m["Body"]]
    assert sms.startswith(f"{head} : Dan va vous la livrer.") and "Votre code PIN est " in sms and "/track?token=" in sms
    assert eta is not None, "an own driver's delivery has an ETA from assignment"
    assert f"Arrivée prévue à {eta.astimezone(ZoneInfo('Europe/Paris')):%H:%M}." in sms
    bodies = [m["body"] for m in service.delivered(device)]
    assert sms in bodies, bodies
    assert "La commande n°{} est acceptée".format(order["order_number"]) in bodies
    [offer] = service.delivered(van)  # the driver's device got the offer (the venue's default language: English)
    assert offer["title"] == "Main" and offer["body"].startswith("New delivery from Main, ") and offer["body"].endswith("seconds.")
    assert conn.execute("select count(*) as n from public.delivery_offers where business_id = %s and id = %s",
                        (b, offer["offer_id"])).fetchone() == {"n": 1}
