"""The consent function over HTTP: double opt-in confirmation (the link the worker emails) and the
signed unsubscribe link, both landing in the consent log with IP and user agent."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import httpx
import psycopg

from tests.conftest import Api, Factory
from tests.ordering_fixtures import Outside
from worker import main as worker_main


def test_double_opt_in_by_email_link(api: Api, conn: psycopg.Connection[dict[str, Any]], factory: Factory, outside: Outside) -> None:
    t = factory.tenant("Consent Cafe", {"ordering": True, "crm": True})
    conn.execute("update public.venues set require_double_opt_in = true where id = %s", (t.venues[0],))
    c = conn.execute("insert into public.customers (business_id, full_name, email) values (%s, 'Eu Guest', 'eu@example.test') returning id",
                     (t.business_id,)).fetchone()["id"]  # type: ignore[index]
    api.run(t.claims("staff"), "select public.set_consent(%s, 'EMAIL_MARKETING', true, %s)", (c, t.venues[0]))
    asyncio.run(worker_main.run(outside.settings, drain=True))
    [email] = outside.resend.emails()
    assert email["to"] == ["eu@example.test"] and "Consent Cafe" in email["subject"]
    link = re.search(r"(http\S+/consent/confirm\?token=\w+)", email["text"])
    assert link, email["text"]
    token = link.group(1).split("token=")[1]
    url = f"{outside.functions.url}/functions/v1/consent/confirm"

    def current() -> bool:
        return conn.execute("select app.has_consent(%s, %s, 'EMAIL_MARKETING', %s) as ok", (t.business_id, c, t.venues[0])).fetchone()["ok"]  # type: ignore[index]

    assert not current()
    assert httpx.get(url, params={"token": "f" * 48}).status_code == 400
    r = httpx.get(url, params={"token": token}, headers={"user-agent": "MailApp/1.0", "x-forwarded-for": "203.0.113.7"})
    assert r.status_code == 200 and "confirmed" in r.text
    assert current()
    assert httpx.get(url, params={"token": token}).status_code == 200, "a second click is harmless"
    log = conn.execute("select action, source, host(ip) as ip, user_agent from public.customer_consent_log where customer_id = %s order by id", (c,)).fetchall()
    assert log == [{"action": "REQUESTED", "source": "admin", "ip": None, "user_agent": None},
                   {"action": "GRANTED", "source": "double_opt_in", "ip": "203.0.113.7", "user_agent": "MailApp/1.0"}]
    sent = conn.execute("select template, status from public.notification_log where customer_id = %s", (c,)).fetchall()
    assert sent == [{"template": "consent_confirmation", "status": "sent"}]


def test_signed_unsubscribe_link(conn: psycopg.Connection[dict[str, Any]], factory: Factory, outside: Outside) -> None:
    t = factory.tenant("Unsub Cafe", {"ordering": True, "crm": True})
    c = conn.execute("insert into public.customers (business_id, email) values (%s, 'u@example.test') returning id", (t.business_id,)).fetchone()["id"]  # type: ignore[index]
    conn.execute("select app.record_consent(%s, %s, 'EMAIL_MARKETING', true, 'checkout')", (t.business_id, c))
    token = conn.execute("select app.unsubscribe_token(%s, %s, 'EMAIL_MARKETING') as t", (t.business_id, c)).fetchone()["t"]  # type: ignore[index]
    url = f"{outside.functions.url}/functions/v1/consent/unsubscribe"
    params = {"b": str(t.business_id), "c": str(c), "ch": "EMAIL_MARKETING", "t": token}
    assert httpx.get(url, params={**params, "t": "0" * 64}).status_code == 400
    assert httpx.get(url, params={**params, "ch": "SMS_MARKETING"}).status_code == 400, "the token is bound to its channel"
    assert httpx.get(url, params={**params, "ch": "DROP TABLE"}).status_code == 400
    assert httpx.get(url, params=params).status_code == 200
    last = conn.execute("select action, source from public.customer_consent_log where customer_id = %s order by id desc limit 1", (c,)).fetchone()
    assert last == {"action": "REVOKED", "source": "unsubscribe_link"}
