"""Automations through the worker and the outside world: a delayed send sent once by two workers,
consent revoked during the delay, email with its signed unsubscribe link (and one-click), SMS STOP
and START through the signed twilio-sms function, delivery reports, and a win-back whose revenue
shows against the automation."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlparse
from zoneinfo import ZoneInfo

import httpx
import psycopg
import pytest
from twilio.request_validator import RequestValidator

from brigade.auth import Claims
from functions.resend_webhook import svix_signature
from tests.campaigns_kit import automation, customer, enable, make_due, queued, sends
from tests.conftest import Api
from tests.ordering_fixtures import Outside
from tests.ordering_kit import Menu, session_completed, signed
from worker import main as worker_main


@pytest.fixture
def shop(conn: psycopg.Connection[dict[str, Any]], menu: Menu) -> Menu:
    enable(conn, menu.tenant.business_id)
    return menu


def drain(outside: Outside) -> None:
    """Run the worker until nothing is visible now (delayed sends stay queued for their time)."""
    asyncio.run(worker_main.run(outside.settings, idle=True))


def texts(outside: Outside) -> list[dict[str, str]]:
    """Marketing SMS the fake Twilio received (not the order flow's pickup codes)."""
    return [m for m in outside.twilio.messages() if "pickup code" not in m["Body"]]


def emails(outside: Outside) -> list[dict[str, Any]]:
    """Marketing email the fake Resend received (not receipts)."""
    return [e for e in outside.resend.emails() if not e["subject"].startswith("Your receipt")]


def twilio_post(outside: Outside, path: str, form: dict[str, str], *, sign: bool = True) -> httpx.Response:
    """A form post as Twilio makes it: signed over the exact URL it calls."""
    url = f"{outside.functions.url}/functions/v1{path}"
    signature = RequestValidator(outside.settings.twilio_auth_token).compute_signature(url, form) if sign else "forged"
    return httpx.post(url, data=form, headers={"X-Twilio-Signature": signature})


def phone_of(conn: psycopg.Connection[dict[str, Any]], customer_id: uuid.UUID) -> str:
    return conn.execute("select phone from public.customers where id = %s", (customer_id,)).fetchone()["phone"]  # type: ignore[index]


def consent_log(conn: psycopg.Connection[dict[str, Any]], customer_id: uuid.UUID, channel: str) -> list[tuple[str, str]]:
    return [(r["action"], r["source"]) for r in conn.execute(
        "select action, source from public.customer_consent_log where customer_id = %s and channel = %s order by id", (customer_id, channel))]


def test_a_two_hour_delay_is_sent_once_across_two_workers(api: Api, conn: psycopg.Connection[dict[str, Any]], shop: Menu, outside: Outside) -> None:
    b = shop.tenant.business_id
    cid = customer(api, conn, shop, name="Dana Dormant", days_ago=35)
    rule = automation(conn, b, delay_seconds=7200)
    conn.execute("select app.evaluate_dormant_automations(%s)", (b,))
    [s] = sends(conn, b, automation_id=rule)
    conn.execute("select app.emit('automation.due', %s, %s, 7200)", (b, json.dumps({"send_id": str(s["id"])})))  # a duplicate
    waits = [float(m["in_seconds"]) for m in queued(conn, s["id"])]
    assert len(waits) == 2 and all(7100 < w <= 7200 for w in waits), "a delayed message, not a sleeping worker"
    drain(outside)
    assert texts(outside) == [] and sends(conn, b, automation_id=rule)[0]["status"] == "scheduled", "nothing before the delay"

    assert make_due(conn, [s["id"]]) == 2

    async def two_workers() -> list[Any]:
        return await asyncio.gather(worker_main.run(outside.settings, idle=True), worker_main.run(outside.settings, idle=True))

    consumers = asyncio.run(two_workers())
    assert sum(c.handled for c in consumers) == 2 and sum(c.failed for c in consumers) == 0
    [sms] = texts(outside)
    assert sms["To"] == phone_of(conn, cid) and sms["Body"].startswith("Hi Dana, we miss you at Main!") and "Reply STOP" in sms["Body"]
    assert sms["StatusCallback"] == f"{outside.settings.functions_url}/twilio-sms/status"
    [row] = sends(conn, b, automation_id=rule)
    assert row["status"] == "sent" and row["notification_id"] and row["attribution_ends_at"] is not None
    assert (row["attribution_ends_at"] - row["sent_at"]).total_seconds() == 7 * 86400
    assert conn.execute("select count(*) as n from public.notification_log where event_key = %s", (f"marketing:{s['id']}",)).fetchone() == {"n": 1}
    drain(outside)
    assert len(texts(outside)) == 1


def test_consent_revoked_during_the_delay_means_no_message(api: Api, conn: psycopg.Connection[dict[str, Any]], shop: Menu, outside: Outside) -> None:
    b = shop.tenant.business_id
    cid = customer(api, conn, shop, days_ago=35)
    rule = automation(conn, b, delay_seconds=7200)
    conn.execute("select app.evaluate_dormant_automations(%s)", (b,))
    [s] = sends(conn, b, automation_id=rule)
    token = conn.execute("select app.unsubscribe_token(%s, %s, 'SMS_MARKETING') as t", (b, cid)).fetchone()["t"]  # type: ignore[index]
    r = httpx.get(f"{outside.functions.url}/functions/v1/consent/unsubscribe", params={"b": str(b), "c": str(cid), "ch": "SMS_MARKETING", "t": token})
    assert r.status_code == 200
    make_due(conn, [s["id"]])
    drain(outside)
    assert texts(outside) == []
    [row] = sends(conn, b, automation_id=rule)
    assert (row["status"], row["skip_reason"]) == ("skipped", "no_consent")


@pytest.mark.clock
def test_quiet_hours_hold_the_message_back(api: Api, conn: psycopg.Connection[dict[str, Any]], shop: Menu, outside: Outside) -> None:
    b = shop.tenant.business_id
    customer(api, conn, shop, days_ago=35)
    venue = conn.execute("select (now() at time zone time_zone)::time as t, now() as at, time_zone from public.venues where id = %s",
                         (shop.venue_id,)).fetchone()  # quiet hours are the venue's
    assert venue is not None
    now = venue["t"]
    rule = automation(conn, b, quiet_start=(conn.execute("select (%s::time - interval '1 hour')::time as t", (now,)).fetchone()["t"]),  # type: ignore[index]
                      quiet_end=(conn.execute("select (%s::time + interval '1 hour')::time as t", (now,)).fetchone()["t"]))  # type: ignore[index]
    conn.execute("select app.evaluate_dormant_automations(%s)", (b,))
    drain(outside)
    assert texts(outside) == []
    [row] = sends(conn, b, automation_id=rule)
    assert row["status"] == "scheduled" and row["deferrals"] == 1
    [pending] = queued(conn, row["id"])
    # the window ends an hour of wall clock from now in the venue's zone: 3,600 s, or 7,200 s / 0 s... across a DST change
    zone = ZoneInfo(venue["time_zone"])
    local = venue["at"].astimezone(zone)
    end = datetime.combine(local.date(), (local + timedelta(hours=1)).time(), zone)
    end = end if end > local else datetime.combine(local.date() + timedelta(days=1), end.time(), zone)
    expected = (end - venue["at"]).total_seconds()
    assert expected - 100 < float(pending["in_seconds"]) <= expected + 1, "announced again for the end of the quiet window"


def test_marketing_email_carries_a_working_unsubscribe_link(api: Api, conn: psycopg.Connection[dict[str, Any]], shop: Menu, outside: Outside) -> None:
    b = shop.tenant.business_id
    cid = customer(api, conn, shop, name="Erin Email", days_ago=35)
    automation(conn, b, channel="email", subject="{{first_name}}, your table misses you", body="Come back to {{venue_name}} this week.")
    conn.execute("select app.evaluate_dormant_automations(%s)", (b,))
    drain(outside)
    [email] = emails(outside)
    assert email["subject"] == "Erin, your table misses you"
    link = email["headers"]["List-Unsubscribe"].strip("<>")
    assert email["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click" and link in email["text"]
    query = parse_qs(urlparse(link).query)
    assert query["c"] == [str(cid)] and query["ch"] == ["EMAIL_MARKETING"]
    forged = link[:-4] + ("0000" if not link.endswith("0000") else "1111")
    path = urlparse(link).path + "?" + urlparse(link).query
    assert httpx.post(f"{outside.functions.url}{path.replace(urlparse(link).query, urlparse(forged).query)}").status_code == 400
    assert consent_log(conn, cid, "EMAIL_MARKETING") == [("GRANTED", "checkout")]
    assert httpx.post(f"{outside.functions.url}{path}").status_code == 200, "one-click (RFC 8058) POST"
    assert consent_log(conn, cid, "EMAIL_MARKETING") == [("GRANTED", "checkout"), ("REVOKED", "unsubscribe_link")]


def test_sms_stop_and_start_through_the_signed_function(api: Api, conn: psycopg.Connection[dict[str, Any]], shop: Menu, outside: Outside) -> None:
    b = shop.tenant.business_id
    cid = customer(api, conn, shop)
    phone = phone_of(conn, cid)
    form = {"From": phone, "To": outside.settings.twilio_from_number, "Body": "Stop ", "MessageSid": "SM" + "a" * 32}
    assert twilio_post(outside, "/twilio-sms", form, sign=False).status_code == 403
    assert consent_log(conn, cid, "SMS_MARKETING") == [("GRANTED", "checkout")], "a forged STOP changes nothing"
    r = twilio_post(outside, "/twilio-sms", form)
    assert r.status_code == 200 and "<Response>" in r.text
    assert consent_log(conn, cid, "SMS_MARKETING")[-1] == ("REVOKED", "sms_stop")
    assert conn.execute("select reason from public.marketing_suppressions where business_id = %s and address = %s", (b, phone)).fetchall() == [{"reason": "sms_stop"}]
    assert twilio_post(outside, "/twilio-sms", {**form, "Body": "what time do you open?"}).status_code == 200
    assert len(consent_log(conn, cid, "SMS_MARKETING")) == 2, "other words are not keywords"
    assert twilio_post(outside, "/twilio-sms", {**form, "Body": "START"}).status_code == 200
    assert consent_log(conn, cid, "SMS_MARKETING")[-1] == ("GRANTED", "sms_start")
    assert conn.execute("select count(*) as n from public.marketing_suppressions where business_id = %s", (b,)).fetchone() == {"n": 0}


def test_win_back_delivery_report_and_revenue_against_the_automation(api: Api, conn: psycopg.Connection[dict[str, Any]], shop: Menu,
                                                                     outside: Outside) -> None:
    b = shop.tenant.business_id
    cid = customer(api, conn, shop, name="Dana Dormant", days_ago=45)
    rule = automation(conn, b, name="Win-back 30 days", body="We miss you {{first_name}}! 10% off at {{venue_name}} this week.")
    conn.execute("select app.evaluate_dormant_automations(%s)", (b,))
    drain(outside)
    [sms] = texts(outside)
    [row] = sends(conn, b, automation_id=rule)
    sid = conn.execute("select provider_message_id from public.notification_log where id = %s", (row["notification_id"],)).fetchone()["provider_message_id"]  # type: ignore[index]
    assert sid.startswith("SM") and sms["To"] == phone_of(conn, cid)
    report = {"MessageSid": sid, "MessageStatus": "delivered", "AccountSid": outside.settings.twilio_account_sid}
    assert twilio_post(outside, "/twilio-sms/status", report).json() == {"updated": 1}
    assert twilio_post(outside, "/twilio-sms/status", {**report, "MessageStatus": "sent"}).json() == {"updated": 0}, "a late report never moves it back"
    assert twilio_post(outside, "/twilio-sms/status", {**report, "MessageStatus": "failed"}).json() == {"updated": 0}
    assert twilio_post(outside, "/twilio-sms/status", {"MessageSid": sid}).status_code == 400

    # Dana orders again and pays through the signed Stripe webhook
    order = api.run(Claims.anon(), "select public.place_order(%s) as r", (json.dumps(
        {"venue_id": str(shop.venue_id), "channel": "web", "fulfilment": "pickup", "customer": {"name": "Dana", "phone": phone_of(conn, cid)},
         "items": [{"product_id": str(shop.products["croissant"]), "quantity": 3}]}),))[0]["r"]
    raw, headers = signed(session_completed(order, "cs_winback", "pi_winback"), outside.settings.stripe_webhook_secret)
    assert httpx.post(f"{outside.functions.url}/functions/v1/stripe-webhook", content=raw, headers=headers).json()["outcome"] == "paid"
    perf = api.run(shop.tenant.claims("manager"), "select sends, delivered, orders, revenue_cents, message_cost_cents::float8 from public.campaign_performance "
                   "where id = %s", (rule,))
    assert perf == [{"sends": 1, "delivered": 1, "orders": 1, "revenue_cents": order["total_cents"],
                     "message_cost_cents": pytest.approx(outside.settings.sms_cost_cents)}]


def test_a_scheduled_campaign_goes_out_at_its_time_to_the_reachable_members(api: Api, conn: psycopg.Connection[dict[str, Any]], shop: Menu,
                                                                             outside: Outside) -> None:
    b = shop.tenant.business_id
    yes = [customer(api, conn, shop, name=f"Yara {i}") for i in range(2)]
    customer(api, conn, shop, name="Nora No", consent=())
    seg = conn.execute("insert into public.segments (business_id, venue_id, key, name, criteria) values (%s, %s, 'regulars', 'Regulars', %s) "
                       "returning id", (b, shop.venue_id, json.dumps({"field": "total_orders", "op": "gte", "value": 1}))).fetchone()["id"]  # type: ignore[index]
    manager = shop.tenant.claims("manager")
    api.run(manager, "select public.recompute_segment(%s)", (seg,))
    campaign = api.run(manager, "insert into public.campaigns (business_id, name, segment_id, channel, body) values (%s, 'Soup season', %s, 'sms', "
                       "'{{first_name}}, soup is back at {{venue_name}}') returning id", (b, seg))[0]["id"]
    api.run(manager, "select public.schedule_campaign(%s, now() + interval '3 hours')", (campaign,))
    drain(outside)
    assert texts(outside) == [], "not before its time"
    conn.execute("update public.campaigns set scheduled_at = now() where id = %s", (campaign,))
    conn.execute("update pgmq.q_brigade_events set vt = now() where message->>'topic' = 'campaign.due'")
    drain(outside)
    got = sorted(m["To"] for m in texts(outside))
    assert got == sorted(phone_of(conn, c) for c in yes)
    assert all(m["Body"].startswith(("Yara, soup is back at Main")) for m in texts(outside))
    row = api.run(manager, "select status, recipients from public.campaigns where id = %s", (campaign,))[0]
    perf = api.run(manager, "select sends, skipped from public.campaign_performance where id = %s", (campaign,))[0]
    assert row["status"] == "sent" and row["recipients"] == 3 and perf == {"sends": 2, "skipped": 1}


def test_resend_events_mark_delivery_and_suppress_bounces(api: Api, conn: psycopg.Connection[dict[str, Any]], shop: Menu, outside: Outside) -> None:
    b = shop.tenant.business_id
    cid = customer(api, conn, shop, name="Bea Bounce", days_ago=35)
    rule = automation(conn, b, channel="email", body="Come back")
    conn.execute("select app.evaluate_dormant_automations(%s)", (b,))
    drain(outside)
    [row] = sends(conn, b, automation_id=rule)
    email_id = conn.execute("select provider_message_id from public.notification_log where id = %s", (row["notification_id"],)).fetchone()["provider_message_id"]  # type: ignore[index]

    def post(kind: str, *, secret: str | None = None, stamp: int | None = None) -> httpx.Response:
        body = json.dumps({"type": kind, "created_at": "2026-11-22T00:00:00Z", "data": {"email_id": email_id, "to": ["x"]}}).encode()
        ts = str(stamp if stamp is not None else int(time.time()))
        sig = svix_signature(secret or outside.settings.resend_webhook_secret, "msg_1", ts, body)
        return httpx.post(f"{outside.functions.url}/functions/v1/resend-webhook", content=body,
                          headers={"svix-id": "msg_1", "svix-timestamp": ts, "svix-signature": f"v1,bogus {sig}"})

    assert post("email.delivered", secret="whsec_" + base64.b64encode(b"another").decode()).status_code == 403
    assert post("email.delivered", stamp=int(time.time()) - 600).status_code == 403, "outside the 5-minute tolerance"
    assert post("email.delivered").json() == {"type": "email.delivered", "updated": 1}
    assert post("email.delivered").json()["updated"] == 0, "a repeat changes nothing"
    assert post("email.opened").json()["updated"] == 0
    assert post("email.bounced").json()["updated"] == 1
    email = conn.execute("select email from public.customers where id = %s", (cid,)).fetchone()["email"]  # type: ignore[index]
    assert conn.execute("select reason from public.marketing_suppressions where business_id = %s and channel = 'email' and address = %s",
                        (b, email.lower())).fetchall() == [{"reason": "bounce"}]
    assert conn.execute("select status from public.notification_log where id = %s", (row["notification_id"],)).fetchone() == {"status": "delivered"}
    # the next rule's email is suppressed at send time
    again = automation(conn, b, name="Again", channel="email", body="Still here")
    conn.execute("select app.evaluate_dormant_automations(%s)", (b,))
    drain(outside)
    assert [(s["status"], s["skip_reason"]) for s in sends(conn, b, automation_id=again)] == [("skipped", "suppressed")]
