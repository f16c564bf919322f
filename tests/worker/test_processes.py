"""Worker copies as separate OS processes: shared draining, crash recovery, scheduled jobs run once."""

from __future__ import annotations

import asyncio
import json
import signal
from datetime import datetime, timezone
from typing import Any

import psycopg

from brigade.db import open_pool
from brigade.settings import Settings
from tests.worker.conftest import handled, queue_depth, wait_for_notifies
from worker import main as worker_main
from worker.registry import Job, Resources, load_plugins, registry
from worker.scheduler import Scheduler, tick_of


def test_two_processes_drain_2000_events_each_exactly_once(wsettings: Settings, conn: psycopg.Connection[dict[str, Any]], spawn: Any) -> None:
    conn.execute("select app.emit('test.record', null, jsonb_build_object('n', g)) from generate_series(1, 2000) g")
    workers = [spawn("--drain", "--no-schedule"), spawn("--drain", "--no-schedule")]
    counts = [json.loads(w.wait(timeout=120)[0].strip().splitlines()[-1]) for w in workers]
    rows = handled(conn)
    assert len(rows) == 2000
    assert len({r["msg_id"] for r in rows}) == 2000, "an event was handled twice"
    assert sorted(r["payload"]["n"] for r in rows) == list(range(1, 2001))
    assert sum(c["handled"] for c in counts) == 2000 and all(c["failed"] == 0 for c in counts)
    assert len({r["worker_id"] for r in rows}) == 2, f"both copies should share the work: {counts}"
    assert queue_depth(conn) == 0


def test_a_sigkilled_worker_loses_nothing(wsettings: Settings, conn: psycopg.Connection[dict[str, Any]], spawn: Any) -> None:
    short_lease = wsettings.model_copy(update={"worker_visibility_timeout": 2})
    ids = [r["id"] for r in conn.execute(
        "select app.emit('test.block', null, jsonb_build_object('n', g)) as id from generate_series(1, 5) g").fetchall()]
    victim: list[Any] = []
    # The victim leases the batch and blocks inside the handlers; we wait for it to say so, then kill it.
    wait_for_notifies(wsettings.dsn, "test_blocked", 5, timeout=60,
                      before=lambda: victim.append(spawn("--no-schedule", env={"BRIGADE_TEST_BLOCK": "1"}, settings=short_lease)))
    victim[0].proc.send_signal(signal.SIGKILL)
    victim[0].proc.wait(timeout=10)
    assert handled(conn) == [] and queue_depth(conn) == 5, "the killed copy committed nothing and its events are still queued"

    asyncio.run(worker_main.run(short_lease, drain=True))
    rows = handled(conn)
    assert [r["msg_id"] for r in rows] == ids
    assert all(r["attempt"] == 2 for r in rows), "each event came back once its lease ran out"
    assert queue_depth(conn) == 0


def test_a_scheduled_job_runs_once_per_tick_across_two_workers(wsettings: Settings, conn: psycopg.Connection[dict[str, Any]], spawn: Any) -> None:
    env = {"BRIGADE_TEST_TICKS": "1"}
    workers: list[Any] = []
    wait_for_notifies(wsettings.dsn, "test_tick", 4, timeout=60,
                      before=lambda: workers.extend([spawn(env=env), spawn(env=env)]))
    for w in workers:
        w.signal(signal.SIGTERM)
    for w in workers:
        w.wait(timeout=30)
    ticks = conn.execute("select scheduled_for, count(*) as n from public.test_ticks group by 1 order by 1").fetchall()
    runs = conn.execute("select scheduled_for, status from app.scheduled_runs where job_name = 'test.tick' order by 1").fetchall()
    assert len(ticks) >= 4
    assert all(t["n"] == 1 for t in ticks), f"a tick ran twice: {ticks}"
    assert {t["scheduled_for"] for t in ticks} <= {r["scheduled_for"] for r in runs}
    assert all(r["scheduled_for"].microsecond == 0 for r in runs)


async def test_two_schedulers_racing_for_one_tick_run_it_once(wsettings: Settings, conn: psycopg.Connection[dict[str, Any]]) -> None:
    load_plugins(wsettings.plugin_modules)
    calls: list[str] = []

    async def job_fn(ctx: Any) -> None:
        calls.append(ctx.worker_id)

    job = Job("test.race", "30 3 * * *", job_fn)
    pool = await open_pool(wsettings.dsn, max_size=4)
    try:
        tick = tick_of(job, datetime(2026, 11, 22, 3, 30, 0, 400000, tzinfo=timezone.utc))
        assert tick == datetime(2026, 11, 22, 3, 30, tzinfo=timezone.utc)
        a, b = (Scheduler(Resources.build(pool, wsettings, w), registry) for w in "ab")
        results = await asyncio.gather(a.run_claimed(job, tick), b.run_claimed(job, tick))
    finally:
        await pool.close()
    assert sorted(results) == [False, True] and len(calls) == 1
    run = conn.execute("select worker_id, status from app.scheduled_runs where job_name = 'test.race'").fetchone()
    assert run == {"worker_id": calls[0], "status": "succeeded"}
