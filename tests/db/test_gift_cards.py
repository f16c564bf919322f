"""Gift cards in SQL as PostgREST runs it (issue 23 item 4): the append-only ledger and its balance,
codes stored only hashed, full and partial payment of an order, holds given back, expiry per the
business's setting, balance checks rate-limited at their boundary (wrong codes count), and two orders
racing for a card's last balance never overdrawing it."""

from __future__ import annotations

import hashlib
import json
import threading
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from brigade.auth import Claims
from tests.conftest import Api, Factory
from tests.gift_cards_kit import balance, buy, issue, kinds, place
from tests.ordering_kit import EXPECTED_TOTAL, Menu

Conn = psycopg.Connection[dict[str, Any]]


def rpc(api: Api, claims: Claims, sql: str, params: Any, ip: str | None = None) -> Any:
    """One PostgREST request, the gateway's x-forwarded-for in request.headers."""
    with api.session(claims) as c:
        if ip:
            c.execute("select set_config('request.headers', %s, true)", (json.dumps({"x-forwarded-for": f"{ip}, 10.0.0.1"}),))
        row = c.execute(sql, params).fetchone()
        return next(iter(row.values())) if row else None


def check(api: Api, business_id: Any, code: str, ip: str = "198.51.100.7") -> dict[str, Any]:
    return rpc(api, Claims.anon(), "select public.check_gift_card_balance(%s, %s)", (business_id, code), ip)


def apply(api: Api, order: dict[str, Any], code: str, ip: str = "198.51.100.7") -> dict[str, Any]:
    return rpc(api, Claims.anon(), "select public.apply_gift_card(%s, %s, %s)", (order["order_id"], order["access_token"], code), ip)


def sqlstate_of(fn: Any) -> tuple[str | None, str | None]:
    with pytest.raises(psycopg.Error) as err:
        fn()
    return err.value.sqlstate, err.value.diag.message_hint


def test_the_ledger_is_append_only_the_balance_its_sum_and_the_code_only_hashed(api: Api, conn: Conn, menu: Menu) -> None:
    b = menu.tenant.business_id
    card, code = issue(conn, api, b, 2500)
    row = conn.execute("select * from public.gift_cards where id = %s", (card["gift_card_id"],)).fetchone()
    assert row is not None and row["status"] == "active" and row["balance_cents"] == 2500
    normalised = code.replace("-", "")
    assert len(normalised) == 16 and row["code_hash"] == hashlib.sha256(normalised.encode()).hexdigest()
    assert row["code_last4"] == normalised[-4:]
    assert not any(normalised in str(v) for v in row.values()), "the code is never stored in clear"
    # typed loosely (lower case, spaces) it is the same code
    assert check(api, b, " " + code.lower().replace("-", " ") + " ")["balance_cents"] == 2500
    assert kinds(conn, card["gift_card_id"]) == [("issue", 2500)]
    for sql in ("update public.gift_card_ledger set amount_cents = 9999 where gift_card_id = %s",
                "delete from public.gift_card_ledger where gift_card_id = %s"):
        assert sqlstate_of(lambda sql=sql: conn.execute(sql, (card["gift_card_id"],))) == ("BR006", "append_only")
    # a second issue of the same card (a duplicated webhook) changes nothing
    again = conn.execute("select app.issue_gift_card(%s, %s, 'pi_x', null, 2500) as o", (b, card["gift_card_id"])).fetchone()
    assert again == {"o": "already_issued"} and balance(conn, card["gift_card_id"]) == {"balance_cents": 2500, "status": "active", "ledger": 2500}
    # nothing takes more than the card holds, whoever writes the ledger
    assert sqlstate_of(lambda: conn.execute(
        "insert into public.gift_card_ledger (business_id, gift_card_id, kind, amount_cents, order_id) values (%s, %s, 'redeem', -2501, %s)",
        (b, card["gift_card_id"], card["gift_card_id"])))[0] == "BR145"


