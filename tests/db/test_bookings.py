"""Bookings in the database: capacity under concurrency, the seed's status table (every allowed edge
through its real path, every other edge refused), holds that expire once, late payments that re-take
seats or are refunded, pricing, promo codes, sessions from weekly schedules, staff views."""

from __future__ import annotations

import json
import threading
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest

from brigade.auth import Claims
from tests.bookings_kit import (ADULT, CHILD, Activity, apply, booking_completed, booking_in, build_activity, hold, hold_payload, one,
                                pay, run_out_hold, seats, start_session, status)
from tests.conftest import Api, Factory
from tests.ordering_kit import stripe_event

STATUSES = ["pending_payment", "confirmed", "expired", "payment_failed", "checked_in", "completed", "cancelled", "no_show"]
# The seed's table: pending_payment -> confirmed | expired | payment_failed; confirmed -> checked_in -> completed;
# cancelled from confirmed or checked_in; no_show from confirmed. A payment arriving after expiry or failure
# confirms only by re-taking free seats.
ALLOWED = {
    ("pending_payment", "confirmed"), ("pending_payment", "expired"), ("pending_payment", "payment_failed"),
    ("expired", "confirmed"), ("payment_failed", "confirmed"),
    ("confirmed", "checked_in"), ("confirmed", "cancelled"), ("confirmed", "no_show"),
    ("checked_in", "completed"), ("checked_in", "cancelled"),
}


@pytest.fixture
def act(factory: Factory, conn: psycopg.Connection[dict[str, Any]]) -> Activity:
    return build_activity(conn, factory.tenant("Escape Co", {"ordering": True}))


def code_of(exc: pytest.ExceptionInfo[psycopg.Error]) -> str | None:
    return exc.value.sqlstate


# -- capacity -------------------------------------------------------------------------------------

def test_200_simultaneous_holds_on_10_seats(api: Api, conn: psycopg.Connection[dict[str, Any]], act: Activity) -> None:
    """Done-when: 200 concurrent holds of one seat on a session of capacity 10: exactly 10 win, 190 clear refusals."""
    payload = json.dumps(hold_payload(act, party={"adult": 1}))
    barrier = threading.Barrier(200)
    won: list[str] = []
    refused: list[str | None] = []
    other: list[BaseException] = []
    modes: list[tuple[str, str]] = []
    lock = threading.Lock()

    def go() -> None:
        try:
            with psycopg.connect(api.dsn, autocommit=True) as c:
                c.execute("set synchronous_commit = on")  # as in production (the test cluster runs with it off)
                with c.transaction():
                    c.execute("select set_config('role', 'anon', true), set_config('request.jwt.claims', %s, true)",
                              (json.dumps(Claims.anon().as_dict()),))
                    barrier.wait(timeout=120)
                    try:
                        row = c.execute("select public.hold_booking(%s)", (payload,)).fetchone()
                    except psycopg.Error as exc:
                        with lock:
                            refused.append(exc.sqlstate)
                        raise
                    commit_mode = c.execute("select current_setting('synchronous_commit')").fetchone()
                after = c.execute("select current_setting('synchronous_commit')").fetchone()
                with lock:
                    won.append(row[0]["booking_id"])  # type: ignore[index]
                    modes.append((commit_mode[0], after[0]))  # type: ignore[index]
        except psycopg.Error:
            pass
        except BaseException as exc:  # noqa: BLE001 - reported below
            with lock:
                other.append(exc)

    threads = [threading.Thread(target=go) for _ in range(200)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=180)
    assert not other, other[:3]
    assert len(won) == 10 and len(set(won)) == 10
    assert len(refused) == 190 and set(refused) == {"BR601"}
    assert seats(conn, act.sessions[0]) == (10, 0)
    assert one(conn, "select count(*) from public.bookings where session_id = %s", (act.sessions[0],)) == 10
    # each won hold has its one delayed expiry; the 190 refused ones (their event written first, 0175) none
    expiring = [r["id"] for r in conn.execute("select message -> 'payload' ->> 'booking_id' as id from pgmq.q_brigade_events "
                                                 "where message ->> 'topic' = 'booking.expired'").fetchall()]
    assert sorted(expiring) == sorted(str(b) for b in won)
    # a hold commits without waiting for its WAL flush (0173), for its own transaction only
    assert modes == [("off", "on")] * 10
    # and the insert takes its seats last: after the status history row, under the session row's lock
    triggers = [r["tgname"] for r in conn.execute(
        "select tgname from pg_trigger where tgrelid = 'public.bookings'::regclass and not tgisinternal "
        "and tgtype & 1 = 1 and tgtype & 2 = 0 and tgtype & 4 = 4 order by tgname").fetchall()]
    assert triggers[-1] == "bookings_take_seats" and "bookings_status_inserted" in triggers


def test_a_party_larger_than_the_seats_left_is_refused(api: Api, conn: psycopg.Connection[dict[str, Any]], act: Activity) -> None:
    hold(api, act, party={"adult": 8})
    with pytest.raises(psycopg.Error) as exc:
        hold(api, act, party={"adult": 2, "child": 1})
    assert code_of(exc) == "BR601"
    hold(api, act, party={"adult": 2})  # exactly what is left still fits
    assert seats(conn, act.sessions[0]) == (10, 0)


