"""Gift cards pay booking deposits (issue 23 item 4, the bookings half), in SQL as PostgREST runs it: a
card pays a held booking in full (confirmed through the path a Stripe payment takes, no Stripe call) or
in part (Checkout charges the rest); the hold goes back when the booking's hold runs out or its
Checkout session expires; refunds split card first, the gift part back onto the card; wrong codes count
toward the code limits; two bookings racing for a card's last balance never overdraw it."""

from __future__ import annotations

import json
import threading
from typing import Any

import psycopg
import pytest

from brigade import queries
from brigade.auth import Claims
from tests.bookings_kit import ADULT, CHILD, Activity, apply, booking_completed, build_activity, hold, one, run_out_hold, seats, status
from tests.conftest import Api, Factory
from tests.gift_cards_kit import balance, issue, kinds
from tests.ordering_kit import stripe_event

Conn = psycopg.Connection[dict[str, Any]]
TOTAL = 2 * ADULT + CHILD  # the kit's party: two adults and a child


@pytest.fixture
def act(factory: Factory, conn: Conn) -> Activity:
    return build_activity(conn, factory.tenant("Gift Escape Co", {"ordering": True}))


def rpc(api: Api, claims: Claims, sql: str, params: Any, ip: str | None = None) -> Any:
    """One PostgREST request, the gateway's x-forwarded-for in request.headers."""
    with api.session(claims) as c:
        if ip:
            c.execute("select set_config('request.headers', %s, true)", (json.dumps({"x-forwarded-for": f"{ip}, 10.0.0.1"}),))
        row = c.execute(sql, params).fetchone()
        return next(iter(row.values())) if row else None


def pay_with(api: Api, booking: dict[str, Any], code: str, ip: str = "198.51.100.20") -> dict[str, Any]:
    return rpc(api, Claims.anon(), "select public.apply_gift_card_to_booking(%s, %s, %s)",
               (booking["booking_id"], booking["access_token"], code), ip)


def sqlstate_of(fn: Any) -> str | None:
    with pytest.raises(psycopg.Error) as err:
        fn()
    return err.value.sqlstate


def events(conn: Conn, topic: str, booking_id: str) -> list[dict[str, Any]]:
    return [r["p"] for r in conn.execute("select message -> 'payload' as p from pgmq.q_brigade_events where message ->> 'topic' = %s "
                                         "and message -> 'payload' ->> 'booking_id' = %s", (topic, booking_id)).fetchall()]


def test_a_card_pays_a_booking_in_full_through_the_stripe_path_and_a_cancellation_goes_back_onto_it(
        api: Api, conn: Conn, act: Activity) -> None:
    b = act.tenant.business_id
    card, code = issue(conn, api, b, 10000)
    booking = hold(api, act)
    assert booking["total_cents"] == TOTAL
    answer = pay_with(api, booking, code)
    assert answer["applied"] is True and answer["paid"] is True
    assert (answer["gift_card_cents"], answer["amount_due_cents"], answer["balance_cents"]) == (TOTAL, 0, 10000 - TOTAL)
    st = status(conn, booking)
    assert (st["status"], st["payment_status"]) == ("confirmed", "paid") and st["customer_id"] is not None
    assert seats(conn, act.sessions[0]) == (0, 3)
    # the fan-out of a paid booking ran once: the confirmation email, the customer's stats; no Stripe payment row
    assert one(conn, "select count(*) from public.notification_log where event_key = %s", (f"booking.confirmed:{booking['booking_id']}",)) == 1
    assert one(conn, "select total_spent_cents from public.customer_venue_stats where customer_id = %s", (st["customer_id"],)) == TOTAL
    assert one(conn, "select count(*) from public.payments where booking_id = %s", (booking["booking_id"],)) == 0
    assert kinds(conn, card["gift_card_id"]) == [("issue", 10000), ("redeem", -TOTAL)]
    # paid: the code cannot be applied again, nor Checkout started
    assert sqlstate_of(lambda: pay_with(api, booking, code)) == "PT409"
    assert sqlstate_of(lambda: api.run(Claims.anon(), "select app.booking_checkout_context(%s, %s)",
                                       (booking["booking_id"], booking["access_token"]))) == "PT409"
    # the booker cancels: all of it was gift card, so it goes straight back onto the card, with no Stripe refund
    out = rpc(api, Claims.anon(), "select public.cancel_my_booking(%s, %s)", (booking["booking_id"], booking["access_token"]))
    assert out["refund_cents"] == TOTAL
    refund = conn.execute("select status, amount_cents, gift_card_cents, applied_at from public.refunds where booking_id = %s",
                          (booking["booking_id"],)).fetchone()
    assert refund is not None and (refund["status"], refund["amount_cents"], refund["gift_card_cents"]) == ("succeeded", TOTAL, TOTAL)
    assert refund["applied_at"] is not None
    assert events(conn, "booking.refund_requested", booking["booking_id"]) == []
    assert status(conn, booking)["payment_status"] == "refunded"
    assert kinds(conn, card["gift_card_id"])[-1] == ("refund_back", TOTAL)
    assert balance(conn, card["gift_card_id"]) == {"balance_cents": 10000, "status": "active", "ledger": 10000}