def test_a_card_pays_one_order_in_full_and_the_next_in_part(api: Api, conn: Conn, menu: Menu) -> None:
    b = menu.tenant.business_id
    card, code = issue(conn, api, b, 2000)
    first = place(api, menu)
    paid = apply(api, first, code)
    assert paid["applied"] and paid["paid"] and paid["gift_card_cents"] == EXPECTED_TOTAL and paid["amount_due_cents"] == 0
    order = conn.execute("select payment_status, gift_card_cents, paid_at from public.orders where id = %s", (first["order_id"],)).fetchone()
    assert order is not None and order["payment_status"] == "paid" and order["gift_card_cents"] == EXPECTED_TOTAL
    # the whole paid fan-out ran, as for a card payment: kitchen ticket, order.paid, no payments row (no Stripe money)
    assert conn.execute("select count(*) as n from public.kitchen_tickets where order_id = %s", (first["order_id"],)).fetchone() == {"n": 1}
    assert conn.execute("select count(*) as n from pgmq.q_brigade_events where message ->> 'topic' = 'order.paid' "
                        "and message -> 'payload' ->> 'order_id' = %s", (first["order_id"],)).fetchone() == {"n": 1}
    assert conn.execute("select count(*) as n from public.payments where order_id = %s", (first["order_id"],)).fetchone() == {"n": 0}

    second = place(api, menu)
    part = apply(api, second, code)
    assert part["applied"] and not part["paid"] and part["gift_card_cents"] == 2000 - EXPECTED_TOTAL
    assert part["amount_due_cents"] == EXPECTED_TOTAL - (2000 - EXPECTED_TOTAL)
    assert conn.execute("select payment_status from public.orders where id = %s", (second["order_id"],)).fetchone() == {"payment_status": "unpaid"}
    assert balance(conn, card["gift_card_id"]) == {"balance_cents": 0, "status": "active", "ledger": 0}
    assert kinds(conn, card["gift_card_id"]) == [("issue", 2000), ("redeem", -EXPECTED_TOTAL), ("redeem", -(2000 - EXPECTED_TOTAL))]
    # an empty card answers why; a second card on the same order is refused; so is a paid order
    third = place(api, menu)
    assert apply(api, third, code) == {"applied": False, "reason": "empty"}
    assert sqlstate_of(lambda: apply(api, second, code)) == ("BR142", "gift_card_already_applied")
    assert sqlstate_of(lambda: apply(api, first, code)) == ("PT409", "order_already_paid")
    # somebody else's order (wrong token) is not found
    assert sqlstate_of(lambda: apply(api, {**third, "access_token": first["access_token"]}, code))[0] == "PT404"


def test_holds_go_back_when_the_order_is_cancelled_unpaid_or_left_unpaid(api: Api, conn: Conn, menu: Menu) -> None:
    b = menu.tenant.business_id
    card, code = issue(conn, api, b, 1000)
    order = place(api, menu)
    assert apply(api, order, code)["gift_card_cents"] == 1000
    api.run(menu.tenant.claims("staff"), "select public.set_order_status(%s, 'cancelled', 'customer left')", (order["order_id"],))
    assert balance(conn, card["gift_card_id"]) == {"balance_cents": 1000, "status": "active", "ledger": 1000}
    assert conn.execute("select gift_card_id, gift_card_cents from public.orders where id = %s", (order["order_id"],)).fetchone() == \
        {"gift_card_id": None, "gift_card_cents": 0}

    left = place(api, menu)
    assert apply(api, left, code)["gift_card_cents"] == 1000
    assert conn.execute("select app.expire_gift_cards() as r").fetchone() == {"r": {"expired": 0, "released": 0}}  # not a day yet
    now = conn.execute("select now() as t").fetchone()["t"]  # type: ignore[index]
    assert conn.execute("select app.expire_gift_cards(%s) as r", (now + timedelta(days=1, minutes=1),)).fetchone() == \
        {"r": {"expired": 0, "released": 1}}
    assert kinds(conn, card["gift_card_id"]) == [("issue", 1000), ("redeem", -1000), ("release", 1000), ("redeem", -1000), ("release", 1000)]
    assert balance(conn, card["gift_card_id"])["balance_cents"] == 1000