def test_no_writer_can_push_seats_past_capacity(conn: psycopg.Connection[dict[str, Any]], api: Api, act: Activity) -> None:
    hold(api, act, party={"adult": 6})
    with pytest.raises(psycopg.Error) as exc:
        conn.execute("update public.activity_sessions set booked_seats = 5 where id = %s", (act.sessions[0],))
    assert code_of(exc) == "BR610"
    conn.execute("alter table public.activity_sessions disable trigger activity_sessions_guard")
    with pytest.raises(psycopg.errors.CheckViolation):  # and under the trigger, the constraint
        conn.execute("update public.activity_sessions set booked_seats = 5 where id = %s", (act.sessions[0],))
    conn.execute("alter table public.activity_sessions enable trigger activity_sessions_guard")
    with pytest.raises(psycopg.Error) as exc:
        conn.execute("update public.activity_sessions set capacity = 5 where id = %s", (act.sessions[0],))
    assert code_of(exc) == "BR610"
    with pytest.raises(psycopg.Error) as exc:
        api.run(act.tenant.claims("manager"), "update public.activity_sessions set held_seats = 0 where id = %s", (act.sessions[0],))
    assert code_of(exc) == "42501"  # the counters are not the client's to write


def test_pricing_party_and_contact_rules(api: Api, conn: psycopg.Connection[dict[str, Any]], act: Activity) -> None:
    b = hold(api, act, party={"adult": 2, "child": 1})
    assert (b["subtotal_cents"], b["total_cents"], b["party_size"]) == (2 * ADULT + CHILD, 2 * ADULT + CHILD, 3)
    assert b["booking_number"].startswith("BK-") and len(b["booking_number"]) == 14
    for overrides, code in (({"party": {"senior": 1}}, "BR603"), ({"party": {"adult": 11}}, "BR603"), ({"party": {}}, "BR603"),
                            ({"party": {"adult": -1}}, "BR603"), ({"party": {"adult": "2"}}, "BR603"),
                            ({"customer": {"name": "No Contact"}}, "BR604"), ({"customer": {"email": "not-an-email"}}, "BR604"),
                            ({"expected_total_cents": 1}, "BR606"), ({"promo_code": "NOPE"}, "BR607"),
                            ({"session_id": "00000000-0000-4000-8000-000000000000"}, "PT404"), ({"source": "admin"}, "22023")):
        with pytest.raises(psycopg.Error) as exc:
            hold(api, act, **overrides)
        assert code_of(exc) == code, overrides
    conn.execute("update public.activities set is_published = false where id = %s", (act.activity_id,))
    with pytest.raises(psycopg.Error) as exc:
        hold(api, act)
    assert code_of(exc) == "PT404"
    staff_hold = hold(api, act, claims=act.tenant.claims("staff"), source="phone")  # staff still book unpublished activities by phone
    assert staff_hold["status"] == "pending_payment"
    conn.execute("update public.businesses set modules_json = modules_json || '{\"bookings\": false}' where id = %s", (act.tenant.business_id,))
    with pytest.raises(psycopg.Error) as exc:
        hold(api, act, claims=act.tenant.claims("staff"), source="phone")
    assert code_of(exc) == "PT403"


def test_promo_codes_discount_and_count_on_confirmation(api: Api, conn: psycopg.Connection[dict[str, Any]], act: Activity) -> None:
    manager = act.tenant.claims("manager")
    api.run(manager, "insert into public.booking_promo_codes (business_id, code, percent_off, max_redemptions) values (%s, 'SPRING20', 20, 1)",
            (act.tenant.business_id,))
    b = hold(api, act, promo_code="spring20", party={"adult": 2})
    assert (b["discount_cents"], b["total_cents"]) == (round(2 * ADULT * 0.2), 2 * ADULT - round(2 * ADULT * 0.2))
    assert pay(conn, b) == "paid"
    assert one(conn, "select redeemed_count from public.booking_promo_codes where code = 'SPRING20'") == 1
    with pytest.raises(psycopg.Error) as exc:
        hold(api, act, promo_code="SPRING20")
    assert code_of(exc) == "BR607"  # used up


def test_a_cancelled_or_started_session_takes_no_holds(api: Api, conn: psycopg.Connection[dict[str, Any]], act: Activity) -> None:
    conn.execute("update public.activity_sessions set status = 'cancelled' where id = %s", (act.sessions[1],))
    start_session(conn, act.sessions[2])
    for n in (1, 2):
        with pytest.raises(psycopg.Error) as exc:
            hold(api, act, n)
        assert code_of(exc) == "BR602"
    hold(api, act, 0)
    with pytest.raises(psycopg.Error) as exc:
        conn.execute("update public.activity_sessions set status = 'cancelled' where id = %s", (act.sessions[0],))
    assert code_of(exc) == "BR610"  # a session with bookings is not cancelled under them


# -- the status table -----------------------------------------------------------------------------

def test_the_transition_function_is_the_seed_table(conn: psycopg.Connection[dict[str, Any]]) -> None:
    rows = conn.execute("select a::text as f, b::text as t from unnest(enum_range(null::public.booking_status)) a, "
                        "unnest(enum_range(null::public.booking_status)) b where app.booking_transition_allowed(a, b)").fetchall()
    assert {(r["f"], r["t"]) for r in rows} == ALLOWED
    assert set(one(conn, "select array_agg(x::text) from unnest(enum_range(null::public.booking_status)) x")) == set(STATUSES)


@pytest.mark.parametrize("start", STATUSES)
def test_every_edge_not_in_the_table_is_refused(api: Api, conn: psycopg.Connection[dict[str, Any]], act: Activity, start: str) -> None:
    """Whoever writes (here the superuser, past every grant), an edge outside the seed's table raises BR605."""
    b = booking_in(start, conn, api, act)
    assert status(conn, b)["status"] == start
    before = seats(conn, act.sessions[0])
    for target in STATUSES:
        if target == start or (start, target) in ALLOWED:
            continue
        with pytest.raises(psycopg.Error) as exc:
            conn.execute("update public.bookings set status = %s, cancel_reason = 'x' where id = %s", (target, b["booking_id"]))
        assert code_of(exc) == "BR605", (start, target)
    assert status(conn, b)["status"] == start and seats(conn, act.sessions[0]) == before


