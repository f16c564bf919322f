"""Driver payouts (issue 23 item 2), end to end: a week of own-driver earnings rolled up per driver by the
platform.payouts job; the driver with a Connect Express account paid by one transfer (official SDK, fake
Stripe, key `driver-payout:<id>`, the signed transfer.created webhook arriving first); a refused transfer
and a driver without an account exported as CSV and marked paid by the manager; each earning pending →
in_payout → paid exactly once; drivers reading their own statements only."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import psycopg
import pytest

from brigade.auth import Claims
from tests.conftest import Api, Factory, sqlstate
from tests.dispatch_kit import Fleet, add_driver, make_fleet, ready_order
from tests.e2e.test_booking_flow import run_job
from tests.e2e.test_connect_payouts import webhook
from tests.ordering_fixtures import Outside
from tests.ordering_kit import stripe_event
from worker import main as worker_main

Conn = psycopg.Connection[dict[str, Any]]


def earning(api: Api, conn: Conn, fleet: Fleet, driver: str, net: int, *, last_week: bool = True) -> Any:
    """A delivered own-driver delivery of a real paid order, with its earning (net `net`) in the business's
    last complete week, or now."""
    b = fleet.tenant.business_id
    order = ready_order(api, conn, fleet, status="accepted")
    delivery = conn.execute(
        "insert into public.deliveries (business_id, venue_id, order_id, external_delivery_id, pickup, dropoff, currency, dropoff_pin, "
        "provider, driver_business_id, driver_id) values (%s, %s, %s, %s, '{}', '{}', 'USD', '1234', 'own', %s, %s) returning id",
        (b, fleet.menu.venue_id, order["order_id"], f"brg-{order['order_id']}", b, fleet.drivers[driver])).fetchone()["id"]  # type: ignore[index]
    at = "(select lower(p) + (upper(p) - lower(p)) / 2 from (select app.payout_period('weekly', b.time_zone, now()) as p " \
         "from public.businesses b where b.id = %(b)s) w)" if last_week else "now()"
    return conn.execute(
        "insert into public.driver_earnings (business_id, delivery_id, order_id, venue_id, driver_business_id, driver_id, base_fee_cents, "
        "distance_fee_cents, tip_cents, surge_multiplier, surge_cents, platform_fee_cents, net_cents, currency, earned_at) "
        f"values (%(b)s, %(d)s, %(o)s, %(v)s, %(b)s, %(driver)s, %(net)s + 50, 0, 0, 1, 0, 50, %(net)s, 'USD', {at}) returning id",
        {"b": b, "d": delivery, "o": order["order_id"], "v": fleet.menu.venue_id, "driver": fleet.drivers[driver], "net": net}
    ).fetchone()["id"]  # type: ignore[index]


def earnings(conn: Conn, ids: list[Any]) -> list[str]:
    return [conn.execute("select payout_status from public.driver_earnings where id = %s", (i,)).fetchone()["payout_status"]  # type: ignore[index]
            for i in ids]


def payout_of(conn: Conn, fleet: Fleet, driver: str) -> dict[str, Any]:
    [row] = conn.execute("select * from public.driver_payouts where driver_id = %s", (fleet.drivers[driver],)).fetchall()
    return row


@pytest.mark.clock
def test_drivers_are_paid_by_transfer_or_by_hand_each_earning_once(api: Api, conn: Conn, factory: Factory, outside: Outside,
                                                                    operator: Claims) -> None:
    fleet = make_fleet(conn, factory)
    b = fleet.tenant.business_id
    for item in fleet.menu.stock.values():  # six orders: more oat milk than the menu's litre
        conn.execute("insert into public.stock_movements (business_id, venue_id, stock_item_id, delta, reason) values (%s, %s, %s, 10, 'count')",
                     (b, fleet.menu.venue_id, item))
    for name in ("express", "cash", "closed"):
        add_driver(conn, factory, fleet, name)
    for name, account in (("express", "acct_driverexp1"), ("closed", "acct_driverclo1")):
        api.run(operator, "select public.set_driver_payout_account(%s, %s, %s)", (b, fleet.drivers[name], account))
    assert sqlstate(lambda: api.run(fleet.tenant.claims("owner"), "select public.set_driver_payout_account(%s, %s, 'acct_mine123')",
                                    (b, fleet.drivers["cash"]))) == "42501"
    express = [earning(api, conn, fleet, "express", 700), earning(api, conn, fleet, "express", 450)]
    this_week = earning(api, conn, fleet, "express", 999, last_week=False)
    cash, closed = earning(api, conn, fleet, "cash", 600), earning(api, conn, fleet, "closed", 380)
    outside.stripe.refuse_destinations.add("acct_driverclo1")
    delivered: list[dict[str, Any]] = []

    def webhook_first(transfer: dict[str, Any]) -> None:
        if transfer["destination"] == "acct_driverexp1":
            delivered.append(stripe_event("transfer.created", transfer))
            webhook(outside, delivered[-1])

    outside.stripe.on_transfer = webhook_first

    assert run_job(outside, "platform.payouts")
    sent = payout_of(conn, fleet, "express")
    assert (sent["method"], sent["status"], sent["amount_cents"], sent["earnings_count"]) == ("transfer", "processing", 1150, 2)
    assert earnings(conn, express + [this_week, cash]) == ["in_payout", "in_payout", "pending", "in_payout"]
    assert (payout_of(conn, fleet, "cash")["method"], payout_of(conn, fleet, "cash")["status"]) == ("manual", "pending")
    asyncio.run(worker_main.run(outside.settings, drain=True))

    [transfer] = [t for t in outside.stripe.transfers() if t.form["destination"] == ["acct_driverexp1"]]
    assert transfer.headers["idempotency-key"] == f"driver-payout:{sent['id']}" and transfer.form["amount"] == ["1150"]
    paid = payout_of(conn, fleet, "express")
    assert (paid["status"], paid["stripe_transfer_id"]) == ("paid", delivered[0]["data"]["object"]["id"])
    assert earnings(conn, express + [this_week]) == ["paid", "paid", "pending"]
    # Stripe refused the closed account: the payout waits for manual payment, its earning stays in it
    refused = payout_of(conn, fleet, "closed")
    assert (refused["method"], refused["status"], refused["failure_reason"].split(":")[0]) == ("manual", "pending", "account_invalid")
    assert earnings(conn, [closed]) == ["in_payout"]

    # the duplicate webhook, the redelivered request, the next day's run: no second transfer, no second payout
    assert webhook(outside, delivered[0])["outcome"] == "duplicate"
    conn.execute("select app.emit('driver_payout.transfer_requested', %s, %s)", (b, json.dumps({"driver_payout_id": str(sent["id"])})))
    conn.execute("delete from app.scheduled_runs where job_name = 'platform.payouts'")
    assert run_job(outside, "platform.payouts")
    asyncio.run(worker_main.run(outside.settings, drain=True))
    assert len(outside.stripe.transfers()) == 2 and conn.execute("select count(*) as n from public.driver_payouts").fetchone() == {"n": 3}
    assert payout_of(conn, fleet, "express")["paid_at"] == paid["paid_at"]

    # drivers read their own payout and its earnings; nobody else's
    me = fleet.claims("express")
    assert [r["id"] for r in api.run(me, "select id from public.driver_payouts")] == [sent["id"]]
    assert sorted(r["id"] for r in api.run(me, "select id from public.driver_earnings where driver_payout_id = %s", (sent["id"],))) == sorted(express)
    assert api.run(fleet.claims("cash"), "select id from public.driver_payouts where id = %s", (sent["id"],)) == []
    assert api.run(factory.tenant("Elsewhere", {"dispatch": True}).claims("owner"), "select id from public.driver_payouts") == []

    # the manager exports what is left to pay by hand and marks one paid, once
    manager = fleet.tenant.claims("manager")
    csv = api.run(manager, "select public.driver_payouts_csv(%s) as c", (b,))[0]["c"].splitlines()
    assert csv[0].startswith("driver_payout_id,") and sorted(line.split(",")[3] for line in csv[1:]) == ["Cash", "Closed"]
    cash_payout = payout_of(conn, fleet, "cash")["id"]
    assert sqlstate(lambda: api.run(fleet.tenant.claims("staff"), "select public.mark_driver_payout_paid(%s, %s)", (b, cash_payout))) == "42501"
    assert api.run(manager, "select public.mark_driver_payout_paid(%s, %s) as r", (b, cash_payout))[0]["r"]["paid"] is True
    assert api.run(manager, "select public.mark_driver_payout_paid(%s, %s) as r", (b, cash_payout))[0]["r"]["paid"] is False
    assert sqlstate(lambda: api.run(manager, "select public.mark_driver_payout_paid(%s, %s)", (b, sent["id"]))) == "BR561"
    assert earnings(conn, [cash, closed]) == ["paid", "in_payout"]
    assert len(api.run(manager, "select public.driver_payouts_csv(%s) as c", (b,))[0]["c"].splitlines()) == 2

    # an earning never goes back, a paid payout never changes
    assert sqlstate(lambda: conn.execute("update public.driver_earnings set payout_status = 'pending', driver_payout_id = null "
                                         "where id = %s", (cash,))) == "BR560"
    assert sqlstate(lambda: conn.execute("update public.driver_payouts set amount_cents = 1 where id = %s", (sent["id"],))) == "BR561"
