"""`brigade demo --bookings`: one booking on the demo business's latte-art class, driven through the
running local stack: availability, a hold, checkout, the signed webhook, the confirmation email, a
check-in, and a second hold that runs out and frees its seats. Start the stack first (`make run`)."""

from __future__ import annotations

import json
import sys
import uuid

import httpx
import psycopg
import stripe
from psycopg.rows import dict_row

from brigade.auth import Claims
from brigade.demo import STAFF, as_caller, step, wait_for
from brigade.settings import Settings
from brigade.stripe_events import booking_session_completed

CLASS = "00000000-0000-4000-8000-0000000c0001"


def run(settings: Settings) -> int:
    base = settings.functions_url
    try:
        httpx.get(f"{base}/health", timeout=3).raise_for_status()
    except httpx.HTTPError:
        print(f"Brigade is not answering at {base}: start it with `make run` first.", file=sys.stderr)
        return 2
    with psycopg.connect(settings.dsn, row_factory=dict_row, autocommit=True) as db:
        step("The widget shows the class's sessions (anon, public.available_sessions)")
        with as_caller(settings.dsn, Claims.anon()) as conn:
            sessions = conn.execute("select * from public.available_sessions(%s) limit 3", (CLASS,)).fetchall()
        if not sessions:
            print("no sessions: run the worker once (it generates them) or `select app.generate_sessions(null, 28)`", file=sys.stderr)
            return 2
        for s in sessions:
            print(f"{s['starts_at']:%a %d %b %H:%M %Z}: {s['seats_left']} of {s['capacity']} seats left")
        session = sessions[-1]

        step("A guest holds seats for 2 adults and a child (public.hold_booking, 10-minute hold)")
        payload = {"session_id": str(session["session_id"]), "party": {"adult": 2, "child": 1}, "promo_code": "WELCOME10",
                   "customer": {"name": "Demo Booker", "email": "booker@demo-cafe.test", "phone": "+15555550177"}}
        with as_caller(settings.dsn, Claims.anon()) as conn:
            booking = conn.execute("select public.hold_booking(%s) as r", (json.dumps(payload),)).fetchone()["r"]  # type: ignore[index]
        print(f"{booking['booking_number']}: {booking['total_cents'] / 100:.2f} {booking['currency']} "
              f"(discount {booking['discount_cents'] / 100:.2f}), held until {booking['hold_expires_at']}")

        step("Checkout (POST /functions/v1/checkout with booking_id)")
        checkout = httpx.post(f"{base}/checkout", json={"booking_id": booking["booking_id"], "access_token": booking["access_token"]},
                              timeout=30).json()
        print(f"session {checkout['session_id']} -> {checkout['url']}")

        step("Stripe calls back, signed (POST /functions/v1/stripe-webhook)")
        event = booking_session_completed(session_id=checkout["session_id"], payment_intent=f"pi_demo_{uuid.uuid4().hex[:16]}",
                                          booking_id=booking["booking_id"], business_id=booking["business_id"],
                                          amount_cents=booking["total_cents"], event_id=f"evt_demo_{uuid.uuid4().hex[:16]}")
        body = json.dumps(event)
        header = stripe.WebhookSignature.generate_signature_header(body, settings.stripe_webhook_secret)
        for attempt in ("first delivery", "Stripe retries it"):
            r = httpx.post(f"{base}/stripe-webhook", content=body, headers={"stripe-signature": header}, timeout=30)
            print(f"{attempt}: {r.status_code} {r.json()['outcome']}")
        seats = db.execute("select held_seats, booked_seats, capacity from public.activity_sessions where id = %s",
                           (session["session_id"],)).fetchone()
        print("session seats:", dict(seats or {}))

        step("The worker emails the confirmation (log provider: see the other terminal)")
        wait_for(db, "select 1 from public.notification_log where event_key = %s and status = 'sent'",
                 (f"booking.confirmed:{booking['booking_id']}",))
        print("confirmation sent to booker@demo-cafe.test")

        step("Staff check the party in")
        with as_caller(settings.dsn, Claims.user(STAFF, email="staff@demo-cafe.test")) as conn:
            print(conn.execute("select public.set_booking_status(%s, 'checked_in') as r", (booking["booking_id"],)).fetchone()["r"])  # type: ignore[index]

        step("Another hold runs out: its seats come back once (time moved, not waited for)")
        other = dict(payload, customer={"name": "Slow Payer", "email": "slow@demo-cafe.test"}, promo_code=None)
        with as_caller(settings.dsn, Claims.anon()) as conn:
            slow = conn.execute("select public.hold_booking(%s) as r", (json.dumps(other),)).fetchone()["r"]  # type: ignore[index]
        db.execute("update public.bookings set hold_expires_at = now() - interval '1 second' where id = %s", (slow["booking_id"],))
        db.execute("update pgmq.q_brigade_events set vt = now() where message ->> 'topic' = 'booking.expired' "
                   "and message -> 'payload' ->> 'booking_id' = %s", (slow["booking_id"],))
        wait_for(db, "select 1 from public.bookings where id = %s and status = 'expired'", (slow["booking_id"],))
        seats = db.execute("select held_seats, booked_seats from public.activity_sessions where id = %s", (session["session_id"],)).fetchone()
        print(f"{slow['booking_number']} expired; session seats:", dict(seats or {}))
    return 0