def test_cards_expire_per_the_business_setting(api: Api, conn: Conn, menu: Menu, factory: Factory) -> None:
    b = menu.tenant.business_id
    owner, manager = menu.tenant.claims("owner"), menu.tenant.claims("manager")
    assert sqlstate_of(lambda: api.run(manager, "select public.set_gift_card_expiry(%s, 12)", (b,)))[0] == "42501"
    assert sqlstate_of(lambda: api.run(owner, "select public.set_gift_card_expiry(%s, 0)", (b,))) == ("BR144", "invalid_gift_card_expiry")
    api.run(owner, "select public.set_gift_card_expiry(%s, 12)", (b,))
    card, code = issue(conn, api, b, 1500)
    row = conn.execute("select issued_at, expires_at from public.gift_cards where id = %s", (card["gift_card_id"],)).fetchone()
    assert row is not None and row["expires_at"] == conn.execute("select %s::timestamptz + interval '12 months' as t",
                                                                 (row["issued_at"],)).fetchone()["t"]  # type: ignore[index]
    # null: never expires
    api.run(owner, "select public.set_gift_card_expiry(%s, null)", (b,))
    forever, _ = issue(conn, api, b, 500)
    assert conn.execute("select expires_at from public.gift_cards where id = %s", (forever["gift_card_id"],)).fetchone() == {"expires_at": None}

    # past its expiry the card cannot pay (even before the nightly pass), and the pass writes off what was left
    conn.execute("update public.gift_cards set expires_at = now() - interval '1 second' where id = %s", (card["gift_card_id"],))
    assert check(api, b, code)["status"] == "expired"
    assert apply(api, place(api, menu), code) == {"applied": False, "reason": "expired"}
    assert conn.execute("select app.expire_gift_cards() as r").fetchone() == {"r": {"expired": 1, "released": 0}}
    assert kinds(conn, card["gift_card_id"]) == [("issue", 1500), ("expire", -1500)]
    assert balance(conn, card["gift_card_id"]) == {"balance_cents": 0, "status": "expired", "ledger": 0}
    assert conn.execute("select app.expire_gift_cards() as r").fetchone() == {"r": {"expired": 0, "released": 0}}


def test_balance_checks_are_limited_per_ip_at_the_boundary_and_wrong_codes_count(api: Api, conn: Conn, menu: Menu) -> None:
    b = menu.tenant.business_id
    _, code = issue(conn, api, b, 1000)
    ip = "203.0.113.9"
    for n in range(10):  # the default limit: 10 an hour per client IP, right or wrong codes alike
        answer = check(api, b, code if n % 2 else "WRONG-CODE-0000-0000", ip)
        assert answer["valid"] is (n % 2 == 1)
    state, hint = sqlstate_of(lambda: check(api, b, code, ip))
    assert (state, hint) == ("PT429", "rate_limited")
    # redemptions draw on the same limit (guessing through apply_gift_card is no way around it)
    assert sqlstate_of(lambda: apply(api, place(api, menu), code, ip))[0] == "PT429"
    # another client is not affected; the business's own staff are never limited
    assert check(api, b, code, "203.0.113.10")["valid"] is True
    staff = menu.tenant.claims("staff")
    for _ in range(12):
        assert rpc(api, staff, "select public.check_gift_card_balance(%s, %s)", (b, code), ip)["balance_cents"] == 1000