def test_a_card_pays_part_checkout_the_rest_and_a_refund_splits_card_first(api: Api, conn: Conn, act: Activity) -> None:
    b = act.tenant.business_id
    card, code = issue(conn, api, b, 2000)
    booking = hold(api, act)
    answer = pay_with(api, booking, code)
    assert (answer["paid"], answer["gift_card_cents"], answer["amount_due_cents"]) == (False, 2000, TOTAL - 2000)
    assert status(conn, booking)["status"] == "pending_payment"
    ctx = api.run(Claims.anon(), "select app.booking_checkout_context(%s, %s) as c", (booking["booking_id"], booking["access_token"]))[0]["c"]
    assert (ctx["gift_card_cents"], ctx["amount_due_cents"]) == (2000, TOTAL - 2000)
    assert sum(line["unit_amount"] * line["quantity"] for line in ctx["lines"]) == TOTAL - 2000
    assert ctx["metadata"]["gift_card_cents"] == "2000"
    # a second card cannot be stacked on the same booking
    _, other = issue(conn, api, b, 3000)
    assert sqlstate_of(lambda: pay_with(api, booking, other)) == "BR142"
    # Stripe pays less than the rest: not paid; the rest: paid, once
    assert apply(conn, booking_completed(booking, "cs_gb_short", "pi_gb_short", amount=TOTAL - 2001)) == "amount_mismatch"
    assert apply(conn, booking_completed(booking, "cs_gb_1", "pi_gb_1", amount=TOTAL - 2000)) == "paid"
    assert apply(conn, booking_completed(booking, "cs_gb_1", "pi_gb_1", amount=TOTAL - 2000)) in ("already_paid", "duplicate")
    assert (status(conn, booking)["status"], status(conn, booking)["payment_status"]) == ("confirmed", "paid")
    # the venue cancels with a refund of 6000: 5500 was charged to the card, so 5500 goes to Stripe, 500 onto the gift card
    manager = act.tenant.claims("manager")
    out = api.run(manager, "select public.cancel_booking(%s, 'flooded', 6000) as r", (booking["booking_id"],))[0]["r"]
    refund = conn.execute("select id, status, amount_cents, gift_card_cents from public.refunds where id = %s", (out["refund_id"],)).fetchone()
    assert refund is not None and (refund["status"], refund["amount_cents"], refund["gift_card_cents"]) == ("pending", 6000, 500)
    assert [e["amount_cents"] for e in events(conn, "booking.refund_requested", booking["booking_id"])] == [TOTAL - 2000]
    # what the worker sends to Stripe is the card part
    to_send = conn.execute("select amount_cents from (" + queries.get("booking_refund_to_send") + ") q",
                           {"business_id": b, "refund_id": refund["id"]}).fetchone()
    assert to_send == {"amount_cents": TOTAL - 2000}
    assert balance(conn, card["gift_card_id"])["balance_cents"] == 0  # nothing back until the refund succeeds
    # Stripe answers: the refund succeeded; the gift part goes back onto the card, once (a duplicate webhook changes nothing)
    for _ in range(2):
        one(conn, "select app.record_booking_refund(%s, %s, %s, 're_gb_1', 'succeeded', %s, null)",
            (b, booking["booking_id"], refund["id"], TOTAL - 2000))
    assert kinds(conn, card["gift_card_id"]) == [("issue", 2000), ("redeem", -2000), ("refund_back", 500)]
    assert balance(conn, card["gift_card_id"]) == {"balance_cents": 500, "status": "active", "ledger": 500}
    assert status(conn, booking)["refunded_cents"] == 6000
    # charge.refunded from Stripe (5500 refunded on the charge) is the known card part: no extra refund adopted
    assert apply(conn, stripe_event("charge.refunded", {"id": "ch_gb_1", "object": "charge", "payment_intent": "pi_gb_1",
                                                        "amount_refunded": TOTAL - 2000})) == "refunds_reconciled"
    assert one(conn, "select count(*) from public.refunds where booking_id = %s", (booking["booking_id"],)) == 1


