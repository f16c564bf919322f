"""Scheduled business payouts through Stripe Connect (issue 23 item 1), end to end: a week of real
payments, the worker's platform.payouts job, one transfer through the official SDK against the fake
Stripe with the payout's idempotency key, the signed transfer.created webhook arriving before the
worker records Stripe's answer, duplicates and redeliveries, a refused transfer, and the connected
account's bank payouts following payout.* in any order."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import psycopg
import pytest

from brigade.auth import Claims
from tests.conftest import Api, Factory
from tests.e2e.test_booking_flow import run_job
from tests.ordering_fixtures import Outside
from tests.ordering_kit import Menu, build_menu, order_payload, session_completed, signed, stripe_event
from worker import main as worker_main

Conn = psycopg.Connection[dict[str, Any]]


def webhook(outside: Outside, event: dict[str, Any]) -> dict[str, Any]:
    raw, headers = signed(event, outside.settings.stripe_webhook_secret)
    r = httpx.post(f"{outside.functions.url}/functions/v1/stripe-webhook", content=raw, headers=headers, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def last_week_of_sales(api: Api, conn: Conn, menu: Menu, orders: int) -> int:
    """`orders` paid orders, their payments and fees moved into the middle of the business's last complete
    week (its time zone); returns the week's gross."""
    b = menu.tenant.business_id
    gross = 0
    for n in range(orders):
        order = api.run(Claims.anon(), "select public.place_order(%s) as r", (json.dumps(order_payload(menu)),))[0]["r"]
        conn.execute("select app.apply_stripe_event(%s)", (json.dumps(session_completed(order, f"cs_{order['order_id']}", f"pi_{order['order_id']}")),))
        gross += order["total_cents"]
    conn.execute("set session_replication_role = replica")
    for table in ("payments", "platform_fees"):
        conn.execute(f"update public.{table} set created_at = (select lower(p) + (upper(p) - lower(p)) / 2 from "
                     "(select app.payout_period('weekly', b.time_zone, now()) as p from public.businesses b where b.id = %s) w) "
                     "where business_id = %s", (b, b))
    conn.execute("set session_replication_role = origin")
    return gross


def payout_of(conn: Conn, business_id: Any) -> dict[str, Any]:
    [row] = conn.execute("select * from public.business_payouts where business_id = %s", (business_id,)).fetchall()
    return row


def drain(outside: Outside) -> None:
    asyncio.run(worker_main.run(outside.settings, drain=True))