# Capacity per status, as the seed says: reserved while pending, confirmed or checked in; released otherwise.
SEATS_AFTER = {"pending_payment": (3, 0), "confirmed": (0, 3), "checked_in": (0, 3), "expired": (0, 0), "payment_failed": (0, 0),
               "completed": (0, 0), "cancelled": (0, 0), "no_show": (0, 0)}
PAYMENT_AFTER = {"pending_payment": "unpaid", "confirmed": "paid", "checked_in": "paid", "expired": "unpaid", "payment_failed": "failed",
                 "completed": "paid", "cancelled": "paid", "no_show": "paid"}  # cancelled: paid until Stripe confirms the refund


@pytest.mark.parametrize("target", STATUSES)
def test_each_status_through_its_real_path(api: Api, conn: psycopg.Connection[dict[str, Any]], act: Activity, target: str) -> None:
    b = booking_in(target, conn, api, act)
    s = status(conn, b)
    assert (s["status"], s["payment_status"]) == (target, PAYMENT_AFTER[target])
    assert seats(conn, act.sessions[0]) == SEATS_AFTER[target]
    history = [r["to_status"] for r in conn.execute("select to_status::text from public.booking_status_history where booking_id = %s "
                                                    "order by id", (b["booking_id"],)).fetchall()]
    assert history[0] == "pending_payment" and history[-1] == target
    for a, z in zip(history, history[1:]):
        assert (a, z) in ALLOWED


def test_refused_moves_through_the_rpcs(api: Api, conn: psycopg.Connection[dict[str, Any]], act: Activity) -> None:
    staff, manager = act.tenant.claims("staff"), act.tenant.claims("manager")
    pending = booking_in("pending_payment", conn, api, act)
    for target, code in (("checked_in", "BR605"), ("no_show", "BR605"), ("completed", "BR605"), ("confirmed", "BR605"), ("cancelled", "BR605")):
        with pytest.raises(psycopg.Error) as exc:
            api.run(staff, "select public.set_booking_status(%s, %s)", (pending["booking_id"], target))
        assert code_of(exc) == code, target
    with pytest.raises(psycopg.Error) as exc:
        api.run(manager, "select public.cancel_booking(%s)", (pending["booking_id"],))
    assert code_of(exc) == "BR605"  # a hold is not cancelled: it runs out
    with pytest.raises(psycopg.Error) as exc:  # a hold does not expire before its time
        conn.execute("update public.bookings set status = 'expired' where id = %s", (pending["booking_id"],))
    assert code_of(exc) == "BR614"
    with pytest.raises(psycopg.Error) as exc:  # nor is it confirmed without its payment
        conn.execute("update public.bookings set status = 'confirmed' where id = %s", (pending["booking_id"],))
    assert code_of(exc) == "BR613"
    confirmed = booking_in("confirmed", conn, api, act, 1)
    with pytest.raises(psycopg.Error) as exc:
        api.run(staff, "select public.set_booking_status(%s, 'no_show')", (confirmed["booking_id"],))
    assert code_of(exc) == "BR616"  # the session has not started
    with pytest.raises(psycopg.Error) as exc:
        api.run(staff, "select public.cancel_booking(%s)", (confirmed["booking_id"],))
    assert code_of(exc) == "PT404"  # refunds are for owners and managers
    with pytest.raises(psycopg.Error) as exc:  # money never goes back to unpaid
        conn.execute("update public.bookings set payment_status = 'unpaid' where id = %s", (confirmed["booking_id"],))
    assert code_of(exc) == "BR615"
    stranger = Claims.user("00000000-0000-4000-8000-00000000abcd")
    with pytest.raises(psycopg.Error) as exc:
        api.run(stranger, "select public.set_booking_status(%s, 'checked_in')", (confirmed["booking_id"],))
    assert code_of(exc) == "PT404"


# -- expiry and late payment ------------------------------------------------------------------------

def test_a_hold_expires_once_and_frees_its_seats_once(api: Api, conn: psycopg.Connection[dict[str, Any]], act: Activity) -> None:
    a = hold(api, act, party={"adult": 2})
    b = hold(api, act, party={"adult": 3})
    assert seats(conn, act.sessions[0]) == (5, 0)
    delayed = conn.execute("select message, vt from pgmq.q_brigade_events where message ->> 'topic' = 'booking.expired' "
                           "and message -> 'payload' ->> 'booking_id' = %s", (a["booking_id"],)).fetchone()
    assert delayed is not None
    assert one(conn, "select %s::timestamptz - now() > interval '9 minutes'", (delayed["vt"],))  # delivered when the hold runs out
    assert one(conn, "select app.expire_booking(%s, %s)", (a["business_id"], a["booking_id"])) is False  # not yet
    run_out_hold(conn, a)
    assert one(conn, "select app.expire_booking(%s, %s)", (a["business_id"], a["booking_id"])) is True
    assert one(conn, "select app.expire_booking(%s, %s)", (a["business_id"], a["booking_id"])) is False
    assert one(conn, "select app.expire_due_holds()") == 0  # the sweep finds nothing left to release
    expired = stripe_event("checkout.session.expired", {"id": "cs_gone", "object": "checkout.session",
                                                        "metadata": {"kind": "booking", "booking_id": a["booking_id"], "business_id": a["business_id"]}})
    assert apply(conn, expired) == "session_expired"
    assert seats(conn, act.sessions[0]) == (3, 0)  # only a's two seats came back, once
    assert status(conn, a)["status"] == "expired" and status(conn, b)["status"] == "pending_payment"


