"""The outbox consumer in-process: once-only handling, retries with backoff, dead letters, delays."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest

from brigade.auth import Claims
from brigade.db import open_pool
from brigade.settings import Settings
from tests.conftest import Api
from tests.worker import plugin
from tests.worker.conftest import emit, handled, queue_depth
from worker import main as worker_main
from worker.consumer import Consumer, backoff_seconds
from worker.registry import Resources, load_plugins, registry


async def drain(settings: Settings) -> Consumer:
    return await worker_main.run(settings, drain=True)


async def test_committed_event_is_handled_once_and_rolled_back_never(wsettings: Settings, conn: psycopg.Connection[dict[str, Any]]) -> None:
    ids = []
    with conn.transaction():
        ids = [emit(conn, "test.record", {"n": i}) for i in range(3)]
    with pytest.raises(RuntimeError):
        with conn.transaction():
            emit(conn, "test.record", {"n": "rolled back"})
            raise RuntimeError("abort")
    consumer = await drain(wsettings)
    rows = handled(conn)
    assert [r["msg_id"] for r in rows] == ids
    assert [r["payload"] for r in rows] == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert consumer.handled == 3 and consumer.failed == 0
    assert queue_depth(conn) == 0
    await drain(wsettings)
    assert len(handled(conn)) == 3, "a second run handles nothing again"


async def test_unknown_topics_are_acknowledged(wsettings: Settings, conn: psycopg.Connection[dict[str, Any]]) -> None:
    emit(conn, "nobody.listens")
    consumer = await drain(wsettings)
    assert consumer.handled == 1 and queue_depth(conn) == 0 and queue_depth(conn, "brigade_events_dead") == 0


async def test_failing_handler_backs_off_then_dies_and_replays(
    wsettings: Settings, conn: psycopg.Connection[dict[str, Any]], api: Api, operator: Claims
) -> None:
    msg_id = emit(conn, "test.fail", {"order": 7}, business_id=None)
    consumer = await drain(wsettings)
    attempts = conn.execute("select attempt, at from public.test_attempts where msg_id = %s order by attempt", (msg_id,)).fetchall()
    assert [a["attempt"] for a in attempts] == [1, 2, 3]
    gaps = [(b["at"] - a["at"]).total_seconds() for a, b in zip(attempts, attempts[1:])]
    base = wsettings.worker_backoff_base
    assert gaps[0] >= base and gaps[1] >= 2 * base, f"backoff not respected: {gaps}"
    assert consumer.failed == 3 and handled(conn) == []
    assert queue_depth(conn) == 0

    dead = api.run(operator, "select * from app.list_dead_events()")
    assert len(dead) == 1
    assert dead[0]["topic"] == "test.fail" and dead[0]["attempts"] == 3
    assert "boom on attempt 3" in dead[0]["error"]
    assert dead[0]["event"]["payload"] == {"order": 7}

    conn.execute("create table public.test_allow_fail ()")
    new_id = api.run(operator, "select app.replay_dead_event(%s) as id", (dead[0]["dead_id"],))[0]["id"]
    assert queue_depth(conn, "brigade_events_dead") == 0
    await drain(wsettings)
    rows = handled(conn)
    assert [(r["msg_id"], r["attempt"], r["payload"]) for r in rows] == [(new_id, 1, {"order": 7})]


async def test_only_the_operator_lists_and_replays_dead_events(api: Api, factory: Any) -> None:
    owner = factory.tenant().claims("owner")
    for sql in ("select * from app.list_dead_events()", "select app.replay_dead_event(1)"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            api.run(owner, sql)
    with pytest.raises(psycopg.Error) as missing:
        api.run(Claims.service(), "select app.replay_dead_event(424242)")
    assert missing.value.sqlstate == "PT404"


async def test_delayed_event_waits_out_its_delay(wsettings: Settings, conn: psycopg.Connection[dict[str, Any]]) -> None:
    msg_id = emit(conn, "test.record", {"later": True}, delay=1)
    load_plugins(wsettings.plugin_modules)
    pool = await open_pool(wsettings.dsn)
    try:
        assert await Consumer(Resources.build(pool, wsettings, "probe"), registry).read_batch() == [], "visible before its delay"
    finally:
        await pool.close()
    await drain(wsettings)
    rows = handled(conn)
    assert [r["msg_id"] for r in rows] == [msg_id]
    assert (rows[0]["handled_at"] - rows[0]["emitted_at"]).total_seconds() >= 1.0


async def test_lost_lease_rolls_the_handler_back(wsettings: Settings, conn: psycopg.Connection[dict[str, Any]]) -> None:
    msg_id = emit(conn, "test.record", {"x": 1})
    load_plugins(wsettings.plugin_modules)
    pool = await open_pool(wsettings.dsn)
    try:
        consumer = Consumer(Resources.build(pool, wsettings, "slow-copy"), registry)
        [event] = await consumer.read_batch()
        conn.execute("select pgmq.delete('brigade_events', %s::bigint)", (msg_id,))  # another copy acknowledged it
        assert await consumer.process(event) is True
    finally:
        await pool.close()
    assert handled(conn) == [], "the handler's writes were rolled back with the lost lease"


async def test_heartbeat_registers_before_consuming_and_leaves_cleanly(wsettings: Settings, conn: psycopg.Connection[dict[str, Any]]) -> None:
    emit(conn, "test.whoami")
    await drain(wsettings)
    assert [r["payload"] for r in handled(conn)] == [{"registered": 1}]
    assert conn.execute("select count(*) as n from app.workers").fetchone() == {"n": 0}


async def test_notify_wakes_an_idle_worker_long_before_its_poll(wsettings: Settings, conn: psycopg.Connection[dict[str, Any]]) -> None:
    slow_poll = wsettings.model_copy(update={"worker_poll_interval": 60.0})
    stop = asyncio.Event()
    task = asyncio.create_task(worker_main.run(slow_poll, stop=stop, schedule=False))
    async with await psycopg.AsyncConnection.connect(wsettings.dsn, autocommit=True) as listener:
        await listener.execute("listen test_handled")
        # The worker is (or will be) idle on its 60 s poll; only the NOTIFY from emit can wake it in time.
        await asyncio.to_thread(emit, conn, "test.record", {"wake": True})
        gen = listener.notifies(timeout=15, stop_after=1)
        got = [n async for n in gen]
    stop.set()
    await task
    assert got, "the worker did not handle the event within 15 s of its NOTIFY"
    assert [r["payload"] for r in handled(conn)] == [{"wake": True}]


async def test_a_running_handler_does_not_hold_back_later_events(wsettings: Settings, conn: psycopg.Connection[dict[str, Any]]) -> None:
    two_slots = wsettings.model_copy(update={"worker_concurrency": 2, "worker_poll_interval": 60.0})
    load_plugins(two_slots.plugin_modules)
    opened = plugin.gate("slow")
    slow = emit(conn, "test.gate", {"gate": "slow"})
    quick = [emit(conn, "test.record", {"n": i}) for i in range(5)]  # leased with (or after) the slow one
    stop = asyncio.Event()
    async with await psycopg.AsyncConnection.connect(wsettings.dsn, autocommit=True) as listener:
        await listener.execute("listen test_handled")
        task = asyncio.create_task(worker_main.run(two_slots, stop=stop, schedule=False))
        got = [int(n.payload) async for n in listener.notifies(timeout=15, stop_after=len(quick))]
        assert got == quick, "the other slot kept handling events while the slow handler held its own"
        assert not task.done() and [r["msg_id"] for r in handled(conn)] == quick
        opened.set()
        got = [int(n.payload) async for n in listener.notifies(timeout=15, stop_after=1)]
    stop.set()
    await task
    assert got == [slow]
    assert sorted(r["msg_id"] for r in handled(conn)) == sorted([slow, *quick]) and queue_depth(conn) == 0


async def test_stop_lets_running_handlers_finish(wsettings: Settings, conn: psycopg.Connection[dict[str, Any]]) -> None:
    load_plugins(wsettings.plugin_modules)
    opened = plugin.gate("at-stop")
    msg_id = emit(conn, "test.gate", {"gate": "at-stop"})
    stop = asyncio.Event()
    async with await psycopg.AsyncConnection.connect(wsettings.dsn, autocommit=True) as listener:
        await listener.execute("listen test_handled")
        await listener.execute("listen test_gated")
        task = asyncio.create_task(worker_main.run(wsettings.model_copy(update={"worker_poll_interval": 60.0}), stop=stop, schedule=False))
        entered = [n async for n in listener.notifies(timeout=15, stop_after=1)]
        assert [(n.channel, int(n.payload)) for n in entered] == [("test_gated", msg_id)]
        stop.set()
        await asyncio.sleep(0)  # wait-ok: one yield to the loop so the worker sees the stop, not a timed wait
        assert not task.done(), "a stop does not abandon a running handler"
        opened.set()
        await task
    assert [r["msg_id"] for r in handled(conn)] == [msg_id] and queue_depth(conn) == 0


def test_backoff_doubles_and_is_capped() -> None:
    delays = [backoff_seconds(n, 2.0, 60.0) for n in range(1, 8)]
    for n, d in enumerate(delays, start=1):
        expected = min(60.0, 2.0 * 2 ** (n - 1))
        assert expected <= d <= expected * 1.1
