"""The voice credit ledger and its rules in the database: who may grant, idempotent grants, the balance
kept by triggers, append-only rows, overdraft only by a call's own burn, numbers owned once."""

from __future__ import annotations

import json
import secrets
from typing import Any

import psycopg
import pytest

from brigade.auth import Claims
from tests.conftest import Api, Factory, Tenant

Conn = psycopg.Connection[dict[str, Any]]


@pytest.fixture
def shop(factory: Factory, conn: Conn) -> Tenant:
    t = factory.tenant("Voice Shop", {"ordering": True, "voice": True})
    conn.execute("insert into public.voice_numbers (business_id, venue_id, phone_number) values (%s, %s, '+15550001111')",
                 (t.business_id, t.venues[0]))
    return t


def balance(conn: Conn, t: Tenant) -> int:
    row = conn.execute("select balance from public.voice_credit_balances where business_id = %s", (t.business_id,)).fetchone()
    return row["balance"] if row else 0


def sid() -> str:
    return "CA" + secrets.token_hex(16)


def test_only_the_operator_or_service_grants(api: Api, shop: Tenant, operator: Claims, conn: Conn) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        api.run(shop.claims("owner"), "select public.grant_voice_credits(%s, 500, 'free money')", (shop.business_id,))
    assert api.run(operator, "select public.grant_voice_credits(%s, 500, 'top-up') as b", (shop.business_id,)) == [{"b": 500}]
    assert api.run(Claims.service(), "select public.grant_voice_credits(%s, 50, 'plan', 'plan:pro:2026-11') as b",
                   (shop.business_id,)) == [{"b": 550}]
    assert api.run(Claims.service(), "select public.grant_voice_credits(%s, 50, 'plan', 'plan:pro:2026-11') as b",
                   (shop.business_id,)) == [{"b": 550}], "the same key counts once"
    audit = conn.execute("select count(*) as n from public.audit_log where business_id = %s and action = 'voice.credits_granted'",
                         (shop.business_id,)).fetchone()
    assert audit == {"n": 2}


def test_balance_rules(conn: Conn, shop: Tenant) -> None:
    b = shop.business_id
    with pytest.raises(psycopg.Error) as zero:
        conn.execute("select app.grant_voice_credits(%s, 0, 'nothing')", (b,))
    assert zero.value.sqlstate == "BR402"
    conn.execute("select app.grant_voice_credits(%s, 25, 'top-up')", (b,))
    with pytest.raises(psycopg.Error) as below:
        conn.execute("select app.grant_voice_credits(%s, -26, 'too much')", (b,))
    assert below.value.sqlstate == "BR401" and balance(conn, shop) == 25

    # a 61-second call costs 20 and may overdraw: the minutes were spoken
    call = sid()
    start = conn.execute("select app.voice_start_call(%s, '+14155550100', '+15550001111') as r", (call,)).fetchone()["r"]  # type: ignore[index]
    assert start["decision"] == "answer"
    assert conn.execute("select app.voice_end_call(%s, 'completed', 61) as r", (call,)).fetchone()["r"]["credits"] == 20  # type: ignore[index]
    assert conn.execute("select app.voice_end_call(%s, 'completed', 61) as r", (call,)).fetchone()["r"]["charged"] is False  # type: ignore[index]
    assert balance(conn, shop) == 5
    call2 = sid()
    conn.execute("select app.voice_start_call(%s, '+14155550100', '+15550001111')", (call2,))
    conn.execute("select app.voice_end_call(%s, 'completed', 60)", (call2,))
    assert balance(conn, shop) == -5
    total = conn.execute("select sum(credits) as s from public.credit_transactions where business_id = %s", (b,)).fetchone()
    assert total == {"s": -5}, "the balance is the ledger's sum"
    nxt = conn.execute("select app.voice_start_call(%s, '+14155550100', '+15550001111') as r", (sid(),)).fetchone()["r"]  # type: ignore[index]
    assert (nxt["decision"], nxt["forward_reason"]) == ("forward", "no_credits")
    with pytest.raises(psycopg.Error) as short:
        conn.execute("select app.grant_voice_credits(%s, -1, 'adjust')", (b,))
    assert short.value.sqlstate == "BR401"


@pytest.mark.parametrize(("seconds", "credits"), [(0, 0), (1, 10), (59, 10), (60, 10), (61, 20), (600, 100), (601, 110)])
def test_every_started_minute_costs_ten(conn: Conn, seconds: int, credits: int) -> None:
    assert conn.execute("select app.voice_call_credits(%s) as c", (seconds,)).fetchone() == {"c": credits}


def test_ledger_is_append_only_and_calls_move_forward(conn: Conn, shop: Tenant) -> None:
    conn.execute("select app.grant_voice_credits(%s, 100, 'top-up')", (shop.business_id,))
    for statement in ("update public.credit_transactions set credits = 1000", "delete from public.credit_transactions"):
        with pytest.raises(psycopg.Error) as exc:
            conn.execute(statement)
        assert exc.value.sqlstate == "BR006"
    call = sid()
    conn.execute("select app.voice_start_call(%s, '+14155550100', '+15550001111')", (call,))
    conn.execute("select app.voice_end_call(%s, 'no-answer', 0)", (call,))
    row = conn.execute("select status, outcome, credits_charged from public.calls where call_sid = %s", (call,)).fetchone()
    assert row == {"status": "completed", "outcome": "abandoned", "credits_charged": 0}
    for statement in ("update public.calls set outcome = 'ordered'", "update public.calls set status = 'in_progress'"):
        with pytest.raises(psycopg.Error) as exc:
            conn.execute(statement)
        assert exc.value.sqlstate == "BR404"


def test_a_number_rings_one_business(conn: Conn, factory: Factory, shop: Tenant) -> None:
    other = factory.tenant("Other", {"voice": True})
    with pytest.raises(psycopg.Error) as exc:
        conn.execute("insert into public.voice_numbers (business_id, venue_id, phone_number) values (%s, %s, '+15550001111')",
                     (other.business_id, other.venues[0]))
    assert exc.value.sqlstate == "BR403"
    assert conn.execute("select app.voice_start_call(%s, '+14155550100', '+15559999999') as r", (sid(),)).fetchone() == {"r": None}


def test_each_turn_finds_its_call_and_number_by_index(conn: Conn, shop: Tenant) -> None:
    conn.execute("insert into public.calls (business_id, venue_id, call_sid, from_number, to_number) "
                 "select %s, %s, 'CA' || md5(g::text), '+1415555' || lpad(g::text, 4, '0'), '+15550001111' "
                 "from generate_series(1, 5000) g", (shop.business_id, shop.venues[0]))
    conn.execute("insert into public.voice_numbers (business_id, venue_id, phone_number) "
                 "select %s, %s, '+1666' || lpad(g::text, 7, '0') from generate_series(1, 3000) g", (shop.business_id, shop.venues[0]))
    conn.execute("analyze public.calls")
    conn.execute("analyze public.voice_numbers")
    for query, index in (("select c.* from public.calls c where c.call_sid = 'CA' || md5('42') limit 1 for update", "calls_sid_idx"),
                         ("select n.* from public.voice_numbers n where n.phone_number = '+15550001111' and n.is_active limit 1",
                          "voice_numbers_phone_idx")):
        row = conn.execute("explain (format json) " + query).fetchone()
        assert row is not None and index in json.dumps(row["QUERY PLAN"]), row