def test_the_sweep_expires_what_is_due(api: Api, conn: psycopg.Connection[dict[str, Any]], act: Activity) -> None:
    due = [hold(api, act, party={"adult": 1}) for _ in range(3)]
    fresh = hold(api, act, party={"adult": 1})
    for b in due:
        run_out_hold(conn, b)
    assert one(conn, "select app.expire_due_holds()") == 3
    assert one(conn, "select app.expire_due_holds()") == 0
    assert seats(conn, act.sessions[0]) == (1, 0)
    assert status(conn, fresh)["status"] == "pending_payment"


def test_a_late_payment_retakes_free_seats(api: Api, conn: psycopg.Connection[dict[str, Any]], act: Activity) -> None:
    b = booking_in("expired", conn, api, act)
    assert seats(conn, act.sessions[0]) == (0, 0)
    assert pay(conn, b) == "paid_late_retaken"
    s = status(conn, b)
    assert (s["status"], s["payment_status"]) == ("confirmed", "paid") and s["customer_id"] is not None
    assert seats(conn, act.sessions[0]) == (0, 3)
    failed = booking_in("payment_failed", conn, api, act, 1)
    assert pay(conn, failed) == "paid_late_retaken"
    assert seats(conn, act.sessions[1]) == (0, 3)


def test_a_late_payment_for_a_full_session_is_refunded_automatically(api: Api, conn: psycopg.Connection[dict[str, Any]], factory: Factory) -> None:
    act = build_activity(conn, factory.tenant("Tiny Rooms", {"ordering": True}), capacity=3)
    late = hold(api, act)  # 3 seats
    run_out_hold(conn, late)
    assert one(conn, "select app.expire_due_holds()") == 1
    other = hold(api, act)  # the freed seats go to someone else
    assert pay(conn, other) == "paid"
    event = booking_completed(late, "cs_late", "pi_late")
    assert apply(conn, event) == "paid_late_refunding"
    assert apply(conn, event) == "duplicate"
    s = status(conn, late)
    assert (s["status"], s["payment_status"]) == ("expired", "paid")
    assert seats(conn, act.sessions[0]) == (0, 3)  # never overbooked
    refund = conn.execute("select id, amount_cents, status, idempotency_key from public.refunds where booking_id = %s", (late["booking_id"],)).fetchall()
    assert len(refund) == 1 and refund[0]["amount_cents"] == late["total_cents"] and refund[0]["status"] == "pending"
    queued = conn.execute("select message -> 'payload' as p from pgmq.q_brigade_events where message ->> 'topic' = 'booking.refund_requested'").fetchall()
    assert [q["p"]["refund_id"] for q in queued] == [str(refund[0]["id"])]
    # Stripe reports the refund: the money is back, the booking stays expired, nothing counted in the customer's stats
    done = stripe_event("refund.updated", {"id": "re_late", "object": "refund", "amount": late["total_cents"], "status": "succeeded",
                                           "payment_intent": "pi_late", "metadata": {"refund_id": str(refund[0]["id"]),
                                                                                     "booking_id": late["booking_id"]}})
    assert apply(conn, done) == "refund_succeeded"
    s = status(conn, late)
    assert (s["status"], s["payment_status"], s["refunded_cents"]) == ("expired", "refunded", late["total_cents"])
    assert apply(conn, done | {"id": "evt_again"}) == "refund_succeeded"
    assert status(conn, late)["refunded_cents"] == late["total_cents"]


def test_payment_after_failure_and_duplicates_never_double_count(api: Api, conn: psycopg.Connection[dict[str, Any]], act: Activity) -> None:
    b = hold(api, act)
    event = booking_completed(b, "cs_dup", "pi_dup")
    assert apply(conn, event) == "paid"
    assert apply(conn, event) == "duplicate"
    pi = stripe_event("payment_intent.succeeded", {"id": "pi_dup", "object": "payment_intent", "amount_received": b["total_cents"],
                                                   "metadata": {"kind": "booking", "booking_id": b["booking_id"], "business_id": b["business_id"]}})
    assert apply(conn, pi) == "already_paid"
    failed = stripe_event("payment_intent.payment_failed", {"id": "pi_dup", "object": "payment_intent",
                                                            "metadata": {"kind": "booking", "booking_id": b["booking_id"]}})
    assert apply(conn, failed) == "ignored_after_payment"
    assert seats(conn, act.sessions[0]) == (0, 3)
    assert one(conn, "select count(*) from public.payments where booking_id = %s", (b["booking_id"],)) == 1
    stats = conn.execute("select total_orders, total_spent_cents from public.customer_venue_stats where customer_id = %s",
                         (status(conn, b)["customer_id"],)).fetchone()
    assert stats == {"total_orders": 1, "total_spent_cents": b["total_cents"]}


def test_an_unpaid_completed_session_waits_and_a_short_amount_does_not_confirm(api: Api, conn: psycopg.Connection[dict[str, Any]], act: Activity) -> None:
    b = hold(api, act)
    assert apply(conn, booking_completed(b, "cs_async", "pi_async", payment_status="unpaid")) == "awaiting_payment"
    assert status(conn, b)["payment_status"] == "pending"
    assert apply(conn, booking_completed(b, "cs_async", "pi_async", amount=100,
                                         event_type="checkout.session.async_payment_succeeded")) == "amount_mismatch"
    assert status(conn, b)["status"] == "pending_payment"
    assert apply(conn, booking_completed(b, "cs_async", "pi_async", event_type="checkout.session.async_payment_succeeded")) == "paid"


