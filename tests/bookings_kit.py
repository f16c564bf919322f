"""Shared by the bookings tests: an activity with price tiers and sessions, hold payloads, and the
ways a booking reaches each status of the seed's table (through the real paths)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import psycopg

from brigade.auth import Claims
from tests.conftest import Api, Tenant
from tests.ordering_kit import stripe_event

ADULT, CHILD = 3000, 1500


@dataclass
class Activity:
    tenant: Tenant
    activity_id: uuid.UUID
    venue_id: uuid.UUID
    sessions: list[uuid.UUID] = field(default_factory=list)


def one(conn: psycopg.Connection[dict[str, Any]], sql: str, params: Any = None) -> Any:
    row = conn.execute(sql, params).fetchone()
    assert row is not None
    return next(iter(row.values()))


def build_activity(conn: psycopg.Connection[dict[str, Any]], tenant: Tenant, *, capacity: int = 10, sessions: int = 3,
                   max_party: int = 10, name: str = "Mystery Room") -> Activity:
    """Bookings (and CRM) on; a published activity of 60 minutes, adult 30.00 / child 15.00, at the
    first venue; sessions starting in 2, 3, 4... days."""
    b, venue = tenant.business_id, tenant.venues[0]
    conn.execute("update public.businesses set modules_json = modules_json || '{\"bookings\": true, \"crm\": true}' where id = %s", (b,))
    tiers = [{"key": "adult", "name": "Adult", "price_cents": ADULT}, {"key": "child", "name": "Child", "price_cents": CHILD}]
    activity_id = one(conn, "insert into public.activities (business_id, venue_id, name, duration_minutes, price_tiers, min_party, max_party, "
                            "is_published) values (%s, %s, %s, 60, %s, 1, %s, true) returning id", (b, venue, name, json.dumps(tiers), max_party))
    act = Activity(tenant, activity_id, venue)
    for n in range(sessions):
        act.sessions.append(one(conn, "insert into public.activity_sessions (business_id, activity_id, venue_id, starts_at, ends_at, capacity) "
                                      "values (%s, %s, %s, date_trunc('hour', now()) + make_interval(days => %s), "
                                      "date_trunc('hour', now()) + make_interval(days => %s, hours => 1), %s) returning id",
                                (b, activity_id, venue, n + 2, n + 2, capacity)))
    return act


def hold_payload(act: Activity, session: int = 0, **overrides: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {"session_id": str(act.sessions[session]), "party": {"adult": 2, "child": 1},
                               "customer": {"name": "Grace Booker", "email": "grace@example.test", "phone": "+1 212 555 0142"}}
    payload.update(overrides)
    return payload


def hold(api: Api, act: Activity, session: int = 0, claims: Claims | None = None, **overrides: Any) -> dict[str, Any]:
    return api.run(claims or Claims.anon(), "select public.hold_booking(%s) as r", (json.dumps(hold_payload(act, session, **overrides)),))[0]["r"]


def booking_completed(booking: dict[str, Any], session_id: str, payment_intent: str, *, amount: int | None = None,
                      event_type: str = "checkout.session.completed", payment_status: str = "paid") -> dict[str, Any]:
    return stripe_event(event_type, {
        "id": session_id, "object": "checkout.session", "payment_status": payment_status, "status": "complete",
        "amount_total": booking["total_cents"] if amount is None else amount, "currency": "usd", "payment_intent": payment_intent,
        "metadata": {"kind": "booking", "booking_id": booking["booking_id"], "business_id": booking["business_id"]}})


def apply(conn: psycopg.Connection[dict[str, Any]], event: dict[str, Any]) -> str:
    return one(conn, "select app.apply_stripe_event(%s)", (json.dumps(event),))


def pay(conn: psycopg.Connection[dict[str, Any]], booking: dict[str, Any]) -> str:
    n = uuid.uuid4().hex[:10]
    return apply(conn, booking_completed(booking, f"cs_{n}", f"pi_{n}"))


def status(conn: psycopg.Connection[dict[str, Any]], booking: dict[str, Any]) -> dict[str, Any]:
    row = conn.execute("select status::text, payment_status::text, refunded_cents, customer_id from public.bookings where id = %s",
                       (booking["booking_id"],)).fetchone()
    assert row is not None
    return row


def seats(conn: psycopg.Connection[dict[str, Any]], session_id: Any) -> tuple[int, int]:
    row = conn.execute("select held_seats, booked_seats from public.activity_sessions where id = %s", (session_id,)).fetchone()
    assert row is not None
    return row["held_seats"], row["booked_seats"]


def run_out_hold(conn: psycopg.Connection[dict[str, Any]], booking: dict[str, Any]) -> None:
    """Move time for one hold: its expiry is now in the past (no sleeping)."""
    conn.execute("update public.bookings set hold_expires_at = now() - interval '1 second' where id = %s", (booking["booking_id"],))


def start_session(conn: psycopg.Connection[dict[str, Any]], session_id: Any) -> None:
    """Move time for one session: it started an hour ago."""
    conn.execute("update public.activity_sessions set starts_at = now() - interval '1 hour', ends_at = now() + interval '1 minute' "
                 "where id = %s", (session_id,))


def booking_in(status_name: str, conn: psycopg.Connection[dict[str, Any]], api: Api, act: Activity, session: int = 0) -> dict[str, Any]:
    """A booking brought to a status of the seed's table through the real paths."""
    b = hold(api, act, session)
    manager, staff = act.tenant.claims("manager"), act.tenant.claims("staff")
    if status_name == "pending_payment":
        return b
    if status_name == "expired":
        run_out_hold(conn, b)
        assert one(conn, "select app.expire_booking(%s, %s)", (b["business_id"], b["booking_id"])) is True
        return b
    if status_name == "payment_failed":
        event = stripe_event("payment_intent.payment_failed", {"id": "pi_fail_" + b["booking_id"][:8], "object": "payment_intent",
                                                               "amount": b["total_cents"], "amount_received": 0,
                                                               "metadata": {"kind": "booking", "booking_id": b["booking_id"],
                                                                            "business_id": b["business_id"]}})
        assert apply(conn, event) == "failed"
        return b
    assert pay(conn, b) == "paid"
    if status_name == "confirmed":
        return b
    if status_name == "cancelled":
        api.run(manager, "select public.cancel_booking(%s, 'closed for repairs')", (b["booking_id"],))
        return b
    if status_name == "no_show":
        start_session(conn, act.sessions[session])
        api.run(staff, "select public.set_booking_status(%s, 'no_show')", (b["booking_id"],))
        return b
    api.run(staff, "select public.set_booking_status(%s, 'checked_in')", (b["booking_id"],))
    if status_name == "checked_in":
        return b
    assert status_name == "completed"
    api.run(staff, "select public.set_booking_status(%s, 'completed')", (b["booking_id"],))
    return b