def test_the_hold_goes_back_when_the_booking_hold_runs_out_or_its_session_expires(api: Api, conn: Conn, act: Activity) -> None:
    b = act.tenant.business_id
    card, code = issue(conn, api, b, 3000)
    first = hold(api, act)
    assert pay_with(api, first, code)["gift_card_cents"] == 3000
    assert balance(conn, card["gift_card_id"])["balance_cents"] == 0
    run_out_hold(conn, first)
    assert one(conn, "select app.expire_due_holds()") >= 1  # the scheduled sweep
    assert status(conn, first)["status"] == "expired"
    assert kinds(conn, card["gift_card_id"])[-1] == ("release", 3000)
    assert balance(conn, card["gift_card_id"]) == {"balance_cents": 3000, "status": "active", "ledger": 3000}
    assert one(conn, "select gift_card_cents from public.bookings where id = %s", (first["booking_id"],)) == 0
    # a Checkout session that expires (the booking still held) gives the card's part back too, once
    second = hold(api, act)
    assert pay_with(api, second, code)["gift_card_cents"] == 3000
    conn.execute("select app.attach_booking_checkout_session(%s, 'cs_gb_exp', 'https://checkout.test/x', now() + interval '30 minutes')",
                 (second["booking_id"],))
    assert sqlstate_of(lambda: pay_with(api, second, code)) == "BR142"
    expired = stripe_event("checkout.session.expired", {"id": "cs_gb_exp", "object": "checkout.session", "status": "expired",
                                                        "metadata": {"kind": "booking", "booking_id": second["booking_id"],
                                                                     "business_id": str(b)}})
    assert apply(conn, expired) == "session_expired"
    assert apply(conn, expired) in ("session_expired", "duplicate")
    assert [k for k, _ in kinds(conn, card["gift_card_id"])].count("release") == 2
    assert balance(conn, card["gift_card_id"]) == {"balance_cents": 3000, "status": "active", "ledger": 3000}
    assert status(conn, second)["status"] == "pending_payment"  # still held: the card may be applied again
    assert pay_with(api, second, code)["gift_card_cents"] == 3000


def test_bad_codes_change_nothing_and_count_toward_the_code_limits(api: Api, conn: Conn, act: Activity) -> None:
    b = act.tenant.business_id
    _, code = issue(conn, api, b, 1000)
    booking = hold(api, act)
    ip = "203.0.113.40"
    for _ in range(10):  # the order path's limit: 10 codes an hour per client IP, wrong ones too
        assert pay_with(api, booking, "WRONG-CODE-0000-0000", ip) == {"applied": False, "reason": "unknown_code"}
    assert sqlstate_of(lambda: pay_with(api, booking, code, ip)) == "PT429"
    assert one(conn, "select count(*) from public.gift_card_ledger where booking_id = %s", (booking["booking_id"],)) == 0
    assert one(conn, "select gift_card_cents from public.bookings where id = %s", (booking["booking_id"],)) == 0
    # a wrong token is not found; an expired hold is refused
    assert sqlstate_of(lambda: rpc(api, Claims.anon(), "select public.apply_gift_card_to_booking(%s, gen_random_uuid(), %s)",
                                   (booking["booking_id"], code))) == "PT404"
    run_out_hold(conn, booking)
    assert sqlstate_of(lambda: pay_with(api, booking, code)) == "PT409"