def test_a_refund_event_before_the_payment_waits_for_it(api: Api, conn: psycopg.Connection[dict[str, Any]], act: Activity) -> None:
    b = hold(api, act)
    early = stripe_event("charge.refunded", {"id": "ch_1", "object": "charge", "payment_intent": "pi_early", "amount_refunded": 1000})
    assert apply(conn, early) == "deferred"
    assert apply(conn, booking_completed(b, "cs_early", "pi_early")) == "paid"
    s = status(conn, b)
    assert (s["payment_status"], s["refunded_cents"]) == ("partially_refunded", 1000)


def test_orders_still_pay_through_the_dispatcher(api: Api, conn: psycopg.Connection[dict[str, Any]], factory: Factory) -> None:
    from tests.ordering_kit import build_menu, order_payload, session_completed
    tenant = factory.tenant("Both Co", {"ordering": True})
    menu = build_menu(conn, tenant)
    act = build_activity(conn, tenant)
    order = api.run(Claims.anon(), "select public.place_order(%s) as r", (json.dumps(order_payload(menu)),))[0]["r"]
    b = hold(api, act)
    assert apply(conn, session_completed(order, "cs_order", "pi_order")) == "paid"
    assert pay(conn, b) == "paid"
    assert one(conn, "select payment_status::text from public.orders where id = %s", (order["order_id"],)) == "paid"
    assert one(conn, "select count(*) from public.payments where order_id = %s", (order["order_id"],)) == 1
    assert one(conn, "select booking_id from public.stripe_events where type = 'checkout.session.completed' and order_id is null") is not None


# -- staff ------------------------------------------------------------------------------------------

def test_cancel_with_partial_refund_and_customer_cutoff(api: Api, conn: psycopg.Connection[dict[str, Any]], act: Activity) -> None:
    manager = act.tenant.claims("manager")
    b = booking_in("confirmed", conn, api, act)
    with pytest.raises(psycopg.Error) as exc:
        api.run(manager, "select public.cancel_booking(%s, 'rain', %s)", (b["booking_id"], b["total_cents"] + 1))
    assert code_of(exc) == "BR608"
    r = api.run(manager, "select public.cancel_booking(%s, 'rain', 2000) as r", (b["booking_id"],))[0]["r"]
    assert r["refund_cents"] == 2000 and status(conn, b)["status"] == "cancelled"
    assert seats(conn, act.sessions[0]) == (0, 0)
    note = conn.execute("select template, detail from public.notification_log where event_key = %s", (f"booking.cancelled:{b['booking_id']}",)).fetchone()
    assert note is not None and note["template"] == "booking_cancelled" and note["detail"]["refund_cents"] == 2000
    # the customer: full refund with the token, until the cutoff
    mine = booking_in("confirmed", conn, api, act, 1)
    conn.execute("update public.activity_sessions set starts_at = now() + interval '3 hours', ends_at = now() + interval '4 hours' "
                 "where id = %s", (act.sessions[1],))
    with pytest.raises(psycopg.Error) as exc:
        api.run(Claims.anon(), "select public.cancel_my_booking(%s, %s)", (mine["booking_id"], mine["access_token"]))
    assert code_of(exc) == "BR609"
    early = booking_in("confirmed", conn, api, act, 2)
    with pytest.raises(psycopg.Error) as exc:
        api.run(Claims.anon(), "select public.cancel_my_booking(%s, %s)", (early["booking_id"], "00000000-0000-4000-8000-000000000000"))
    assert code_of(exc) == "PT404"
    r = api.run(Claims.anon(), "select public.cancel_my_booking(%s, %s) as r", (early["booking_id"], early["access_token"]))[0]["r"]
    assert r["refund_cents"] == early["total_cents"]


def test_reschedule_moves_the_seats_or_refuses(api: Api, conn: psycopg.Connection[dict[str, Any]], act: Activity) -> None:
    staff = act.tenant.claims("staff")
    b = booking_in("confirmed", conn, api, act)
    hold(api, act, 1, party={"adult": 8})  # session 1 has 2 seats left
    with pytest.raises(psycopg.Error) as exc:
        api.run(staff, "select public.reschedule_booking(%s, %s)", (b["booking_id"], act.sessions[1]))
    assert code_of(exc) == "BR601"
    assert seats(conn, act.sessions[0]) == (0, 3)
    api.run(staff, "select public.reschedule_booking(%s, %s)", (b["booking_id"], act.sessions[2]))
    assert seats(conn, act.sessions[0]) == (0, 0) and seats(conn, act.sessions[2]) == (0, 3)
    assert one(conn, "select count(*) from public.notification_log where template = 'booking_rescheduled'") == 1
    with pytest.raises(psycopg.Error) as exc:
        api.run(staff, "select public.reschedule_booking(%s, %s)", (b["booking_id"], act.sessions[2]))
    assert code_of(exc) == "BR612"
    other = build_activity(conn, act.tenant, name="Laser Tag", sessions=1)
    with pytest.raises(psycopg.Error) as exc:
        api.run(staff, "select public.reschedule_booking(%s, %s)", (b["booking_id"], other.sessions[0]))
    assert code_of(exc) == "BR612"


