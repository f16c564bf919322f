"""Messages in the customer's language through the worker, the real SDKs and the fakes: a customer
whose locale is fr gets the pickup code and the receipt in French (money as French writes it, the
order time in the venue's zone); the win-back rule's French text with the French STOP footer; a
customer without a locale gets the venue's default (Bulgarian)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import psycopg

from brigade import i18n
from brigade.auth import Claims
from tests.campaigns_kit import automation, customer, enable, paid_order, sends
from tests.conftest import Api, Factory, sqlstate
from tests.ordering_fixtures import Outside
from tests.ordering_kit import EXPECTED_TOTAL, Menu
from worker import main as worker_main

Conn = psycopg.Connection[dict[str, Any]]


def drain(outside: Outside) -> None:
    asyncio.run(worker_main.run(outside.settings, idle=True))


def test_messages_follow_the_customers_locale_else_the_venues(api: Api, conn: Conn, factory: Factory, menu: Menu, outside: Outside) -> None:
    b = menu.tenant.business_id
    enable(conn, b)
    conn.execute("update public.venues set default_locale = 'bg', time_zone = 'Europe/Sofia' where id = %s", (menu.venue_id,))
    camille = customer(api, conn, menu, name="Camille Martin", days_ago=40)
    boris = customer(api, conn, menu, name="Boris Petrov", days_ago=40)
    user = factory.user()
    conn.execute("update public.customers set user_id = %s where id = %s", (user, camille))
    me = Claims.user(user)
    assert sqlstate(lambda: api.run(me, "select public.set_my_locale(%s, 'French')", (b,))) == "22023"
    assert api.run(me, "select public.set_my_locale(%s, 'fr') as r", (b,)) == [{"r": "fr"}]
    drain(outside)
    outside.twilio.server.requests.clear()
    outside.resend.server.requests.clear()

    contact = conn.execute("select full_name as name, phone, email from public.customers where id = %s", (camille,)).fetchone()
    order = paid_order(api, conn, menu, dict(contact))  # type: ignore[arg-type]
    drain(outside)
    [sms] = [m for m in outside.twilio.messages() if m["To"] == contact["phone"]]  # type: ignore[index]
    total = i18n.money(EXPECTED_TOTAL, "USD", "fr")
    assert sms["Body"].startswith(f"Cafe Nova : commande n°{order['order_number']} est payée ({total}). Votre code de retrait est "), sms
    assert sms["Body"].endswith("; présentez-le à Main dans les 60 minutes.")
    [receipt] = outside.resend.emails()
    assert receipt["subject"] == f"Votre reçu — Cafe Nova : commande n°{order['order_number']}"
    assert receipt["text"].startswith("Code de retrait : ") and "(valable 60 minutes)" in receipt["text"].split("\n")[0]
    assert total in receipt["text"], "the receipt's money as French writes it"

    rule = automation(conn, b, body="Hi {{first_name}}, we miss you!", translations=json.dumps({
        "fr": {"body": "Bonjour {{first_name}}, vous nous manquez !"}, "bg": {"body": "Здравейте, {{first_name}}, липсвате ни!"}}))
    conn.execute("update public.customer_venue_stats set last_order_at = now() - interval '40 days' where business_id = %s", (b,))
    assert conn.execute("select app.evaluate_dormant_automations(%s) as n", (b,)).fetchone() == {"n": 2}
    drain(outside)
    texts = {m["To"]: m["Body"] for m in outside.twilio.messages() if "STOP" in m["Body"]}
    phones = {r["id"]: r["phone"] for r in conn.execute("select id, phone from public.customers where id = any(%s)", ([camille, boris],))}
    assert texts[phones[camille]] == "Bonjour Camille, vous nous manquez ! Répondez STOP pour vous désabonner."
    assert texts[phones[boris]] == "Здравейте, Boris, липсвате ни! Отговорете STOP, за да се отпишете."
    assert {s["status"] for s in sends(conn, b, automation_id=rule)} == {"sent"}
    assert sqlstate(lambda: automation(conn, b, name="Bad", translations=json.dumps({"fr": {"text": "x"}}))) == "23514"
