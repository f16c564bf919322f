"""Bookings rows for the RLS walk: an activity per venue with a schedule, a blackout, a session, a
promo code, and a paid booking at each venue (one cancelled with a partial refund), so payments,
refunds and the status history hold booking rows too."""

from __future__ import annotations

import json
import uuid

from brigade.auth import Claims
from tests.db.tenant_rows import TenantRows

ANON_READABLE = {"activities": "app.activity_is_public(business_id, venue_id, is_published)"}


def seed(ctx: TenantRows) -> None:
    conn, t = ctx.conn, ctx.tenant
    conn.execute("select app.set_business_module(%s, 'bookings', true)", (t.business_id,))
    conn.execute("insert into public.booking_promo_codes (business_id, code, percent_off) values (%s, 'WALK10', 10)", (t.business_id,))
    tiers = json.dumps([{"key": "adult", "name": "Adult", "price_cents": 2500}])
    for n, venue in enumerate(t.venues):
        activity = conn.execute("insert into public.activities (business_id, venue_id, name, duration_minutes, price_tiers, is_published) "
                                "values (%s, %s, %s, 45, %s, true) returning id", (t.business_id, venue, f"Room {n}", tiers)).fetchone()["id"]  # type: ignore[index]
        conn.execute("insert into public.activity_schedules (business_id, activity_id, weekday, start_time, capacity) values (%s, %s, 3, '19:00', 8)",
                     (t.business_id, activity))
        conn.execute("insert into public.activity_blackouts (business_id, venue_id, activity_id, starts_on, ends_on) values (%s, %s, %s, '2030-12-24', '2030-12-26')",
                     (t.business_id, venue, activity))
        session = conn.execute("insert into public.activity_sessions (business_id, activity_id, venue_id, starts_at, ends_at, capacity) "
                               "values (%s, %s, %s, now() + interval '3 days', now() + interval '3 days 45 minutes', 8) returning id",
                               (t.business_id, activity, venue)).fetchone()["id"]  # type: ignore[index]
        booker = Claims.anon() if n == 0 else t.claims("owner")  # the back venue is unpublished: staff book there by phone
        booking = ctx.api.run(booker, "select public.hold_booking(%s) as r", (json.dumps({
            "session_id": str(session), "party": {"adult": 2}, "promo_code": "walk10", "source": "widget" if n == 0 else "phone",
            "customer": {"name": f"Walker {n}", "email": f"walker{n}-{uuid.uuid4().hex[:6]}@example.test"}}),))[0]["r"]
        event = {"id": f"evt_bk_{uuid.uuid4().hex}", "object": "event", "type": "checkout.session.completed", "created": 1, "livemode": False,
                 "data": {"object": {"id": f"cs_bk_{uuid.uuid4().hex[:12]}", "object": "checkout.session", "payment_status": "paid",
                                     "amount_total": booking["total_cents"], "payment_intent": f"pi_bk_{uuid.uuid4().hex[:12]}",
                                     "metadata": {"kind": "booking", "booking_id": booking["booking_id"], "business_id": booking["business_id"]}}}}
        outcome = conn.execute("select app.apply_stripe_event(%s) as o", (json.dumps(event),)).fetchone()
        assert outcome == {"o": "paid"}
        if n == 0:
            ctx.api.run(t.claims("owner"), "select public.cancel_booking(%s, 'walk', 500)", (booking["booking_id"],))
