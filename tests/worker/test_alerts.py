"""Alerts (issue 14 item 5): a rule's alert opened once, re-notified on its schedule, quiet once
acknowledged, closed when the condition clears (evaluated at fixed instants); the worker's
every-minute job telling the operator by email and a Slack-style webhook; listing and acknowledging
through `admin`."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import psycopg

from brigade import auth
from brigade.db import open_pool
from brigade.settings import Settings
from tests.conftest import ServerThread
from tests.fakes.http import FakeServer, Reply
from worker.registry import Resources, load_plugins, registry
from worker.scheduler import Scheduler

T = datetime(2030, 1, 7, 12, 0, tzinfo=timezone.utc)


def at(minutes: float) -> datetime:
    return T + timedelta(minutes=minutes)


def evaluate(conn: psycopg.Connection[dict[str, Any]], minutes: float) -> list[tuple[str, str, str]]:
    out = conn.execute("select app.evaluate_alerts(%s) as a", (at(minutes),)).fetchone()["a"]  # type: ignore[index]
    return [(a["action"], a["rule"], a["subject"]) for a in out]


def requests(conn: psycopg.Connection[dict[str, Any]], minute: float, function: str, status: int, n: int) -> None:
    conn.execute("select app.record_function_stats(%s)", (json.dumps([
        {"bucket": at(minute).isoformat(), "function": function, "status": status, "requests": n, "total_ms": 10.0 * n, "max_ms": 10}]),))


def test_an_alert_opens_once_is_renotified_and_closes(conn: psycopg.Connection[dict[str, Any]]) -> None:
    conn.execute("update app.alert_rules set renotify_minutes = 5 where key = 'payment_webhook_failures'")
    assert evaluate(conn, 0) == [], "nothing wrong, nothing said"
    requests(conn, 0, "stripe-webhook", 400, 3)
    assert evaluate(conn, 1) == [("opened", "payment_webhook_failures", "")]
    assert evaluate(conn, 2) == [] and evaluate(conn, 5.5) == [], "open once; no reminder before 5 minutes"
    assert evaluate(conn, 6) == [("renotified", "payment_webhook_failures", "")]
    assert evaluate(conn, 7) == []
    [alert] = conn.execute("select id, notifications, value, closed_at from app.alerts").fetchall()
    assert (alert["notifications"], alert["value"], alert["closed_at"]) == (2, 3, None)
    conn.execute("select app.acknowledge_alert(%s)", (alert["id"],))
    assert evaluate(conn, 11.5) == [], "acknowledged: no more reminders"
    # the window is 15 minutes: at 15 the failures of minute 0 no longer count
    assert evaluate(conn, 14.9) == [] and evaluate(conn, 16) == [("closed", "payment_webhook_failures", "")]
    assert evaluate(conn, 17) == []
    requests(conn, 30, "stripe-webhook", 500, 1)
    assert evaluate(conn, 30) == [("opened", "payment_webhook_failures", "")], "a new failure is a new alert"
    assert conn.execute("select count(*) as n, count(closed_at) as closed from app.alerts").fetchone() == {"n": 2, "closed": 1}

    # error rate above 5 %, once at least 20 requests were counted; per-channel provider failures
    requests(conn, 100, "checkout", 200, 18)
    requests(conn, 100, "checkout", 500, 1)
    assert [a for a in evaluate(conn, 100) if a[1] == "error_rate"] == [], "19 requests: too few to judge"
    requests(conn, 100, "checkout", 200, 1)  # 1 of 20: exactly 5 %, not above
    assert [a for a in evaluate(conn, 100) if a[1] == "error_rate"] == []
    requests(conn, 101, "checkout", 500, 1)  # 2 of 21
    assert [a for a in evaluate(conn, 101) if a[1] == "error_rate"] == [("opened", "error_rate", "")]
    assert [a for a in evaluate(conn, 107) if a[1] == "error_rate"] == [("closed", "error_rate", "")]


async def test_the_worker_tells_the_operator_by_email_and_webhook(settings: Settings, conn: psycopg.Connection[dict[str, Any]],
                                                                  operator: Any) -> None:
    with FakeServer() as slack:
        slack.route("POST", r"/hooks/brigade", lambda req, _: Reply(200, "ok"))
        wsettings = settings.model_copy(update={"alert_emails": "ops@brigade.test", "alert_webhook_url": f"{slack.url}/hooks/brigade"})
        # an event in the dead-letter queue
        conn.execute("select app.bury_event(app.emit('test.broken', null, '{}'), 'boom')")
        load_plugins([])
        job = registry.jobs["platform.alerts"]
        pool = await open_pool(wsettings.dsn, max_size=2)
        try:
            scheduler = Scheduler(Resources.build(pool, wsettings, "w1"), registry)
            assert await scheduler.run_claimed(job, datetime.now(timezone.utc).replace(second=0, microsecond=0))
        finally:
            await pool.close()
        [hook] = slack.calls("POST", r"/hooks/brigade")
        assert hook.json["alert"]["rule"] == "dead_letters" and hook.json["alert"]["action"] == "opened"
        assert "Outbox events in the dead-letter queue" in hook.json["text"]
    emails = [json.loads(line) for line in wsettings.outbox_file.read_text().splitlines()]
    assert [(e["to"], e["subject"]) for e in emails if e["kind"] == "email"] == [("ops@brigade.test", "[Brigade] alert: dead_letters")]

    # the operator lists and acknowledges it through admin; anyone else is refused
    from functions.app import create_app

    with ServerThread(create_app(settings)) as server:
        me = {"authorization": f"Bearer {auth.sign(operator, settings.jwt_secret)}"}
        listed = httpx.get(f"{server.url}/functions/v1/admin/alerts", headers=me).json()["alerts"]
        assert [(a["rule_key"], a["notifications"], a["acknowledged_at"]) for a in listed] == [("dead_letters", 1, None)]
        acked = httpx.post(f"{server.url}/functions/v1/admin/alerts/{listed[0]['id']}/ack", headers=me)
        assert acked.status_code == 200 and acked.json()["acknowledged_at"]
        assert httpx.post(f"{server.url}/functions/v1/admin/alerts/999999/ack", headers=me).status_code == 404
        from brigade.auth import Claims

        stranger = {"authorization": f"Bearer {auth.sign(Claims.user('00000000-0000-4000-8000-000000000001'), settings.jwt_secret)}"}
        assert httpx.get(f"{server.url}/functions/v1/admin/alerts", headers=stranger).status_code == 403
        assert httpx.get(f"{server.url}/functions/v1/admin/alerts?status=all", headers=me).json()["alerts"][0]["acknowledged_at"]


def test_a_venue_payment_failure_spike_is_its_own_alert(conn: psycopg.Connection[dict[str, Any]], factory: Any) -> None:
    import uuid

    tenant = factory.tenant("Spiky", {"ordering": True})
    b, (calm, spiky) = tenant.business_id, tenant.venues
    conn.execute("set session_replication_role = replica")
    orders: dict[Any, list[uuid.UUID]] = {calm: [], spiky: []}
    for n, venue in enumerate([calm] * 6 + [spiky] * 6):
        order = uuid.uuid4()
        conn.execute("insert into public.orders (business_id, id, venue_id, order_number, channel, fulfilment, currency, subtotal_cents, "
                     "total_cents, placed_at) values (%s, %s, %s, %s, 'web', 'pickup', 'USD', 500, 500, %s)", (b, order, venue, n + 1, at(0)))
        orders[venue].append(order)
    conn.execute("set session_replication_role = origin")

    def fail(order: uuid.UUID, minute: float) -> None:
        conn.execute("insert into public.stripe_events (id, type, payload, received_at) values (%s, 'payment_intent.payment_failed', %s, %s)",
                     (f"evt_{uuid.uuid4().hex}", json.dumps({"data": {"object": {"metadata": {"order_id": str(order), "business_id": str(b)}}}}),
                      at(minute)))

    def pay(venue: Any, order: uuid.UUID, minute: float) -> None:
        conn.execute("insert into public.payments (business_id, order_id, venue_id, payment_intent_id, amount_cents, currency, created_at) "
                     "values (%s, %s, %s, %s, 500, 'USD', %s)", (b, order, venue, f"pi_{order.hex}", at(minute)))

    for order in orders[calm][:5]:
        pay(calm, order, 1)
    fail(orders[calm][5], 1)            # calm: 1 failure in 6 attempts, under 30 %
    for order in orders[spiky][:2]:
        fail(order, 1)
    pay(spiky, orders[spiky][2], 1)     # spiky: 2 of 3 attempts failed, but too few attempts to judge
    spikes = lambda minute: [a for a in evaluate(conn, minute) if a[1] == "venue_payment_failures"]  # noqa: E731
    assert spikes(2) == []
    for order in orders[spiky][3:5]:
        fail(order, 2)                  # 4 of 5 failed
    assert spikes(3) == [("opened", "venue_payment_failures", f"{b}/{spiky}")]
    assert spikes(61) == [], "still inside the 60-minute window"
    assert spikes(63) == [("closed", "venue_payment_failures", f"{b}/{spiky}")]