@pytest.mark.clock
def test_a_weekly_payout_is_transferred_and_paid_once(api: Api, conn: Conn, factory: Factory, outside: Outside) -> None:
    bistro, closed = factory.tenant("Payout Bistro", {"ordering": True}), factory.tenant("Closed Account Cafe", {"ordering": True})
    replayed = factory.tenant("Replayed Deli", {"ordering": True})
    menus = {t.business_id: build_menu(conn, t) for t in (bistro, closed, replayed)}
    for t, account in ((bistro, "acct_bistro01"), (closed, "acct_closed01"), (replayed, "acct_replay01")):
        conn.execute("select app.set_payment_account(%s, %s)", (t.business_id, account))
    gross = last_week_of_sales(api, conn, menus[bistro.business_id], 2)
    last_week_of_sales(api, conn, menus[closed.business_id], 1)
    last_week_of_sales(api, conn, menus[replayed.business_id], 1)
    fees = conn.execute("select sum(fee_cents) as s from public.platform_fees where business_id = %s", (bistro.business_id,)).fetchone()["s"]  # type: ignore[index]
    outside.stripe.refuse_destinations.add("acct_closed01")

    # Stripe's transfer.created reaches the webhook before the worker has recorded Stripe's answer
    delivered: list[dict[str, Any]] = []

    def webhook_first(transfer: dict[str, Any]) -> None:
        event = stripe_event("transfer.created", transfer)
        delivered.append(event)
        webhook(outside, event)

    outside.stripe.on_transfer = webhook_first

    assert run_job(outside, "platform.payouts")
    sent = payout_of(conn, bistro.business_id)
    assert (sent["status"], sent["gross_cents"], sent["net_cents"], sent["amount_due_cents"]) == ("processing", gross, gross - fees, gross - fees)
    assert sent["idempotency_key"] == f"payout:{sent['id']}" and sent["stripe_account_id"] == "acct_bistro01"
    # the deli's transfer was made by an earlier attempt whose answer was lost, so long ago that Stripe
    # forgot the idempotency key: the worker finds it by its transfer group instead of paying again
    late = payout_of(conn, replayed.business_id)
    outside.stripe.transfers_made.append({"id": "tr_test_lost", "object": "transfer", "amount": late["amount_due_cents"], "amount_reversed": 0,
                                          "currency": "usd", "destination": "acct_replay01", "reversed": False,
                                          "transfer_group": f"payout_{late['id']}", "metadata": {}})
    drain(outside)
    assert [t for t in outside.stripe.transfers() if t.form["destination"] == ["acct_replay01"]] == []
    assert (payout_of(conn, replayed.business_id)["status"], payout_of(conn, replayed.business_id)["stripe_transfer_id"]) == ("processing", "tr_test_lost")

    transfers = [t for t in outside.stripe.transfers() if t.form["destination"] == ["acct_bistro01"]]
    [transfer] = transfers
    form = {k: v[0] for k, v in transfer.form.items()}
    assert transfer.headers["idempotency-key"] == f"payout:{sent['id']}"
    assert (int(form["amount"]), form["currency"], form["metadata[payout_id]"], form["transfer_group"]) == \
        (gross - fees, "usd", str(sent["id"]), f"payout_{sent['id']}")
    paid = payout_of(conn, bistro.business_id)
    assert (paid["status"], paid["stripe_transfer_id"]) == ("paid", delivered[0]["data"]["object"]["id"]) and paid["paid_at"]

    # the duplicate webhook, an older transfer.updated after it, the redelivered request, the next day's run: nothing moves
    assert webhook(outside, delivered[0])["outcome"] == "duplicate"
    older = stripe_event("transfer.updated", {**delivered[0]["data"]["object"], "description": "edited"})
    webhook(outside, older)
    assert conn.execute("select outcome from public.stripe_events where id = %s", (older["id"],)).fetchone() is not None
    conn.execute("select app.emit('payout.transfer_requested', %s, %s)", (bistro.business_id, json.dumps({"payout_id": str(sent["id"])})))
    outside.stripe.on_transfer = None
    conn.execute("delete from app.scheduled_runs where job_name = 'platform.payouts'")
    assert run_job(outside, "platform.payouts")
    drain(outside)
    assert len([t for t in outside.stripe.transfers() if t.form["destination"] == ["acct_bistro01"]]) == 1
    again = payout_of(conn, bistro.business_id)
    assert (again["status"], again["paid_at"], again["stripe_transfer_id"]) == ("paid", paid["paid_at"], paid["stripe_transfer_id"])
    assert conn.execute("select count(*) as n from public.audit_log where business_id = %s and action = 'payout.paid'",
                        (bistro.business_id,)).fetchone() == {"n": 1}
    # a reversal arriving for a transfer that is paid cannot undo it (a paid payout is final)
    reversal = stripe_event("transfer.reversed", {**delivered[0]["data"]["object"], "amount_reversed": gross - fees, "reversed": True})
    webhook(outside, reversal)
    assert payout_of(conn, bistro.business_id)["status"] == "paid"

    # Stripe refused the other business's transfer (closed account): failed once, never retried, carried into its next payout
    refused = payout_of(conn, closed.business_id)
    assert refused["status"] == "failed" and refused["failure_reason"].startswith("account_invalid")
    assert len([t for t in outside.stripe.transfers() if t.form["destination"] == ["acct_closed01"]]) == 1
    assert refused["stripe_transfer_id"] is None and refused["carried_into_payout_id"] is None

    # the connected account's bank payout: payout.paid before payout.created; the older state never wins
    bank = {"id": "po_test_0001", "object": "payout", "amount": gross - fees, "currency": "usd", "arrival_date": 1_900_000_000,
            "status": "paid", "failure_code": None}
    for kind, status in (("payout.paid", "paid"), ("payout.created", "pending"), ("payout.updated", "in_transit")):
        event = stripe_event(kind, {**bank, "status": status})
        event["account"] = "acct_bistro01"
        webhook(outside, event)
    stranger = stripe_event("payout.paid", {**bank, "id": "po_stranger"})
    stranger["account"] = "acct_nobody99"
    webhook(outside, stranger)
    owner_sees = api.run(bistro.claims("owner"), "select stripe_payout_id, status, amount_cents from public.connect_payouts")
    assert owner_sees == [{"stripe_payout_id": "po_test_0001", "status": "paid", "amount_cents": gross - fees}]
    assert api.run(closed.claims("owner"), "select * from public.connect_payouts") == []
    assert api.run(closed.claims("owner"), "select id from public.business_payouts where business_id = %s", (bistro.business_id,)) == []
