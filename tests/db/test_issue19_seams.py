"""Issue 19's seams in the database: each test is named after the item it closes."""

from __future__ import annotations

from typing import Any

import psycopg

from tests.bookings_kit import build_activity, hold, pay
from tests.conftest import Api, Factory

Conn = psycopg.Connection[dict[str, Any]]


def test_item_4_bookings_earn_points_reversed_on_refund_and_count_in_total_bookings(api: Api, conn: Conn, factory: Factory) -> None:
    tenant = factory.tenant("Escape Points", {"bookings": True, "loyalty": True})
    b = tenant.business_id
    conn.execute("insert into public.loyalty_programs (business_id, points_per_currency_unit, points_per_visit) values (%s, 2, 5) "
                 "on conflict (business_id) do update set points_per_currency_unit = 2, points_per_visit = 5", (b,))
    act = build_activity(conn, tenant)
    booking = hold(api, act)
    assert pay(conn, booking) == "paid"
    customer = conn.execute("select customer_id from public.bookings where id = %s", (booking["booking_id"],)).fetchone()["customer_id"]  # type: ignore[index]
    earned = (booking["total_cents"] // 100) * 2 + 5
    balance = "select balance from public.loyalty_accounts where business_id = %s and customer_id = %s"
    assert conn.execute(balance, (b, customer)).fetchone() == {"balance": earned}
    stats = "select total_orders, total_bookings from public.customer_venue_stats where business_id = %s and customer_id = %s"
    assert conn.execute(stats, (b, customer)).fetchone() == {"total_orders": 1, "total_bookings": 1}
    # a replayed payment (the same payment intent) earns nothing more
    first_pi = conn.execute("select payment_intent_id from public.bookings where id = %s", (booking["booking_id"],)).fetchone()["payment_intent_id"]  # type: ignore[index]
    conn.execute("select app.mark_booking_paid(%s, %s, %s, null, %s, 'evt_again')", (b, booking["booking_id"], first_pi, booking["total_cents"]))
    assert conn.execute(balance, (b, customer)).fetchone() == {"balance": earned}

    # cancelled with a partial refund, which succeeds at Stripe: points back in proportion
    part = booking["total_cents"] // 4
    r = api.run(tenant.claims("manager"), "select public.cancel_booking(%s, 'rain', %s) as r", (booking["booking_id"], part))[0]["r"]
    refund_id = conn.execute("select id from public.refunds where booking_id = %s", (booking["booking_id"],)).fetchone()["id"]  # type: ignore[index]
    conn.execute("select app.record_booking_refund(%s, %s, %s, 're_pts19', 'succeeded', %s, null)", (b, booking["booking_id"], refund_id, part))
    assert r["refund_cents"] == part
    assert conn.execute(balance, (b, customer)).fetchone() == {"balance": earned - earned * part // booking["total_cents"]}
    assert conn.execute(stats, (b, customer)).fetchone() == {"total_orders": 1, "total_bookings": 1}

    # a second booking refunded in full (in Stripe's dashboard): its points all go, and it leaves the count
    second = hold(api, act, 1)
    assert pay(conn, second) == "paid"
    assert conn.execute(stats, (b, customer)).fetchone()["total_bookings"] == 2  # type: ignore[index]
    pi = conn.execute("select payment_intent_id from public.bookings where id = %s", (second["booking_id"],)).fetchone()["payment_intent_id"]  # type: ignore[index]
    before = conn.execute(balance, (b, customer)).fetchone()["balance"]  # type: ignore[index]
    conn.execute("select app.record_booking_refund(%s, %s, null, 're_full19', 'succeeded', %s, null)", (b, second["booking_id"], second["total_cents"]))
    assert pi is not None
    assert conn.execute(balance, (b, customer)).fetchone() == {"balance": before - earned}
    assert conn.execute(stats, (b, customer)).fetchone() == {"total_orders": 1, "total_bookings": 1}
    kinds = conn.execute("select reason, count(*) as n from public.loyalty_transactions where business_id = %s and booking_id is not null "
                         "group by reason order by reason", (b,)).fetchall()
    assert kinds == [{"reason": "booking", "n": 2}, {"reason": "refund", "n": 2}]


def test_item_7_get_menu_returns_allergens_and_ratings(api: Api, conn: Conn, factory: Factory) -> None:
    import json

    from brigade.auth import Claims
    from tests.ordering_kit import build_menu, order_payload, session_completed

    tenant = factory.tenant("Menu Facts", {"ordering": True})
    menu = build_menu(conn, tenant)
    conn.execute("update public.products set allergens = '{gluten,dairy}' where id = %s", (menu.products["croissant"],))
    order = api.run(Claims.anon(), "select public.place_order(%s) as r", (json.dumps(order_payload(menu)),))[0]["r"]
    conn.execute("select app.apply_stripe_event(%s)", (json.dumps(session_completed(order, "cs_menu19", "pi_menu19")),))
    review = {"rating": 4, "products": [{"product_id": str(menu.products["croissant"]), "rating": 4}]}
    api.run(Claims.anon(), "select public.submit_review(%s, %s, %s)", (order["order_id"], order["access_token"], json.dumps(review)))
    conn.execute("update public.product_reviews set status = 'approved' where product_id = %s", (menu.products["croissant"],))
    slugs = conn.execute("select b.slug as b, v.slug as v from public.businesses b join public.venues v on v.business_id = b.id "
                         "where v.id = %s", (menu.venue_id,)).fetchone()
    assert slugs is not None
    got = api.run(Claims.anon(), "select public.get_menu(%s, %s) as m", (slugs["b"], slugs["v"]))[0]["m"]
    products = {p["name"]: p for p in got["products"]}
    assert products["Croissant"]["allergens"] == ["gluten", "dairy"]
    assert (products["Croissant"]["rating_count"], float(products["Croissant"]["rating_average"])) == (1, 4.0)
    assert (products["Latte"]["allergens"], products["Latte"]["rating_count"], products["Latte"]["rating_average"]) == ([], 0, None)


def _lock_waiters(conn: Conn) -> int:
    row = conn.execute("select count(*) as n from pg_stat_activity where datname = current_database() "
                       "and wait_event_type = 'Lock' and query ilike '%%reschedule_booking%%'").fetchone()
    return int(row["n"]) if row else 0


def _wait_for_waiters(conn: Conn, n: int) -> None:
    """Until n reschedules wait on a row lock (polling the server's own view, no sleep)."""
    for _ in range(200_000):
        if _lock_waiters(conn) >= n:
            return
    raise AssertionError(f"{n} reschedules never waited on a lock")


def test_item_12_two_reschedules_in_opposite_directions_never_deadlock(api: Api, conn: Conn, factory: Factory, db_dsn: str) -> None:
    import threading

    from tests.bookings_kit import booking_in

    tenant = factory.tenant("Escape Locks", {"bookings": True})
    act = build_activity(conn, tenant)
    s1, s2 = act.sessions[0], act.sessions[1]
    one, two = booking_in("confirmed", conn, api, act, 0), booking_in("confirmed", conn, api, act, 1)
    staff = tenant.claims("staff")
    errors: list[BaseException] = []

    def move(booking: dict[str, Any], target: Any) -> None:
        try:
            api.run(staff, "select public.reschedule_booking(%s, %s)", (booking["booking_id"], target))
        except BaseException as exc:  # noqa: BLE001 — reported below
            errors.append(exc)

    # a reader holds a share lock on s1, so the first reschedule (s1 -> s2) queues behind it while the
    # second (s2 -> s1) starts: the interleaving in which locking "the session I leave first" deadlocks
    with psycopg.connect(db_dsn, autocommit=False) as reader:
        reader.execute("select 1 from public.activity_sessions where id = %s for share", (s1,))
        a = threading.Thread(target=move, args=(one, s2))
        a.start()
        _wait_for_waiters(conn, 1)
        b = threading.Thread(target=move, args=(two, s1))
        b.start()
        _wait_for_waiters(conn, 2)
        reader.rollback()
    a.join(30)
    b.join(30)
    assert errors == [], [getattr(e, "sqlstate", e) for e in errors]
    where = conn.execute("select id::text, session_id from public.bookings where id = any(%s::uuid[]) order by booking_number",
                         ([one["booking_id"], two["booking_id"]],)).fetchall()
    assert {w["id"]: w["session_id"] for w in where} == {one["booking_id"]: s2, two["booking_id"]: s1}
    seats = conn.execute("select id, booked_seats from public.activity_sessions where id in (%s, %s)", (s1, s2)).fetchall()
    assert {r["id"]: r["booked_seats"] for r in seats} == {s1: 3, s2: 3}


def test_item_12_a_partial_refund_keeps_the_booking(api: Api, conn: Conn, factory: Factory) -> None:
    import pytest

    from tests.bookings_kit import booking_in

    tenant = factory.tenant("Escape Partial", {"bookings": True})
    act = build_activity(conn, tenant)
    booking = booking_in("confirmed", conn, api, act)
    manager = tenant.claims("manager")
    with pytest.raises(psycopg.Error) as exc:
        api.run(manager, "select public.refund_booking(%s, %s)", (booking["booking_id"], booking["total_cents"]))
    assert exc.value.sqlstate == "BR608", "everything left is a cancellation, not a partial refund"
    with pytest.raises(psycopg.Error) as exc:
        api.run(tenant.claims("staff"), "select public.refund_booking(%s, 500)", (booking["booking_id"],))
    assert exc.value.sqlstate == "PT404", "staff do not refund"
    r = api.run(manager, "select public.refund_booking(%s, 500, 'prop broke') as r", (booking["booking_id"],))[0]["r"]
    assert (r["status"], r["refund_cents"]) == ("confirmed", 500)
    conn.execute("select app.record_booking_refund(%s, %s, %s, 're_part19', 'succeeded', 500, null)",
                 (tenant.business_id, booking["booking_id"], r["refund_id"]))
    after = conn.execute("select status, payment_status, refunded_cents from public.bookings where id = %s", (booking["booking_id"],)).fetchone()
    assert after == {"status": "confirmed", "payment_status": "partially_refunded", "refunded_cents": 500}
    assert conn.execute("select booked_seats from public.activity_sessions where id = %s", (act.sessions[0],)).fetchone() == {"booked_seats": 3}


def test_item_12_a_second_payment_on_a_paid_booking_is_refunded(api: Api, conn: Conn, factory: Factory) -> None:
    from brigade import queries

    tenant = factory.tenant("Escape Twice", {"bookings": True})
    b = tenant.business_id
    booking = hold(api, build_activity(conn, tenant))
    assert pay(conn, booking) == "paid"
    first = conn.execute("select payment_intent_id from public.bookings where id = %s", (booking["booking_id"],)).fetchone()["payment_intent_id"]  # type: ignore[index]
    assert pay(conn, booking) == "already_paid"  # a second Checkout Session, paid too
    assert pay(conn, booking) == "already_paid"  # and a third
    refunds = conn.execute("select id, amount_cents, payment_intent_id, status from public.refunds where booking_id = %s order by created_at",
                           (booking["booking_id"],)).fetchall()
    assert len(refunds) == 2 and all(r["amount_cents"] == booking["total_cents"] and r["status"] == "pending" for r in refunds)
    assert first not in {r["payment_intent_id"] for r in refunds}
    # the worker sends each on its own payment intent
    row = conn.execute(queries.get("booking_refund_to_send"), {"business_id": b, "refund_id": refunds[0]["id"]}).fetchone()
    assert row is not None and row["payment_intent_id"] == refunds[0]["payment_intent_id"]
    for n, r in enumerate(refunds):
        conn.execute("select app.record_booking_refund(%s, %s, %s, %s, 'succeeded', %s, null)",
                     (b, booking["booking_id"], r["id"], f"re_dup19_{n}", r["amount_cents"]))
    after = conn.execute("select status, payment_status, refunded_cents, payment_intent_id from public.bookings where id = %s",
                         (booking["booking_id"],)).fetchone()
    assert after == {"status": "confirmed", "payment_status": "paid", "refunded_cents": 0, "payment_intent_id": first}
    queued = conn.execute("select count(*) as n from pgmq.q_brigade_events where message ->> 'topic' = 'booking.refund_requested'").fetchone()
    assert queued == {"n": 2}


def test_item_6_unsubscribe_tokens_have_their_own_rotating_secret(conn: Conn, factory: Factory) -> None:
    import hashlib
    import hmac

    import pytest

    tenant = factory.tenant("Secrets", {"crm": True})
    b = tenant.business_id
    c = conn.execute("insert into public.customers (business_id, full_name, email) values (%s, 'Una', 'una@example.test') returning id",
                     (b,)).fetchone()["id"]  # type: ignore[index]
    message = f"{b}:{c}:EMAIL_MARKETING".encode()
    pepper = bytes(conn.execute("select value from app.secrets where name = 'pickup_code_pepper'").fetchone()["value"])  # type: ignore[index]

    def token() -> str:
        return conn.execute("select app.unsubscribe_token(%s, %s, 'EMAIL_MARKETING') as t", (b, c)).fetchone()["t"]  # type: ignore[index]

    def unsubscribe(t: str) -> str | None:
        try:
            conn.execute("select app.unsubscribe(%s, %s, 'EMAIL_MARKETING', %s, null, null)", (b, c, t))
        except psycopg.Error as exc:
            return exc.sqlstate
        return None

    current = token()
    assert current.startswith("v2.")
    assert current.split(".", 1)[1] != hmac.new(pepper, message, hashlib.sha256).hexdigest(), "not the pickup-code pepper"
    # a new pickup-code pepper does not touch unsubscribe links
    conn.execute("update app.secrets set value = extensions.gen_random_bytes(32) where name = 'pickup_code_pepper'")
    assert token() == current and unsubscribe(current) is None

    # rotation: new links use v3, links already sent (v2, and pre-0077 unversioned ones) keep working in the grace period.
    # The unversioned links' 90 days run from when 0077 was applied: the template's migration, not this test's
    # instant (a run with BRIGADE_TEST_NOW a year ahead is a deployment migrated a year ago), so start them now.
    conn.execute("update app.signing_keys set valid_until = now() + interval '90 days' where purpose = 'unsubscribe' and version = 1")
    legacy = hmac.new(pepper, message, hashlib.sha256).hexdigest()
    assert conn.execute("select app.rotate_signing_key('unsubscribe', interval '30 days') as v").fetchone() == {"v": 3}
    rotated = token()
    assert rotated.startswith("v3.") and rotated != current
    assert [unsubscribe(t) for t in (rotated, current, legacy)] == [None, None, None]
    assert unsubscribe("v3." + "0" * 64) == "BR210" and unsubscribe("v9." + current.split(".", 1)[1]) == "BR210"
    # once the grace period is over, the old tokens are refused
    conn.execute("update app.signing_keys set valid_until = now() - interval '1 second' where purpose = 'unsubscribe' and version < 3")
    assert [unsubscribe(t) for t in (rotated, current, legacy)] == [None, "BR210", "BR210"]
    with pytest.raises(psycopg.Error) as exc:
        conn.execute("set role authenticated; select * from app.signing_keys")
    conn.execute("reset role")
    assert exc.value.sqlstate == "42501"


def test_item_10_a_trial_is_shown_discounted_on_the_draft_invoice(conn: Conn, factory: Factory) -> None:
    tenant = factory.tenant("Trial Cafe", {"ordering": True})
    b = tenant.business_id
    # a 30-day period (UTC business) whose first 14 days are the trial; starter (2900/month) all along
    conn.execute("update public.businesses set time_zone = 'UTC' where id = %s", (b,))
    conn.execute("update public.business_subscriptions set status = 'trial', current_period_start = '2030-04-01T00:00Z', "
                 "current_period_end = '2030-05-01T00:00Z', trial_ends_at = '2030-04-15T00:00Z' where business_id = %s", (b,))
    conn.execute("update public.business_subscription_lines set starts_at = '2030-04-01T00:00Z' where business_id = %s", (b,))
    invoice = conn.execute("select app.refresh_draft_invoice(%s) as id", (b,)).fetchone()["id"]  # type: ignore[index]
    line = conn.execute("select days, trial_days, discount_cents, amount_cents from public.billing_invoice_lines "
                        "where business_id = %s and invoice_id = %s and item_key = 'starter'", (b, invoice)).fetchone()
    assert line == {"days": 30, "trial_days": 14, "discount_cents": round(2900 * 14 / 30), "amount_cents": 2900 - round(2900 * 14 / 30)}
    totals = conn.execute("select status, total_cents, discount_cents from public.billing_invoices where business_id = %s and id = %s",
                          (b, invoice)).fetchone()
    assert totals is not None and totals["status"] == "draft"
    lines = conn.execute("select sum(amount_cents) as a, sum(discount_cents) as d from public.billing_invoice_lines "
                         "where business_id = %s and invoice_id = %s", (b, invoice)).fetchone()
    assert (totals["total_cents"], totals["discount_cents"]) == (lines["a"], lines["d"])  # type: ignore[index]
    assert totals["discount_cents"] >= round(2900 * 14 / 30)


def test_item_10_payouts_run_on_each_business_schedule(api: Api, conn: Conn, factory: Factory) -> None:
    import json

    from brigade.auth import Claims
    from tests.ordering_kit import build_menu, order_payload, session_completed

    menus = {}
    for schedule in ("weekly", "monthly", "manual"):
        tenant = factory.tenant(f"Payout {schedule}", {"ordering": True})
        conn.execute("update public.businesses set payout_schedule = %s, time_zone = 'Europe/Berlin' where id = %s", (schedule, tenant.business_id))
        menus[schedule] = build_menu(conn, tenant)
        order = api.run(Claims.anon(), "select public.place_order(%s) as r", (json.dumps(order_payload(menus[schedule])),))[0]["r"]
        conn.execute("select app.apply_stripe_event(%s)", (json.dumps(session_completed(order, f"cs_po_{schedule}", f"pi_po_{schedule}")),))
    # a run a week after the payments (weekly) and a month after (monthly): each business's last complete period holds them
    week = conn.execute("select now() + interval '7 days' as t").fetchone()["t"]  # type: ignore[index]
    month = conn.execute("select now() + interval '1 month' as t").fetchone()["t"]  # type: ignore[index]
    assert conn.execute("select app.run_scheduled_payouts(%s) as n", (week,)).fetchone()["n"] >= 1  # type: ignore[index]
    assert conn.execute("select app.run_scheduled_payouts(%s) as n", (month,)).fetchone()["n"] >= 1  # type: ignore[index]

    def payouts(schedule: str) -> list[dict[str, Any]]:
        return conn.execute("select period_start, period_end, gross_cents, status from public.business_payouts where business_id = %s",
                            (menus[schedule].tenant.business_id,)).fetchall()

    [weekly] = payouts("weekly")
    expected = conn.execute("select (date_trunc('week', %(t)s::timestamptz at time zone 'Europe/Berlin') - interval '7 days') "
                            "at time zone 'Europe/Berlin' as s, date_trunc('week', %(t)s::timestamptz at time zone 'Europe/Berlin') "
                            "at time zone 'Europe/Berlin' as e", {"t": week}).fetchone()
    assert expected is not None and (weekly["period_start"], weekly["period_end"]) == (expected["s"], expected["e"])
    assert weekly["gross_cents"] > 0 and weekly["status"] == "pending"
    [monthly] = payouts("monthly")
    assert (monthly["period_end"] - monthly["period_start"]).days in (28, 29, 30, 31) and monthly["gross_cents"] > 0
    assert payouts("manual") == [], "manual businesses wait for the operator"
    # the daily run again: the same payouts, recomputed, not duplicated
    conn.execute("select app.run_scheduled_payouts(%s)", (week,))
    assert len(payouts("weekly")) == 1

    from worker.registry import load_plugins, registry

    load_plugins([])
    assert registry.jobs["platform.payouts"].cron == "30 1 * * *"