def test_two_bookings_racing_for_the_last_balance_never_overdraw(api: Api, conn: Conn, act: Activity) -> None:
    b = act.tenant.business_id
    card, code = issue(conn, api, b, 1000)
    first, second = hold(api, act), hold(api, act, 1)
    results: dict[str, Any] = {}
    with api.session(Claims.anon()) as a:
        results["first"] = a.execute("select public.apply_gift_card_to_booking(%s, %s, %s) as r",
                                     (first["booking_id"], first["access_token"], code)).fetchone()["r"]  # type: ignore[index]
        racer = threading.Thread(target=lambda: results.__setitem__("second", pay_with(api, second, code, "198.51.100.21")))
        racer.start()
        # the second redemption waits on the card's row lock while the first is uncommitted
        while conn.execute("select count(*) as n from pg_stat_activity where wait_event_type = 'Lock' "
                           "and query like '%%apply_gift_card_to_booking%%'").fetchone() != {"n": 1}:
            assert racer.is_alive()
    racer.join(timeout=30)
    assert results["first"]["gift_card_cents"] == 1000
    assert results["second"] == {"applied": False, "reason": "empty"}
    assert balance(conn, card["gift_card_id"]) == {"balance_cents": 0, "status": "active", "ledger": 0}
    assert one(conn, "select gift_card_cents from public.bookings where id = %s", (second["booking_id"],)) == 0


def test_a_hold_that_ends_with_its_session_open_keeps_the_card_part_for_a_late_payment(api: Api, conn: Conn, act: Activity) -> None:
    b = act.tenant.business_id
    kept, kept_code = issue(conn, api, b, 2000)
    card, code = issue(conn, api, b, 2000)
    late, left = hold(api, act), hold(api, act, 1)
    assert pay_with(api, late, kept_code)["gift_card_cents"] == 2000
    assert pay_with(api, left, code)["gift_card_cents"] == 2000
    for booking, session, ends in ((late, "cs_gb_late", "now() + interval '30 minutes'"), (left, "cs_gb_left", "now() + interval '30 minutes'")):
        conn.execute(f"select app.attach_booking_checkout_session(%s, %s, 'https://checkout.test/x', {ends})", (booking["booking_id"], session))
        run_out_hold(conn, booking)
    assert one(conn, "select app.expire_due_holds()") == 2
    # the sessions are still open: nothing released yet
    assert [k for k, _ in kinds(conn, kept["gift_card_id"]) + kinds(conn, card["gift_card_id"])] == ["issue", "redeem"] * 2
    # the rest arrives on the open session after the hold ended: the seats are free, so it confirms, the card part kept
    assert apply(conn, booking_completed(late, "cs_gb_late", "pi_gb_late", amount=TOTAL - 2000)) == "paid_late_retaken"
    assert (status(conn, late)["status"], status(conn, late)["payment_status"]) == ("confirmed", "paid")
    assert balance(conn, kept["gift_card_id"])["balance_cents"] == 0
    # the other session runs out without a payment (its expired event lost): the nightly pass gives its part back
    conn.execute("update public.bookings set checkout_expires_at = now() - interval '1 second' where id = %s", (left["booking_id"],))
    assert one(conn, "select app.expire_gift_cards() ->> 'released'") == "1"
    assert one(conn, "select app.expire_gift_cards() ->> 'released'") == "0"
    assert kinds(conn, card["gift_card_id"]) == [("issue", 2000), ("redeem", -2000), ("release", 2000)]
    assert balance(conn, card["gift_card_id"]) == {"balance_cents": 2000, "status": "active", "ledger": 2000}


def test_the_nightly_pass_finds_held_bookings_through_their_partial_index(conn: Conn, act: Activity) -> None:
    conn.execute("set enable_seqscan = off")  # the test database is tiny: ask whether the index can serve the query at all
    plan = "\n".join(r["QUERY PLAN"] for r in conn.execute(
        "explain select bk.business_id, bk.id from public.bookings bk where bk.gift_card_id is not null and bk.gift_card_cents > 0 "
        "and bk.payment_status in ('unpaid', 'pending', 'failed') and bk.status in ('expired', 'payment_failed') "
        "and (bk.checkout_expires_at is null or bk.checkout_expires_at <= now())").fetchall())
    conn.execute("reset enable_seqscan")
    assert "bookings_gift_card_hold_idx" in plan, plan
