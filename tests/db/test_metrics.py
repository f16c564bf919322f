"""Platform metrics (issue 14 item 4): each metric of app.metrics against a hand-made dataset whose
answers are known, per business and platform-wide, and who may read them; the Prometheus exposition
at /functions/v1/metrics behind its bearer token, with the functions' and the worker's figures."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import psycopg

from brigade.auth import Claims
from brigade.settings import Settings
from tests.conftest import Api, Factory, ServerThread, sqlstate
from worker import main as worker_main

FROM = datetime(2030, 3, 1, tzinfo=timezone.utc)
TO = datetime(2030, 4, 1, tzinfo=timezone.utc)
INSIDE = FROM + timedelta(days=10)
BEFORE = FROM - timedelta(days=1)


def load(conn: psycopg.Connection[dict[str, Any]], b: uuid.UUID, venue: uuid.UUID, *, scale: int = 1) -> None:
    """The hand-made month of one business (scale doubles every count for the second business)."""
    conn.execute("set session_replication_role = replica")  # rows as they would stand, without the triggers that made them
    n = iter(range(1, 10_000))
    for _ in range(scale):
        for status, pay, total, paid_at, placed in (("completed", "paid", 1000, INSIDE, INSIDE), ("completed", "paid", 2000, INSIDE, INSIDE),
                                                     ("cancelled", "refunded", 3000, INSIDE, INSIDE), ("placed", "unpaid", 4000, None, INSIDE),
                                                     ("completed", "paid", 9000, BEFORE, BEFORE)):
            order = uuid.uuid4()
            conn.execute("insert into public.orders (business_id, id, venue_id, order_number, channel, fulfilment, status, payment_status, "
                         "currency, subtotal_cents, total_cents, refunded_cents, placed_at, paid_at, cancel_reason) "
                         "values (%s, %s, %s, %s, 'web', 'pickup', %s, %s, 'USD', %s, %s, %s, %s, %s, %s)",
                         (b, order, venue, next(n) + 1000 * scale, status, pay, total, total, total if pay == "refunded" else 0, placed,
                          paid_at, "test" if status == "cancelled" else None))
            if paid_at:
                conn.execute("insert into public.payments (business_id, order_id, venue_id, payment_intent_id, amount_cents, currency, created_at) "
                             "values (%s, %s, %s, %s, %s, 'USD', %s)", (b, order, venue, f"pi_{order.hex}", total, paid_at))
        for at in (INSIDE, BEFORE):
            conn.execute("insert into public.stripe_events (id, type, business_id, payload, received_at) values (%s, "
                         "'payment_intent.payment_failed', %s, '{}', %s)", (f"evt_{uuid.uuid4().hex}", b, at))
        user = conn.execute("insert into auth.users (email) values (%s) returning id", (f"{uuid.uuid4().hex[:8]}@x.test",)).fetchone()["id"]  # type: ignore[index]
        for verified in (True, True, True, False):
            conn.execute("insert into app.customer_claim_codes (business_id, user_id, channel, destination, code_hash, created_at, verified_at) "
                         "values (%s, %s, 'sms', '+12125550100', 'h', %s, %s)", (b, user, INSIDE, INSIDE if verified else None))
        for channel, status in (("sms", "sent"), ("sms", "delivered"), ("sms", "delivered"), ("sms", "failed"), ("sms", "pending"),
                                ("email", "sent"), ("email", "failed"), ("email", "skipped")):
            conn.execute("insert into public.notification_log (business_id, event_key, channel, recipient, template, status, created_at) "
                         "values (%s, %s, %s, 'x', 't', %s, %s)", (b, uuid.uuid4().hex, channel, status, INSIDE))
        for provider, status in (("own", "delivered"), ("uber", "delivered"), ("doordash", "delivered"), ("uber", "failed"),
                                 ("own", "assigned")):
            conn.execute("insert into public.deliveries (business_id, venue_id, order_id, external_delivery_id, pickup, dropoff, currency, dropoff_pin, "
                         "provider, driver_id, status, created_at) values (%s, %s, %s, %s, '{}', '{}', 'USD', '1234', %s, %s, %s, %s)",
                         (b, venue, uuid.uuid4(), uuid.uuid4().hex, provider, uuid.uuid4(), status, INSIDE))
        activity = uuid.uuid4()
        for k, status in enumerate(("no_show", "completed", "completed", "checked_in", "cancelled")):
            session = uuid.uuid4()
            conn.execute("insert into public.activity_sessions (business_id, id, activity_id, venue_id, starts_at, ends_at, capacity) "
                         "values (%s, %s, %s, %s, %s, %s, 10)", (b, session, activity, venue, INSIDE + timedelta(hours=k), INSIDE + timedelta(hours=k + 1)))
            conn.execute("insert into public.bookings (business_id, booking_number, venue_id, activity_id, session_id, status, payment_status, "
                         "party, party_size, currency, subtotal_cents, total_cents, hold_expires_at, cancel_reason) "
                         "values (%s, %s, %s, %s, %s, %s, 'paid', '{\"adult\": 2}', 2, 'USD', 5000, 5000, %s, %s)",
                         (b, f"BK-{uuid.uuid4().hex[:6].upper()}-{k:04d}", venue, activity, session, status, INSIDE,
                          "test" if status == "cancelled" else None))
    conn.execute("set session_replication_role = origin")


def test_each_metric_against_a_hand_made_month(api: Api, conn: psycopg.Connection[dict[str, Any]], factory: Factory,
                                               operator: Claims) -> None:
    one = factory.tenant("One", {"ordering": True})
    two = factory.tenant("Two", {"ordering": True})
    load(conn, one.business_id, one.venues[0])
    load(conn, two.business_id, two.venues[0], scale=2)
    conn.execute("select app.record_function_stats(%s)", (json.dumps([
        {"bucket": INSIDE.isoformat(), "function": "stripe-webhook", "status": 200, "requests": 8, "total_ms": 400, "max_ms": 90},
        {"bucket": INSIDE.isoformat(), "function": "stripe-webhook", "status": 400, "requests": 2, "total_ms": 10, "max_ms": 6},
        {"bucket": INSIDE.isoformat(), "function": "checkout", "status": 200, "requests": 9, "total_ms": 900, "max_ms": 1500, "slow": 1},
        {"bucket": INSIDE.isoformat(), "function": "checkout", "status": 500, "requests": 1, "total_ms": 100, "max_ms": 100},
        {"bucket": BEFORE.isoformat(), "function": "checkout", "status": 500, "requests": 50, "total_ms": 100, "max_ms": 100}]),))

    q = "select public.get_metrics(%s, %s, %s) as m"
    mine = api.run(one.claims("owner"), q, (one.business_id, FROM, TO))[0]["m"]
    expected = {
        "orders_placed": 4, "order_success_rate": 0.5,             # paid and not cancelled: 2 of the 4 placed in March
        "orders_paid": 3, "average_order_value_cents": 2000,       # (1000 + 2000 + 3000) / 3
        "payments": 3, "payment_failures": 1, "payment_failure_rate": 0.25,
        "otp_sent": 4, "otp_verification_rate": 0.75,
        "sms_delivery_rate": 0.75, "email_delivery_rate": 0.5, "voice_delivery_rate": None,  # pending and skipped left out
        "deliveries_finished": 4, "delivery_success_rate": 0.75, "courier_network_share": 0.6667,
        "bookings_due": 4, "booking_no_show_rate": 0.25,
        "webhook_failures": None, "functions": None,               # platform figures only
    }
    assert {k: mine[k] for k in expected} == expected
    assert api.run(one.claims("manager"), q, (one.business_id, FROM, TO))[0]["m"] == mine
    # the platform: both businesses (the second doubled), the functions' figures
    platform = api.run(operator, q, (None, FROM, TO))[0]["m"]
    assert (platform["orders_placed"], platform["payments"], platform["average_order_value_cents"]) == (12, 9, 2000)
    assert (platform["order_success_rate"], platform["payment_failure_rate"], platform["booking_no_show_rate"]) == (0.5, 0.25, 0.25)
    assert platform["webhook_failures"] == 2
    assert platform["functions"] == {
        "stripe-webhook": {"requests": 10, "error_rate": 0, "client_error_rate": 0.2, "mean_ms": 41.0, "max_ms": 90.0, "slow": 0},
        "checkout": {"requests": 10, "error_rate": 0.1, "client_error_rate": 0, "mean_ms": 100.0, "max_ms": 1500.0, "slow": 1}}
    # another window sees February only
    february = api.run(one.claims("owner"), q, (one.business_id, FROM - timedelta(days=28), FROM))[0]["m"]
    assert (february["orders_placed"], february["average_order_value_cents"], february["payment_failures"]) == (1, 9000, 1)
    # who may read: owners and managers of the business, the operator for the platform
    for who, business in ((one.claims("staff"), one.business_id), (two.claims("owner"), one.business_id), (one.claims("owner"), None),
                          (Claims.anon(), one.business_id)):
        assert sqlstate(lambda: api.run(who, q, (business, FROM, TO))) in ("PT404", "42501"), (who, business)
    assert sqlstate(lambda: api.run(operator, q, (None, TO, FROM))) == "22023"
    days = api.run(operator, "select function, requests, server_errors from public.operator_function_stats order by day, function")
    assert days == [{"function": "checkout", "requests": 50, "server_errors": 50}, {"function": "checkout", "requests": 10, "server_errors": 1},
                    {"function": "stripe-webhook", "requests": 10, "server_errors": None}]
    assert api.run(one.claims("owner"), "select count(*) as n from public.operator_function_stats") == [{"n": 0}]

    # the dashboards' daily views, under the caller's row-level security
    daily = api.run(one.claims("owner"), "select day, orders_placed, orders_paid, orders_cancelled, success_rate, revenue_cents, "
                                         "average_order_value_cents from public.business_daily_orders where business_id = %s order by day",
                    (one.business_id,))
    assert [(d["orders_placed"], d["orders_paid"], d["orders_cancelled"], d["success_rate"], d["revenue_cents"],
             d["average_order_value_cents"]) for d in daily] == [(1, 1, 0, 1, 9000, 9000), (4, 3, 1, 0.5, 3000, 2000)]
    assert api.run(two.claims("owner"), "select count(*) as n from public.business_daily_orders where business_id = %s",
                   (one.business_id,)) == [{"n": 0}]
    messages = api.run(one.claims("owner"), "select channel, attempted, delivered, failed, delivery_rate from public.business_daily_messages "
                                            "where business_id = %s order by channel", (one.business_id,))
    assert messages == [{"channel": "email", "attempted": 2, "delivered": 1, "failed": 1, "delivery_rate": 0.5},
                        {"channel": "sms", "attempted": 4, "delivered": 3, "failed": 1, "delivery_rate": 0.75}]


def test_prometheus_exposition_behind_its_token(conn: psycopg.Connection[dict[str, Any]], settings: Settings) -> None:
    secured = settings.model_copy(update={"metrics_token": "scrape-me", "metrics_flush_seconds": 60.0})
    conn.execute("select app.emit('test.ping', null, '{}')")
    asyncio.run(worker_main.run(secured, drain=True))  # no handler for the topic: acknowledged and counted
    from functions.app import create_app

    with ServerThread(create_app(secured)) as server:
        url = f"{server.url}/functions/v1/metrics"
        assert httpx.get(f"{server.url}/functions/v1/health").status_code == 200
        assert httpx.get(url).status_code == 401
        assert httpx.get(url, headers={"authorization": "Bearer wrong"}).status_code == 401
        r = httpx.get(url, headers={"authorization": "Bearer scrape-me"})
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
        text = r.text
        assert 'brigade_function_requests_total{function="health",status="200"} 1.0' in text
        assert 'brigade_function_requests_total{function="metrics",status="401"} 2.0' in text
        assert 'brigade_function_duration_seconds_count{function="health"} 1.0' in text
        assert 'brigade_worker_events_total{outcome="ok",topic="test.ping"} 1.0' in text
        assert 'brigade_outbox_events{state="ready"} 0.0' in text and 'brigade_outbox_events{state="dead"} 0.0' in text
    # on shutdown the counts reach app.function_stats, where the SQL metrics read them
    rows = conn.execute("select function, status, requests from app.function_stats order by function, status").fetchall()
    assert {(r["function"], r["status"]): r["requests"] for r in rows} == {("health", 200): 1, ("metrics", 200): 1, ("metrics", 401): 2}
    off = settings.model_copy(update={"metrics_token": ""})
    with ServerThread(create_app(off)) as server:
        assert httpx.get(f"{server.url}/functions/v1/metrics", headers={"authorization": "Bearer scrape-me"}).status_code == 404