@pytest.mark.clock
def test_figures_and_search(api: Api, conn: psycopg.Connection[dict[str, Any]], act: Activity) -> None:
    staff = act.tenant.claims("staff")
    today = booking_in("confirmed", conn, api, act)
    starts = one(conn, "update public.activity_sessions set starts_at = now() + interval '1 minute', ends_at = now() + interval '61 minutes' "
                       "where id = %s returning starts_at", (act.sessions[0],))
    hold(api, act, 1, customer={"name": "Ivy Pending", "email": "ivy@example.test"})
    zone = venue_zone(conn, act.venue_id)
    with api.session(staff) as c:  # the figures and the expectation read the same transaction's now()
        row = c.execute("select public.booking_figures(%s) as f, now() as at", (act.tenant.business_id,)).fetchone()
    assert row is not None
    figures, at = row["f"], row["at"].astimezone(zone)
    session_day = starts.astimezone(zone).date()
    assert figures["today"] == (1 if session_day == at.date() else 0)
    week_start = at.date() - timedelta(days=at.weekday())
    assert figures["this_week"] == (1 if week_start <= session_day < week_start + timedelta(days=7) else 0)
    assert figures["pending_holds"] == 1 and figures["revenue_total_cents"] == today["total_cents"]
    found = api.run(staff, "select booking_number from public.search_bookings(%s, q => 'ivy@')", (act.tenant.business_id,))
    assert len(found) == 1
    found = api.run(staff, "select booking_number from public.search_bookings(%s, q => %s)", (act.tenant.business_id, today["booking_number"][3:9]))
    assert [r["booking_number"] for r in found] == [today["booking_number"]]
    by_status = api.run(staff, "select booking_id from public.search_bookings(%s, status => 'pending_payment')", (act.tenant.business_id,))
    assert len(by_status) == 1
    other = build_activity(conn, act.tenant, name="Laser Tag", sessions=1)
    hold(api, other)
    assert len(api.run(staff, "select 1 from public.search_bookings(%s, activity_id => %s)", (act.tenant.business_id, other.activity_id))) == 1
    day1 = one(conn, "select (starts_at at time zone %s)::date from public.activity_sessions where id = %s", (str(zone), act.sessions[1]))
    in_range = api.run(staff, "select guest_name from public.search_bookings(%s, date_from => %s, date_to => %s)",
                       (act.tenant.business_id, day1, day1))
    assert [r["guest_name"] for r in in_range] == ["Ivy Pending"]
    assert api.run(staff, "select 1 from public.search_bookings(%s, date_from => %s)", (act.tenant.business_id, day1 + timedelta(days=30))) == []
    outsider = Claims.user("00000000-0000-4000-8000-00000000abcd")
    assert api.run(outsider, "select * from public.search_bookings(%s)", (act.tenant.business_id,)) == []


def venue_zone(conn: psycopg.Connection[dict[str, Any]], venue_id: Any) -> ZoneInfo:
    return ZoneInfo(one(conn, "select time_zone from public.venues where id = %s", (venue_id,)))


# -- sessions from schedules ------------------------------------------------------------------------

@pytest.mark.clock
def test_sessions_from_weekly_schedules_skip_blackouts(api: Api, conn: psycopg.Connection[dict[str, Any]], act: Activity) -> None:
    manager = act.tenant.claims("manager")
    b = act.tenant.business_id
    zone = venue_zone(conn, act.venue_id)
    local_today = datetime.now(zone).date()
    weekday = (local_today + timedelta(days=3)).isoweekday() % 7  # PostgreSQL's dow: Sunday is 0
    api.run(manager, "insert into public.activity_schedules (business_id, activity_id, weekday, start_time, capacity) "
                     "values (%s, %s, %s, '18:30', 6)", (b, act.activity_id, weekday))  # the kit's sessions start on the hour: at
    # 18:00 the day+3 one fell on this slot at 18:xx (on conflict: nothing made), a failure only in that hour of the day
    blackout_day = local_today + timedelta(days=10)
    api.run(manager, "insert into public.activity_blackouts (business_id, venue_id, starts_on, ends_on, reason) values (%s, %s, %s, %s, 'holiday')",
            (b, act.venue_id, blackout_day, blackout_day))
    with api.session(manager) as c:  # the expectation reads the generating transaction's now()
        row = c.execute("select public.generate_sessions(%s, 14) as n, now() as at", (b,)).fetchone()
    assert row is not None
    at = row["at"].astimezone(zone)
    slots = [datetime.combine(at.date() + timedelta(days=n), time(18, 30), zone) for n in range(14)]
    expected = {s for s in slots if s.isoweekday() % 7 == weekday and s.date() != blackout_day and s > at}
    made = {r["starts_at"] for r in conn.execute("select starts_at from public.activity_sessions where schedule_id is not null")}
    assert row["n"] == len(made) and made == expected and len(made) >= 1
    assert api.run(manager, "select public.generate_sessions(%s, 14) as n", (b,))[0]["n"] == 0
    rows = conn.execute("select starts_at, capacity, ends_at - starts_at as len from public.activity_sessions where schedule_id is not null").fetchall()
    assert all(r["capacity"] == 6 and r["len"].total_seconds() == 3600 and r["starts_at"].astimezone(zone).timetz().replace(tzinfo=None) == time(18, 30) for r in rows)
    with pytest.raises(psycopg.Error) as exc:
        api.run(act.tenant.claims("staff"), "select public.generate_sessions(%s, 14)", (b,))
    assert code_of(exc) == "42501"
    # a blackout added later cancels the unbooked sessions it covers
    first = conn.execute("select id, (starts_at at time zone %s)::date as d from public.activity_sessions where schedule_id is not null "
                         "order by starts_at limit 1", (str(zone),)).fetchone()
    assert first is not None
    api.run(manager, "insert into public.activity_blackouts (business_id, venue_id, activity_id, starts_on, ends_on) values (%s, %s, %s, %s, %s)",
            (b, act.venue_id, act.activity_id, first["d"], first["d"]))
    assert one(conn, "select status from public.activity_sessions where id = %s", (first["id"],)) == "cancelled"


