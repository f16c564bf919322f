"""A booking end to end over HTTP: hold, the order flow's checkout function with the seed's metadata,
the signed Stripe webhook, the worker's emails (each once), expiry through the delayed event with the
Checkout Session closed at Stripe, the automatic refund sent to Stripe, reminders, and the jobs."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo
from typing import Any

import httpx
import psycopg
import pytest

from brigade.auth import Claims
from tests.bookings_kit import ADULT, CHILD, Activity, booking_completed, build_activity, hold, one, pay, run_out_hold, seats, status
from tests.conftest import Api, Factory
from tests.fakes.http import Recorded, Reply
from tests.functions.test_payments import bearer
from tests.ordering_fixtures import Outside
from tests.ordering_kit import signed
from worker import main as worker_main
from worker.registry import Resources, load_plugins, registry
from worker.scheduler import Scheduler


@pytest.fixture
def act(factory: Factory, conn: psycopg.Connection[dict[str, Any]]) -> Activity:
    return build_activity(conn, factory.tenant("Escape Co", {"ordering": True}))


def drain(outside: Outside, conn: psycopg.Connection[dict[str, Any]]) -> None:
    """Run the worker until the queue is empty. The consumer's drain also waits for delayed events, so the
    holds' booking.expired events are delivered now: before a hold's time they change nothing."""
    make_due(conn, "booking.expired")
    asyncio.run(worker_main.run(outside.settings, drain=True))


def checkout(outside: Outside, body: dict[str, Any], headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(f"{outside.functions.url}/functions/v1/checkout", json=body, headers=headers or {}, timeout=30)


def webhook(outside: Outside, event: dict[str, Any]) -> dict[str, Any]:
    raw, headers = signed(event, outside.settings.stripe_webhook_secret)
    r = httpx.post(f"{outside.functions.url}/functions/v1/stripe-webhook", content=raw, headers=headers, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def emails_to(outside: Outside, to: str) -> list[dict[str, Any]]:
    return [e for e in outside.resend.emails() if to in e["to"]]


def make_due(conn: psycopg.Connection[dict[str, Any]], topic: str) -> None:
    """Move time for delayed events of a topic: deliver them now."""
    conn.execute("update pgmq.q_brigade_events set vt = now() where message ->> 'topic' = %s", (topic,))


def run_job(outside: Outside, name: str) -> bool:
    load_plugins(outside.settings.plugin_modules)

    async def go() -> bool:
        from brigade.db import open_pool
        pool = await open_pool(outside.settings.dsn, min_size=1, max_size=2, name="test-jobs")
        try:
            scheduler = Scheduler(Resources.build(pool, outside.settings, "test"), registry)
            return await scheduler.run_claimed(registry.jobs[name], datetime.now(timezone.utc))
        finally:
            await pool.close()
    return asyncio.run(go())


def test_hold_checkout_webhook_confirmation(api: Api, conn: psycopg.Connection[dict[str, Any]], act: Activity, outside: Outside) -> None:
    api.run(act.tenant.claims("manager"), "insert into public.booking_promo_codes (business_id, code, amount_off_cents) values (%s, 'TEN', 1000)",
            (act.tenant.business_id,))
    b = hold(api, act, special_requests="birthday", promo_code="TEN")
    body = {"booking_id": b["booking_id"], "access_token": b["access_token"]}
    r = checkout(outside, body)
    assert r.status_code == 200, r.text
    assert r.json()["booking_id"] == b["booking_id"] and not r.json()["reused"]
    again = checkout(outside, body)
    assert again.json()["session_id"] == r.json()["session_id"] and again.json()["reused"]
    [created] = outside.stripe.sessions()
    form = {k: v[0] for k, v in created.form.items()}
    meta = {k[len("metadata["):-1]: v for k, v in form.items() if k.startswith("metadata[")}
    starts = conn.execute("select to_char(starts_at at time zone v.time_zone, 'YYYY-MM-DD') as d, to_char(starts_at at time zone v.time_zone, 'HH24:MI') as t "
                          "from public.activity_sessions s join public.venues v on v.id = s.venue_id where s.id = %s",
                          (act.sessions[0],)).fetchone()  # the booking's date and time at the venue
    assert meta | {} == meta and {
        "kind": "booking", "booking_id": b["booking_id"], "business_id": b["business_id"], "organization_id": b["business_id"],
        "booking_number": b["booking_number"], "activity_id": str(act.activity_id), "venue_id": str(act.venue_id),
        "session_id": str(act.sessions[0]), "customer_name": "Grace Booker", "customer_email": "grace@example.test",
        "customer_phone": "+12125550142", "booking_date": starts["d"], "booking_time": starts["t"], "party_size": "3",  # type: ignore[index]
        "adult_count": "2", "child_count": "1", "promo_code": "TEN", "special_requests": "birthday", "platform_fee_percent": "3.00",  # the starter plan's 3 %
    }.items() <= meta.items()
    assert form["line_items[0][price_data][unit_amount]"] == str(2 * ADULT + CHILD - 1000) and form["line_items[0][quantity]"] == "1"
    assert created.headers["idempotency-key"] == f"checkout:booking:{b['booking_id']}:1"

    out = webhook(outside, booking_completed(b, r.json()["session_id"], "pi_flow"))
    assert out["outcome"] == "paid"
    s = status(conn, b)
    assert (s["status"], s["payment_status"]) == ("confirmed", "paid")
    customer = conn.execute("select email, full_name from public.customers where id = %s", (s["customer_id"],)).fetchone()
    assert customer == {"email": "grace@example.test", "full_name": "Grace Booker"}
    stats = conn.execute("select total_orders, total_spent_cents, segment from public.customer_venue_stats where customer_id = %s",
                         (s["customer_id"],)).fetchone()
    assert stats is not None and stats["total_spent_cents"] == b["total_cents"] and stats["total_orders"] == 1 and stats["segment"]
    assert checkout(outside, body).status_code == 409
    drain(outside, conn)
    drain(outside, conn)
    [mail] = emails_to(outside, "grace@example.test")
    assert b["booking_number"] in mail["subject"] and "Mystery Room" in mail["text"]
    assert one(conn, "select status from public.notification_log where template = 'booking_confirmation'") == "sent"
    # the confirmation carries the booking's receipt (issue 14), the same the receipt function serves
    import base64
    import io

    from pypdf import PdfReader

    [attachment] = mail["attachments"]
    mailed = " ".join(PdfReader(io.BytesIO(base64.b64decode(attachment["content"]))).pages[0].extract_text().split())
    assert f"Booking {b['booking_number']}" in mailed and "promo code (TEN)" in mailed and "Grace Booker" in mailed
    got = httpx.get(f"{outside.functions.url}/functions/v1/receipt", params={"booking_id": b["booking_id"], "token": b["access_token"],
                                                                             "format": "json"})
    assert got.status_code == 200 and got.json()["total_cents"] == b["total_cents"] == 2 * ADULT + CHILD - 1000
    assert [(line["quantity"], line["unit_price_cents"]) for line in got.json()["lines"]] == [(2, ADULT), (1, CHILD)]


def test_checkout_refusals_for_bookings(api: Api, conn: psycopg.Connection[dict[str, Any]], act: Activity, outside: Outside) -> None:
    b = hold(api, act)
    assert checkout(outside, {"booking_id": b["booking_id"], "access_token": "00000000-0000-4000-8000-000000000000"}).status_code == 404
    assert checkout(outside, {"booking_id": b["booking_id"], "order_id": b["booking_id"]}).status_code == 400
    assert checkout(outside, {}).status_code == 400
    r = checkout(outside, {"booking_id": b["booking_id"]}, bearer(outside, act.tenant.claims("staff")))
    assert r.status_code == 200  # staff open checkout for a phone booking without the token
    late = hold(api, act, 1)
    run_out_hold(conn, late)
    r = checkout(outside, {"booking_id": late["booking_id"], "access_token": late["access_token"]})
    assert r.status_code == 409 and r.json()["error"] == "hold_expired"
    conn.execute("update public.businesses set modules_json = modules_json || '{\"bookings\": false}' where id = %s", (act.tenant.business_id,))
    r = checkout(outside, {"booking_id": b["booking_id"], "access_token": b["access_token"]})
    assert r.status_code == 403
    assert len(outside.stripe.sessions()) == 1


def test_expiry_through_the_delayed_event_closes_the_stripe_session(api: Api, conn: psycopg.Connection[dict[str, Any]], act: Activity,
                                                                     outside: Outside) -> None:
    expired_sessions: list[str] = []

    def expire(req: Recorded, match: Any) -> Reply:
        expired_sessions.append(match.group(1))
        return Reply(200, {"id": match.group(1), "object": "checkout.session", "status": "expired"})

    outside.stripe.server.routes.insert(0, ("POST", __import__("re").compile(r"/v1/checkout/sessions/([^/]+)/expire"), expire))
    early = hold(api, act, 1)
    drain(outside, conn)  # its event delivered before the hold's time: nothing happens
    assert status(conn, early)["status"] == "pending_payment" and seats(conn, act.sessions[1]) == (3, 0)
    b = hold(api, act)
    session_id = checkout(outside, {"booking_id": b["booking_id"], "access_token": b["access_token"]}).json()["session_id"]
    run_out_hold(conn, b)
    drain(outside, conn)
    assert status(conn, b)["status"] == "expired" and seats(conn, act.sessions[0]) == (0, 0)
    assert expired_sessions == [session_id]
    # Stripe's own expiry event afterwards changes nothing
    out = webhook(outside, {"id": "evt_exp", "object": "event", "type": "checkout.session.expired", "created": 1, "livemode": False,
                            "data": {"object": {"id": session_id, "object": "checkout.session"}}})
    assert out["outcome"] == "session_expired" and seats(conn, act.sessions[0]) == (0, 0)


def test_a_late_payment_on_a_full_session_is_refunded_at_stripe(api: Api, conn: psycopg.Connection[dict[str, Any]], factory: Factory,
                                                                outside: Outside) -> None:
    act = build_activity(conn, factory.tenant("Tiny Rooms", {"ordering": True}), capacity=3)
    late = hold(api, act)
    run_out_hold(conn, late)
    drain(outside, conn)
    assert pay(conn, hold(api, act)) == "paid"  # someone else takes the seats
    out = webhook(outside, booking_completed(late, "cs_late", "pi_late"))
    assert out["outcome"] == "paid_late_refunding"
    drain(outside, conn)
    drain(outside, conn)
    refunds = outside.stripe.server.calls("POST", r"/v1/refunds")
    assert len(refunds) == 1
    form = {k: v[0] for k, v in refunds[0].form.items()}
    assert (form["payment_intent"], form["amount"], form["metadata[booking_id]"]) == ("pi_late", str(late["total_cents"]), late["booking_id"])
    assert refunds[0].headers["idempotency-key"].startswith(f"refund:booking:{late['booking_id']}:")
    s = status(conn, late)
    assert (s["status"], s["payment_status"], s["refunded_cents"]) == ("expired", "refunded", late["total_cents"])
    assert seats(conn, act.sessions[0]) == (0, 3)
    [mail] = [m for m in emails_to(outside, "grace@example.test") if m["subject"].startswith("Payment refunded")]
    assert late["booking_number"] in mail["subject"] and f"{late['total_cents'] / 100:.2f}" in mail["text"]


def test_cancel_reschedule_and_reminder_emails_go_once(api: Api, conn: psycopg.Connection[dict[str, Any]], act: Activity, outside: Outside) -> None:
    manager, staff = act.tenant.claims("manager"), act.tenant.claims("staff")
    moved = hold(api, act, customer={"name": "Mo Ved", "email": "mo@example.test"})
    cancelled = hold(api, act, customer={"name": "Cal Led", "email": "cal@example.test"})
    reminded = hold(api, act, 2, customer={"name": "Rem Ind", "email": "rem@example.test"})
    for b in (moved, cancelled, reminded):
        assert pay(conn, b) == "paid"
    api.run(staff, "select public.reschedule_booking(%s, %s)", (moved["booking_id"], act.sessions[1]))
    api.run(manager, "select public.cancel_booking(%s, 'flooded', 1500)", (cancelled["booking_id"],))
    conn.execute("update public.activity_sessions set starts_at = now() + interval '20 hours', ends_at = now() + interval '21 hours' where id = %s",
                 (act.sessions[2],))
    conn.execute("update public.bookings set confirmed_at = now() - interval '3 days' where id = %s", (reminded["booking_id"],))
    assert run_job(outside, "bookings.reminders")
    assert one(conn, "select app.queue_booking_reminders()") == 0  # queued once per booking and session
    drain(outside, conn)
    drain(outside, conn)
    [moved_mail] = [m for m in emails_to(outside, "mo@example.test") if m["subject"].startswith("Booking moved")]
    [cancel_mail] = [m for m in emails_to(outside, "cal@example.test") if m["subject"].startswith("Booking cancelled")]
    assert "15.00" in cancel_mail["text"] and "refund" in cancel_mail["text"]
    [reminder] = [m for m in emails_to(outside, "rem@example.test") if m["subject"].startswith("Reminder")]
    assert reminded["booking_number"] in reminder["text"]
    # the cancellation's refund went to Stripe and came back applied
    assert len(outside.stripe.server.calls("POST", r"/v1/refunds")) == 1
    s = status(conn, cancelled)
    assert (s["status"], s["payment_status"], s["refunded_cents"]) == ("cancelled", "partially_refunded", 1500)


@pytest.mark.clock
def test_jobs_generate_sessions_sweep_holds_and_complete(api: Api, conn: psycopg.Connection[dict[str, Any]], act: Activity, outside: Outside) -> None:
    conn.execute("insert into public.activity_schedules (business_id, activity_id, weekday, start_time, capacity) "
                 "select %s, %s, d, '10:00', 4 from generate_series(0, 6) d", (act.tenant.business_id, act.activity_id))
    zone = ZoneInfo(one(conn, "select time_zone from public.venues where id = %s", (act.venue_id,)))
    existing = {r["starts_at"] for r in conn.execute("select starts_at from public.activity_sessions where activity_id = %s",
                                                       (act.activity_id,))}
    before = datetime.now(timezone.utc)
    assert run_job(outside, "bookings.generate_sessions")
    after = datetime.now(timezone.utc)
    today = before.astimezone(zone).date()
    slots = {datetime.combine(today + timedelta(days=n), time(10), zone) for n in range(28)}
    # 28 days ahead in the venue's zone from today's 10:00 if still to come; a slot the activity already has
    # (the kit's sessions start on the hour, so at 10:xx they fall on the schedule's 10:00) is left alone
    made = {r["starts_at"] for r in conn.execute("select starts_at from public.activity_sessions where schedule_id is not null")}
    undecided = {s for s in slots if before <= s <= after}  # only when the job runs across 10:00:00 itself
    assert made - undecided == {s for s in slots if s > after} - existing
    b = hold(api, act)
    run_out_hold(conn, b)
    assert run_job(outside, "bookings.expire_holds")
    assert status(conn, b)["status"] == "expired"
    done = hold(api, act, 1)
    assert pay(conn, done) == "paid"
    api.run(act.tenant.claims("staff"), "select public.set_booking_status(%s, 'checked_in')", (done["booking_id"],))
    conn.execute("update public.activity_sessions set starts_at = now() - interval '2 hours', ends_at = now() - interval '1 hour' where id = %s",
                 (act.sessions[1],))
    assert run_job(outside, "bookings.complete")
    assert status(conn, done)["status"] == "completed" and seats(conn, act.sessions[1]) == (0, 0)


def test_local_checkout_page_pays_a_booking(api: Api, conn: psycopg.Connection[dict[str, Any]], act: Activity, settings: Any) -> None:
    from functions.app import create_app
    from tests.conftest import ServerThread
    b = hold(api, act)
    with ServerThread(create_app(settings)) as server:
        r = httpx.post(f"{server.url}/functions/v1/checkout", json={"booking_id": b["booking_id"], "access_token": b["access_token"]}, timeout=30)
        assert r.status_code == 200, r.text
        session_id = r.json()["session_id"]
        page = httpx.get(f"{server.url}/functions/v1/checkout/local/{session_id}", timeout=30)
        assert page.status_code == 200 and b["booking_number"] in page.text
        paid = httpx.post(f"{server.url}/functions/v1/checkout/local/{session_id}/pay", timeout=30).json()
        assert paid["outcome"] == "paid" and paid["booking_id"] == b["booking_id"]
    assert status(conn, b)["status"] == "confirmed"
    assert json.loads(json.dumps(api.run(Claims.anon(), "select public.get_booking(%s, %s) as r", (b["booking_id"], b["access_token"]))[0]["r"]))["status"] == "confirmed"