def test_the_business_wide_limit_counts_every_client(api: Api, conn: Conn, menu: Menu) -> None:
    b = menu.tenant.business_id
    conn.execute("select app.define_rate_limit('gift_card_code', 'business', 3600, 3)")
    for n in range(3):
        assert check(api, b, "NOPE-NOPE-NOPE-NOPE", f"192.0.2.{n}") == {"valid": False}
    assert sqlstate_of(lambda: check(api, b, "NOPE-NOPE-NOPE-NOPE", "192.0.2.99"))[0] == "PT429"


def test_bad_purchases_are_refused_and_change_nothing(api: Api, conn: Conn, menu: Menu, factory: Factory) -> None:
    b = menu.tenant.business_id
    for extra, expected in (({"amount_cents": 99}, "BR140"), ({"amount_cents": "12x"}, "BR140"),
                            ({"purchaser": {"email": "not-an-email"}}, "BR113"),
                            ({"business_id": "00000000-0000-0000-0000-000000000000"}, "PT404")):
        amount = extra.pop("amount_cents", 1000)
        assert sqlstate_of(lambda: buy(api, extra.pop("business_id", b), amount, **extra))[0] == expected  # type: ignore[arg-type]
    off = factory.tenant("No Shop", {"ordering": False, "bookings": False})
    assert sqlstate_of(lambda: buy(api, off.business_id, 1000))[0] == "PT403"
    assert conn.execute("select count(*) as n from public.gift_cards").fetchone() == {"n": 0}
    # a pending (unpaid) card has no code and pays nothing
    pending = buy(api, b, 1000)
    assert conn.execute("select code_hash, status, balance_cents from public.gift_cards where id = %s",
                        (pending["gift_card_id"],)).fetchone() == {"code_hash": None, "status": "pending", "balance_cents": 0}


def test_two_orders_racing_for_the_last_balance_never_overdraw(api: Api, conn: Conn, menu: Menu) -> None:
    b = menu.tenant.business_id
    card, code = issue(conn, api, b, 1000)
    first, second = place(api, menu), place(api, menu)
    results: dict[str, Any] = {}
    with api.session(Claims.anon()) as a:
        results["first"] = a.execute("select public.apply_gift_card(%s, %s, %s) as r",
                                     (first["order_id"], first["access_token"], code)).fetchone()["r"]  # type: ignore[index]
        racer = threading.Thread(target=lambda: results.__setitem__("second", apply(api, second, code, "198.51.100.8")))
        racer.start()
        # the second redemption waits on the card's row lock while the first is uncommitted
        while conn.execute("select count(*) as n from pg_stat_activity where wait_event_type = 'Lock' "
                           "and query like '%%apply_gift_card%%'").fetchone() != {"n": 1}:
            assert racer.is_alive()
    racer.join(timeout=30)
    assert results["first"]["gift_card_cents"] == 1000
    assert results["second"] == {"applied": False, "reason": "empty"}
    assert balance(conn, card["gift_card_id"]) == {"balance_cents": 0, "status": "active", "ledger": 0}