def test_availability_for_the_widget(api: Api, conn: psycopg.Connection[dict[str, Any]], act: Activity) -> None:
    hold(api, act, party={"adult": 4})
    rows = api.run(Claims.anon(), "select session_id, seats_left from public.available_sessions(%s)", (act.activity_id,))
    assert [r["seats_left"] for r in rows] == [6, 10, 10]
    assert len(api.run(Claims.anon(), "select * from public.activities where id = %s", (act.activity_id,))) == 1
    conn.execute("update public.activities set is_published = false where id = %s", (act.activity_id,))
    with pytest.raises(psycopg.Error) as exc:
        api.run(Claims.anon(), "select * from public.available_sessions(%s)", (act.activity_id,))
    assert code_of(exc) == "PT404"


def test_price_tiers_are_validated(conn: psycopg.Connection[dict[str, Any]], act: Activity) -> None:
    for tiers in ([], [{"key": "adult", "name": "A", "price_cents": -1}], [{"key": "a", "name": "A", "price_cents": 1}] * 2,
                  [{"key": "Adult!", "name": "A", "price_cents": 1}], {"adult": 1}):
        with pytest.raises(psycopg.Error) as exc:
            conn.execute("update public.activities set price_tiers = %s where id = %s", (json.dumps(tiers), act.activity_id))
        assert code_of(exc) == "BR611", tiers


def test_an_order_refund_reported_before_its_payment_applies_once_paid(api: Api, conn: psycopg.Connection[dict[str, Any]], factory: Factory) -> None:
    """The deferred-event path (0006) re-applied events inside the UPDATE of their own row; fixed in 0022."""
    from tests.ordering_kit import build_menu, order_payload, session_completed
    menu = build_menu(conn, factory.tenant("Early Refund Cafe", {"ordering": True}))
    order = api.run(Claims.anon(), "select public.place_order(%s) as r", (json.dumps(order_payload(menu)),))[0]["r"]
    early = stripe_event("charge.refunded", {"id": "ch_o", "object": "charge", "payment_intent": "pi_o", "amount_refunded": 500})
    assert apply(conn, early) == "deferred"
    assert apply(conn, session_completed(order, "cs_o", "pi_o")) == "paid"
    row = conn.execute("select payment_status::text, refunded_cents from public.orders where id = %s", (order["order_id"],)).fetchone()
    assert row == {"payment_status": "partially_refunded", "refunded_cents": 500}
    assert one(conn, "select outcome from public.stripe_events where id = %s", (early["id"],)) == "refunds_reconciled"


def test_hot_booking_lookups_use_their_indexes(conn: psycopg.Connection[dict[str, Any]], act: Activity) -> None:
    conn.execute("update public.activity_sessions set capacity = 10000 where id = %s", (act.sessions[0],))
    conn.execute("""
        insert into public.bookings (business_id, booking_number, venue_id, activity_id, session_id, party, party_size, currency,
                                     subtotal_cents, total_cents, hold_expires_at, guest_email)
        select %s, 'BK-' || lpad(g::text, 6, '0') || '-AAAA', %s, %s, %s, '{"adult": 1}', 1, 'USD', 100, 100,
               now() + interval '10 minutes', 'g' || g || '@x.test'
        from generate_series(1, 3000) g""", (act.tenant.business_id, act.venue_id, act.activity_id, act.sessions[0]))
    conn.execute("update public.bookings set payment_intent_id = 'pi_' || booking_number where booking_number like 'BK-0001%%'")
    conn.execute("analyze public.bookings")

    def plan(query: str, params: Any = None) -> str:
        row = conn.execute("explain (format json) " + query, params).fetchone()
        assert row is not None
        return json.dumps(row["QUERY PLAN"])

    stripe_lookup = plan("select * from app.booking_for_stripe_object(%s)",
                         (json.dumps({"object": "charge", "payment_intent": "pi_BK-000123-AAAA"}),))
    assert "Function Scan" in stripe_lookup  # the function body is checked below, inlined as PostgreSQL runs it
    body = plan("select b.* from public.bookings b where b.payment_intent_id = %s", ("pi_BK-000123-AAAA",))
    assert "bookings_payment_intent_idx" in body, body
    by_id = plan("select b.* from public.bookings b where b.id = %s", (act.sessions[0],))
    assert "bookings_id_idx" in by_id, by_id
    sweep = plan("select b.business_id, b.id from public.bookings b where b.status = 'pending_payment' and b.hold_expires_at <= now() "
                 "order by b.hold_expires_at limit 1000")
    assert "bookings_hold_idx" in sweep, sweep


def test_signed_in_customers_read_their_bookings_and_the_module_gate_hides_them(
        api: Api, conn: psycopg.Connection[dict[str, Any]], factory: Factory, act: Activity) -> None:
    me = Claims.user(factory.user("me@example.test"), email="me@example.test")
    someone = Claims.user(factory.user("someone@example.test"), email="someone@example.test")
    b = hold(api, act, claims=me, customer={"name": "Me"})
    assert one(conn, "select guest_email from public.bookings where id = %s", (b["booking_id"],)) == "me@example.test"
    assert [r["booking_number"] for r in api.run(me, "select booking_number from public.bookings")] == [b["booking_number"]]
    assert api.run(someone, "select booking_number from public.bookings") == []
    assert len(api.run(act.tenant.claims("staff"), "select 1 from public.bookings")) == 1
    conn.execute("update public.businesses set modules_json = modules_json || '{\"bookings\": false}' where id = %s", (act.tenant.business_id,))
    for claims in (me, act.tenant.claims("staff"), act.tenant.claims("owner")):
        assert api.run(claims, "select 1 from public.bookings") == []
        assert api.run(claims, "select 1 from public.activity_sessions") == []
    assert api.run(Claims.anon(), "select 1 from public.activities") == []


