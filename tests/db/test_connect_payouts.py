"""The payout ledger's rules for Stripe Connect (issue 23 item 1), at fixed instants: a negative week is
carried forward, a failed transfer's amount lands in the next payout exactly once, a business without a
connected account waits without losing its carry, manual businesses and overlapping periods are never sent, statuses only move
forward, a sent payout's amounts are frozen, and transfer webhooks pay or fail only a processing payout."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest

from tests.conftest import Factory

Conn = psycopg.Connection[dict[str, Any]]
W = datetime(2030, 1, 7, tzinfo=timezone.utc)  # a Monday 00:00 UTC; the test businesses are on UTC


def week(n: int) -> tuple[datetime, datetime]:
    return W + timedelta(weeks=n), W + timedelta(weeks=n + 1)


def payout(conn: Conn, business_id: Any, n: int, gross: int, fees: int = 0, refunds: int = 0) -> Any:
    start, end = week(n)
    return conn.execute("insert into public.business_payouts (business_id, period_start, period_end, currency, gross_cents, "
                        "platform_fee_cents, refunds_cents, net_cents) values (%s, %s, %s, 'USD', %s, %s, %s, %s) returning id",
                        (business_id, start, end, gross, fees, refunds, gross - fees - refunds)).fetchone()["id"]  # type: ignore[index]


def state(conn: Conn, payout_id: Any) -> dict[str, Any]:
    row = conn.execute("select status, carried_in_cents, amount_due_cents, carried_into_payout_id, idempotency_key "
                       "from public.business_payouts where id = %s", (payout_id,)).fetchone()
    assert row is not None
    return row


def transfer_event(business_id: Any, payout_id: Any, kind: str, transfer_id: str, amount: int, **extra: Any) -> str:
    return json.dumps({"id": f"evt_{transfer_id}_{kind}", "type": kind, "data": {"object": {
        "id": transfer_id, "object": "transfer", "amount": amount, "amount_reversed": 0, "reversed": False,
        "metadata": {"kind": "business_payout", "business_id": str(business_id), "payout_id": str(payout_id)}, **extra}}})


def test_carry_forward_failure_and_forward_only_statuses(conn: Conn, factory: Factory) -> None:
    shop = factory.tenant("Carry Shop", {"ordering": True}).business_id
    later = factory.tenant("No Account Yet", {"ordering": True}).business_id
    manual = factory.tenant("Manual Payouts", {"ordering": True}).business_id
    conn.execute("update public.businesses set time_zone = 'UTC' where id in (%s, %s, %s)", (shop, later, manual))
    conn.execute("update public.businesses set stripe_account_id = 'acct_carryshop' where id = %s", (shop,))
    conn.execute("update public.businesses set payout_schedule = 'manual', stripe_account_id = 'acct_manual01' where id = %s", (manual,))

    refunds_only = payout(conn, shop, 0, 0, refunds=500)           # a week of refunds only: -500
    busy = payout(conn, shop, 1, 1000, fees=60)                    # 940
    current = payout(conn, shop, 2, 300)                           # the period is not over at the first run
    waits = payout(conn, later, 0, 0, refunds=200)
    waits_too = payout(conn, later, 1, 700)
    never = payout(conn, manual, 0, 900)
    # the operator computed a payout over a period overlapping two scheduled weeks of another business: none of them is sent
    overlapping = factory.tenant("Overlap Grill", {"ordering": True}).business_id
    conn.execute("update public.businesses set time_zone = 'UTC', stripe_account_id = 'acct_overlap1' where id = %s", (overlapping,))
    doubled = [payout(conn, overlapping, 0, 100), payout(conn, overlapping, 1, 100)]
    conn.execute("insert into public.business_payouts (business_id, period_start, period_end, currency, gross_cents, net_cents) "
                 "values (%s, %s, %s, 'USD', 150, 150)", (overlapping, week(0)[0] + timedelta(days=3), week(1)[0] + timedelta(days=3)))

    sent = conn.execute("select app.prepare_due_payouts(%s) as p", (week(2)[0],)).fetchone()["p"]  # type: ignore[index]
    assert [(p["payout_id"], p["amount_due_cents"]) for p in sent] == [(str(busy), 440)]
    assert state(conn, refunds_only) | {"idempotency_key": None} == {
        "status": "carried_forward", "carried_in_cents": 0, "amount_due_cents": -500, "carried_into_payout_id": busy, "idempotency_key": None}
    assert state(conn, busy) == {"status": "processing", "carried_in_cents": -500, "amount_due_cents": 440, "carried_into_payout_id": None,
                                 "idempotency_key": f"payout:{busy}"}
    assert state(conn, current)["status"] == "pending"
    assert state(conn, never)["status"] == "pending", "a manual business is paid by the operator"
    assert [state(conn, p)["status"] for p in doubled] == ["pending", "pending"]
    # no connected account: the negative week is carried, the next one waits holding the carry
    assert state(conn, waits)["status"] == "carried_forward"
    assert state(conn, waits_too) == {"status": "pending", "carried_in_cents": -200, "amount_due_cents": 500,
                                      "carried_into_payout_id": None, "idempotency_key": None}
    events = conn.execute("select message -> 'payload' ->> 'payout_id' as id from pgmq.q_brigade_events "
                          "where message ->> 'topic' = 'payout.transfer_requested'").fetchall()
    assert events == [{"id": str(busy)}]

    # Stripe refuses the transfer: failed; the next run carries its 440 into the next payout, once
    assert conn.execute("select app.record_payout_transfer(%s, %s, null, 'account_invalid: closed') as s", (shop, busy)).fetchone() == {"s": "failed"}
    conn.execute("update public.businesses set stripe_account_id = 'acct_nowready' where id = %s", (later,))
    sent = conn.execute("select app.prepare_due_payouts(%s) as p", (week(3)[0],)).fetchone()["p"]  # type: ignore[index]
    assert sorted((p["payout_id"], p["amount_due_cents"]) for p in sent) == sorted([(str(current), 740), (str(waits_too), 500)])
    assert state(conn, busy)["carried_into_payout_id"] == current
    assert conn.execute("select app.prepare_due_payouts(%s) as p", (week(4)[0],)).fetchone() == {"p": []}
    assert state(conn, current)["amount_due_cents"] == 740 and state(conn, waits_too)["amount_due_cents"] == 500

    # the transfer's webhooks: a reversal fails a processing payout; a transfer.created after it cannot pay it
    request = conn.execute("select app.payout_transfer_request(%s, %s) as r", (shop, current)).fetchone()["r"]  # type: ignore[index]
    assert (request["amount"], request["destination"], request["idempotency_key"]) == (740, "acct_carryshop", f"payout:{current}")
    assert conn.execute("select app.apply_stripe_connect_event(%s) as o",
                        (transfer_event(shop, current, "transfer.reversed", "tr_1", 740, amount_reversed=740, reversed=True),)).fetchone() == {"o": "payout_failed"}
    assert conn.execute("select app.apply_stripe_connect_event(%s) as o", (transfer_event(shop, current, "transfer.created", "tr_1", 740),)).fetchone() == {"o": "stale"}
    assert state(conn, current)["status"] == "failed"
    assert conn.execute("select app.payout_transfer_request(%s, %s) as r", (shop, current)).fetchone() == {"r": None}
    # the worker's late answer for a payout a webhook settled changes nothing; another transfer id is not ours
    assert conn.execute("select app.record_payout_transfer(%s, %s, 'tr_1', null) as s", (shop, current)).fetchone() == {"s": "failed"}
    conn.execute("select app.record_payout_transfer(%s, %s, 'tr_2', null)", (later, waits_too))
    assert conn.execute("select app.apply_stripe_connect_event(%s) as o", (transfer_event(later, waits_too, "transfer.created", "tr_9", 500),)).fetchone() == {"o": "other_transfer"}
    assert conn.execute("select app.apply_stripe_connect_event(%s) as o", (transfer_event(later, waits_too, "transfer.created", "tr_2", 500),)).fetchone() == {"o": "payout_paid"}
    assert conn.execute("select status from public.business_payouts where id = %s", (waits_too,)).fetchone() == {"status": "paid"}

    # statuses never go back; a sent payout keeps its amounts; a paid one is final; compute_payout leaves them alone
    for sql, code in (("update public.business_payouts set status = 'pending' where id = %s", "BR743"),
                      ("update public.business_payouts set status = 'processing' where id = %s", "BR743"),
                      ("update public.business_payouts set carried_in_cents = 0 where id = %s", "BR743")):
        with pytest.raises(psycopg.Error) as err:
            conn.execute(sql, (current,))
        assert err.value.diag.sqlstate == code, sql
    with pytest.raises(psycopg.Error) as err:
        conn.execute("update public.business_payouts set status = 'failed' where id = %s", (waits_too,))
    assert err.value.diag.sqlstate == "BR742"
    start, end = week(2)
    conn.execute("select app.compute_payout(%s, %s, %s)", (shop, start, end))
    assert state(conn, current) | {"carried_into_payout_id": None} == {
        "status": "failed", "carried_in_cents": 440, "amount_due_cents": 740, "carried_into_payout_id": None, "idempotency_key": f"payout:{current}"}
    assert conn.execute("select app.apply_stripe_connect_event(%s) as o", (json.dumps({
        "id": "evt_x", "type": "transfer.created", "data": {"object": {"id": "tr_unknown", "metadata": {"payout_id": "nope"}}}}),)).fetchone() \
        == {"o": "unknown_payout"}