def test_refunds_split_card_first_and_a_cancelled_gift_paid_order_goes_back_onto_the_card(api: Api, conn: Conn, menu: Menu) -> None:
    b = menu.tenant.business_id
    owner = menu.tenant.claims("owner")
    card, code = issue(conn, api, b, 1000)
    mixed = place(api, menu)
    assert apply(api, mixed, code)["gift_card_cents"] == 1000
    due = EXPECTED_TOTAL - 1000
    event = {"id": "evt_mixed", "type": "checkout.session.completed", "created": 1, "data": {"object": {
        "id": "cs_mixed", "object": "checkout.session", "payment_status": "paid", "amount_total": due, "payment_intent": "pi_mixed",
        "metadata": {"order_id": mixed["order_id"], "business_id": str(b)}}}}
    # Stripe charged less than the amount due: not paid
    short = {**event, "id": "evt_short", "data": {"object": {**event["data"]["object"], "amount_total": due - 1}}}
    assert conn.execute("select app.apply_stripe_event(%s) as o", (json.dumps(short),)).fetchone() == {"o": "amount_mismatch"}
    assert conn.execute("select app.apply_stripe_event(%s) as o", (json.dumps(event),)).fetchone() == {"o": "paid"}

    def ask(amount: int) -> dict[str, Any]:
        return api.run(owner, "select public.request_refund(%s, %s) as r", (mixed["order_id"], amount))[0]["r"]

    first = ask(500)  # within the card part: all to Stripe
    assert (first["amount_cents"], first["gift_card_cents"], first["refund_cents"]) == (500, 0, 500)
    second = ask(400)  # the card part's last 101 to Stripe, the rest back onto the gift card
    assert (second["amount_cents"], second["gift_card_cents"], second["refund_cents"]) == (due - 500, 400 - (due - 500), 400)
    assert balance(conn, card["gift_card_id"])["balance_cents"] == 0  # nothing back until the refund succeeds
    conn.execute("select app.record_refund(%s, %s, %s, 're_2', 'failed', %s, 'declined')", (b, mixed["order_id"], second["refund_id"], due - 500))
    assert balance(conn, card["gift_card_id"])["balance_cents"] == 0  # a refused refund gives the card nothing either
    third = ask(400)
    conn.execute("select app.record_refund(%s, %s, %s, 're_3', 'succeeded', %s, null)", (b, mixed["order_id"], third["refund_id"], third["amount_cents"]))
    conn.execute("select app.record_refund(%s, %s, %s, 're_3', 'succeeded', %s, null)", (b, mixed["order_id"], third["refund_id"], third["amount_cents"]))
    assert balance(conn, card["gift_card_id"]) == {"balance_cents": third["gift_card_cents"], "status": "active", "ledger": third["gift_card_cents"]}
    assert sqlstate_of(lambda: ask(EXPECTED_TOTAL))[0] == "BR131"

    # an order paid wholly by a card, then cancelled: the automatic refund puts it all back, with nothing for Stripe
    full_card, full_code = issue(conn, api, b, 2000)
    order = place(api, menu)
    assert apply(api, order, full_code)["paid"] is True
    api.run(menu.tenant.claims("manager"), "select public.set_order_status(%s, 'cancelled', 'kitchen closed')", (order["order_id"],))
    assert conn.execute("select app.request_automatic_refund(%s, %s) as r", (b, order["order_id"])).fetchone() == {"r": None}
    assert conn.execute("select app.request_automatic_refund(%s, %s) as r", (b, order["order_id"])).fetchone() == {"r": None}
    assert balance(conn, full_card["gift_card_id"]) == {"balance_cents": 2000, "status": "active", "ledger": 2000}
    assert conn.execute("select payment_status from public.orders where id = %s", (order["order_id"],)).fetchone() == {"payment_status": "refunded"}


def test_the_code_lookup_uses_the_business_code_index(conn: Conn, menu: Menu) -> None:
    """A balance check or redemption finds the card by (business_id, code_hash), never by scanning the business's cards."""
    b = menu.tenant.business_id
    conn.execute("insert into public.gift_cards (business_id, initial_cents, currency, purchaser_email, status, code_hash, code_last4) "
                 "select %s, 1000, 'USD', 'bench@gift.test', 'active', md5(g::text) || md5((g + 1)::text), 'ABCD' "
                 "from generate_series(1, 3000) g", (b,))
    conn.execute("analyze public.gift_cards")
    row = conn.execute("explain (format json) select g.id from public.gift_cards g "
                       "where g.business_id = %s and g.code_hash = app.gift_card_code_hash('ABCD-EFGH-JKLM-NPQR')", (b,)).fetchone()
    assert row is not None
    text = json.dumps(row["QUERY PLAN"])
    assert "gift_cards_business_code_key" in text and "Seq Scan" not in text, text