def test_crm_merge_and_erasure_reach_bookings(api: Api, conn: psycopg.Connection[dict[str, Any]], act: Activity) -> None:
    first = booking_in("confirmed", conn, api, act)
    second = hold(api, act, 1, customer={"name": "Grace B.", "phone": "+1 646 555 0100"})
    assert pay(conn, second) == "paid"
    keep, drop = status(conn, first)["customer_id"], status(conn, second)["customer_id"]
    assert keep != drop
    api.run(act.tenant.claims("owner"), "select public.merge_customers(%s, %s)", (keep, drop))
    assert status(conn, second)["customer_id"] == keep
    conn.execute("select app.anonymise_customer(%s, %s)", (act.tenant.business_id, keep))
    rows = conn.execute("select guest_name, guest_email, guest_phone from public.bookings where customer_id = %s", (keep,)).fetchall()
    assert len(rows) == 2 and all(r == {"guest_name": None, "guest_email": None, "guest_phone": None} for r in rows)
    assert one(conn, "select count(*) from public.stripe_events where booking_id = %s and payload ? 'data'", (first["booking_id"],)) == 0


def race(dsn: str, *calls: tuple[str, Any]) -> list[Any]:
    """Run each (sql, params) in its own connection and transaction at the same moment; results or SQLSTATEs."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def go(i: int, sql: str, params: Any) -> None:
        with psycopg.connect(dsn, autocommit=True) as c:
            c.execute("select set_config('request.jwt.claims', %s, false)", (json.dumps(Claims.service().as_dict()),))
            barrier.wait(timeout=60)
            try:
                results[i] = c.execute(sql, params).fetchone()[0]  # type: ignore[index]
            except psycopg.Error as exc:
                results[i] = exc.sqlstate

    threads = [threading.Thread(target=go, args=(i, sql, params)) for i, (sql, params) in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return results


def test_a_late_payment_and_a_new_hold_racing_for_the_last_seats(api: Api, conn: psycopg.Connection[dict[str, Any]], factory: Factory) -> None:
    act = build_activity(conn, factory.tenant("Race Rooms", {"ordering": True}), capacity=3, sessions=5)
    outcomes = set()
    for n in range(5):
        late = booking_in("expired", conn, api, act, n)
        event = json.dumps(booking_completed(late, f"cs_race_{n}", f"pi_race_{n}"))
        newcomer = json.dumps(hold_payload(act, n, customer={"email": f"new{n}@example.test"}))
        paid, held = race(api.dsn, ("select app.apply_stripe_event(%s)", (event,)), ("select app.hold_booking(%s)", (newcomer,)))
        assert (paid, held if isinstance(held, str) else "held") in {("paid_late_retaken", "BR601"), ("paid_late_refunding", "held")}, (paid, held)
        outcomes.add(paid)
        held_seats, booked = seats(conn, act.sessions[n])
        assert held_seats + booked == 3  # exactly one party has the seats
        assert status(conn, late)["status"] == ("confirmed" if paid == "paid_late_retaken" else "expired")


def test_a_payment_and_the_expiry_racing_end_confirmed_once(api: Api, conn: psycopg.Connection[dict[str, Any]], act: Activity) -> None:
    for n in range(3):
        b = hold(api, act, n)
        run_out_hold(conn, b)
        event = json.dumps(booking_completed(b, f"cs_rx_{n}", f"pi_rx_{n}"))
        paid, expired = race(api.dsn, ("select app.apply_stripe_event(%s)", (event,)),
                             ("select app.expire_booking(%s, %s)", (b["business_id"], b["booking_id"])))
        assert (paid, expired) in {("paid", False), ("paid_late_retaken", True)}, (paid, expired)
        assert status(conn, b)["status"] == "confirmed" and seats(conn, act.sessions[n]) == (0, 3)


def test_a_full_refund_made_in_stripe_cancels_a_confirmed_booking(api: Api, conn: psycopg.Connection[dict[str, Any]], act: Activity) -> None:
    b = hold(api, act)
    assert apply(conn, booking_completed(b, "cs_dash", "pi_dash")) == "paid"
    part = stripe_event("charge.refunded", {"id": "ch_dash", "object": "charge", "payment_intent": "pi_dash", "amount_refunded": 1000})
    assert apply(conn, part) == "refunds_reconciled"
    s = status(conn, b)
    assert (s["status"], s["payment_status"], s["refunded_cents"]) == ("confirmed", "partially_refunded", 1000)
    full = stripe_event("charge.refunded", {"id": "ch_dash", "object": "charge", "payment_intent": "pi_dash", "amount_refunded": b["total_cents"]})
    assert apply(conn, full) == "refunds_reconciled"
    s = status(conn, b)
    assert (s["status"], s["payment_status"], s["refunded_cents"]) == ("cancelled", "refunded", b["total_cents"])
    assert seats(conn, act.sessions[0]) == (0, 0)
    assert one(conn, "select detail ->> 'refund_cents' from public.notification_log where event_key = %s",
               (f"booking.cancelled:{b['booking_id']}",)) == str(b["total_cents"] - 1000)
