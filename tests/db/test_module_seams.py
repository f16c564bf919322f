"""Where modules built side by side meet: booking payments carry the platform fee of the plan, and the
plan's included voice credits reach the voice ledger once per billing period (topped up on upgrade)."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import psycopg

from brigade.settings import Settings
from tests.bookings_kit import build_activity, hold, pay
from tests.conftest import Api, Factory
from worker import main as worker_main


def test_a_paid_booking_records_its_platform_fee(api: Api, conn: psycopg.Connection[dict[str, Any]], factory: Factory) -> None:
    tenant = factory.tenant("Escape Club", {"bookings": True})
    booking = hold(api, build_activity(conn, tenant))
    assert pay(conn, booking) == "paid"
    fee = conn.execute("select order_id, booking_id, base_amount_cents, fee_cents from public.platform_fees where business_id = %s",
                       (tenant.business_id,)).fetchall()
    expected = conn.execute("select app.platform_fee_cents(%s, %s) as f", (tenant.business_id, booking["total_cents"])).fetchone()["f"]  # type: ignore[index]
    assert fee == [{"order_id": None, "booking_id": uuid.UUID(booking["booking_id"]), "base_amount_cents": booking["total_cents"], "fee_cents": expected}]
    assert expected > 0


def balance(conn: psycopg.Connection[dict[str, Any]], business_id: Any) -> int:
    row = conn.execute("select balance from public.voice_credit_balances where business_id = %s", (business_id,)).fetchone()
    return row["balance"] if row else 0


def allowance(conn: psycopg.Connection[dict[str, Any]], plan: str) -> int:
    return conn.execute("select voice_credits_included as c from public.plans where key = %s", (plan,)).fetchone()["c"]  # type: ignore[index]


def test_plan_voice_credits_once_per_period_and_topped_up_on_upgrade(conn: psycopg.Connection[dict[str, Any]], factory: Factory,
                                                                       settings: Settings) -> None:
    tenant = factory.tenant("Phone Pizza", {"ordering": True, "voice": True})
    b = tenant.business_id
    conn.execute("update public.business_subscriptions set plan_key = 'starter' where business_id = %s", (b,))
    before = balance(conn, b)
    for _ in range(2):  # a redelivered period start grants nothing more
        conn.execute("select app.emit('billing.period_started', %s, %s)", (b, json.dumps({"plan_key": "starter"})))
    asyncio.run(worker_main.run(settings, idle=True))
    assert balance(conn, b) - before == allowance(conn, "starter") > 0
    conn.execute("update public.business_subscriptions set plan_key = 'growth' where business_id = %s", (b,))
    conn.execute("select app.emit('business.plan_changed', %s, %s)", (b, json.dumps({"before": "starter", "after": "growth"})))
    asyncio.run(worker_main.run(settings, idle=True))
    assert balance(conn, b) - before == allowance(conn, "growth"), "an upgrade tops up to the new allowance, not on top of the old"
    conn.execute("update public.business_subscriptions set plan_key = 'starter' where business_id = %s", (b,))
    assert conn.execute("select app.top_up_plan_voice_credits(%s) as g", (b,)).fetchone() == {"g": 0}, "a downgrade takes nothing back"
    # the next period grants again
    conn.execute("update public.business_subscriptions set current_period_start = current_period_start + interval '1 month' where business_id = %s", (b,))
    assert conn.execute("select app.top_up_plan_voice_credits(%s) as g", (b,)).fetchone() == {"g": allowance(conn, "starter")}


def test_erasing_a_customer_erases_them_from_their_calls(conn: psycopg.Connection[dict[str, Any]], factory: Factory) -> None:
    tenant = factory.tenant("Phone Pasta", {"ordering": True, "voice": True, "crm": True})
    b, venue = tenant.business_id, tenant.venues[0]
    cid = conn.execute("insert into public.customers (business_id, full_name, phone) values (%s, 'Carl Caller', '+12125550177') returning id",
                       (b,)).fetchone()["id"]  # type: ignore[index]
    insert = ("insert into public.calls (business_id, venue_id, call_sid, from_number, to_number, customer_id, turns, delivery_address, "
              "status, outcome, duration_seconds) values (%s, %s, %s, %s, '+12125550150', %s, %s, %s, 'completed', 'abandoned', 42)")
    turns = json.dumps([{"caller": "two lattes to 5 Elm Street please"}])
    conn.execute(insert, (b, venue, "CA" + "1" * 32, "+12125550177", cid, turns, json.dumps({"line1": "5 Elm Street"})))
    conn.execute(insert, (b, venue, "CA" + "2" * 32, "+12125550177", None, turns, None))  # before they were recognised
    conn.execute(insert, (b, venue, "CA" + "3" * 32, "+12125550999", None, turns, None))  # someone else
    conn.execute("select app.anonymise_customer(%s, %s)", (b, cid))
    rows = conn.execute("select call_sid, from_number, turns, delivery_address, outcome, duration_seconds from public.calls "
                        "where business_id = %s order by call_sid", (b,)).fetchall()
    assert [(r["from_number"], r["turns"], r["delivery_address"]) for r in rows] == [
        ("erased", [], None), ("erased", [], None), ("+12125550999", json.loads(turns), None)]
    assert all(r["outcome"] == "abandoned" and r["duration_seconds"] == 42 for r in rows), "the business facts stay"


def test_operator_metrics_count_the_voice_credits_calls_burned(conn: psycopg.Connection[dict[str, Any]], factory: Factory) -> None:
    tenant = factory.tenant("Dial Diner", {"ordering": True, "voice": True})
    b = tenant.business_id
    before = conn.execute("select voice_credits_burned_30d as c, voice_call_seconds_30d as s from public.operator_platform_metrics").fetchone()
    conn.execute("select app.grant_voice_credits(%s, 100, 'test', 'seam-test')", (b,))
    call = conn.execute("insert into public.calls (business_id, venue_id, call_sid, from_number, to_number) values (%s, %s, %s, '+12125550100', "
                        "'+12125550150') returning id", (b, tenant.venues[0], "CA" + "7" * 32)).fetchone()["id"]  # type: ignore[index]
    conn.execute("insert into public.credit_transactions (business_id, kind, credits, call_id, call_sid, call_seconds) values (%s, 'call', -20, %s, %s, 75)",
                 (b, call, "CA" + "7" * 32))
    after = conn.execute("select voice_credits_burned_30d as c, voice_call_seconds_30d as s from public.operator_platform_metrics").fetchone()
    assert (after["c"] - before["c"], after["s"] - before["s"]) == (20, 75)  # type: ignore[index]
