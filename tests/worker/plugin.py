"""Handlers and a job for the worker tests, loaded through BRIGADE_WORKER_PLUGINS (as any plugin)."""

from __future__ import annotations

import asyncio
import json
import os

from brigade.events import Event
from worker.registry import Context, registry

TABLES = """
create table if not exists public.test_handled (
  msg_id bigint not null, attempt integer not null, worker_id text not null,
  handled_at timestamptz not null default clock_timestamp(), payload jsonb, emitted_at timestamptz
);
create table if not exists public.test_attempts (
  msg_id bigint not null, attempt integer not null, at timestamptz not null default clock_timestamp()
);
create table if not exists public.test_ticks (
  scheduled_for timestamptz not null, worker_id text not null
);
"""


@registry.on("test.record")
async def record(event: Event, ctx: Context) -> None:
    """Writes one row in the handler's transaction (committed with the acknowledgement)."""
    await ctx.conn.execute(
        "insert into public.test_handled (msg_id, attempt, worker_id, payload, emitted_at) values (%s, %s, %s, %s, %s)",
        (event.msg_id, event.attempt, ctx.worker_id, json.dumps(event.payload), event.emitted_at))
    await ctx.conn.execute("select pg_notify('test_handled', %s)", (str(event.msg_id),))


@registry.on("test.fail")
async def fail(event: Event, ctx: Context) -> None:
    """Records the attempt outside the (rolled-back) handler transaction, then fails until allowed."""
    async with ctx.pool.connection() as side:
        await side.execute("insert into public.test_attempts (msg_id, attempt) values (%s, %s)", (event.msg_id, event.attempt))
        await side.commit()
        row = await (await side.execute("select to_regclass('public.test_allow_fail') is not null as allowed")).fetchone()
    if not (row and row["allowed"]):
        raise RuntimeError(f"boom on attempt {event.attempt}")
    await record(event, ctx)


@registry.on("test.block")
async def block(event: Event, ctx: Context) -> None:
    """In a worker started with BRIGADE_TEST_BLOCK=1: announce the lease, then never finish."""
    if os.environ.get("BRIGADE_TEST_BLOCK") == "1":
        async with ctx.pool.connection() as side:
            await side.execute("select pg_notify('test_blocked', %s)", (str(event.msg_id),))
            await side.commit()
        await asyncio.Event().wait()
    await record(event, ctx)


GATES: dict[str, asyncio.Event] = {}


def gate(name: str) -> asyncio.Event:
    """The in-process gate a `test.gate` event with this name waits on (set it to let the handler finish)."""
    return GATES.setdefault(name, asyncio.Event())


@registry.on("test.gate")
async def gated(event: Event, ctx: Context) -> None:
    """In-process only: announces its lease (`test_gated`), holds its slot until the test opens the gate
    named in the payload, then records."""
    async with ctx.pool.connection() as side:
        await side.execute("select pg_notify('test_gated', %s)", (str(event.msg_id),))
        await side.commit()
    await gate(event.payload["gate"]).wait()
    await record(event, ctx)


@registry.on("test.whoami")
async def whoami(event: Event, ctx: Context) -> None:
    """Records whether this worker copy's heartbeat row exists while it handles events."""
    row = await (await ctx.conn.execute("select count(*) as n from app.workers where id = %s", (ctx.worker_id,))).fetchone()
    await ctx.conn.execute("insert into public.test_handled (msg_id, attempt, worker_id, payload) values (%s, %s, %s, %s)",
                           (event.msg_id, event.attempt, ctx.worker_id, json.dumps({"registered": row["n"]})))


@registry.scheduled("test.tick", "* * * * * *")
async def tick(ctx: Context) -> None:
    """Every second: one row per run, and a wake-up for the test waiting on it."""
    if os.environ.get("BRIGADE_TEST_TICKS") != "1":
        return
    await ctx.conn.execute(
        "insert into public.test_ticks (scheduled_for, worker_id) "
        "select scheduled_for, worker_id from app.scheduled_runs where job_name = 'test.tick' and worker_id = %s "
        "and status = 'running' order by scheduled_for desc limit 1", (ctx.worker_id,))
    await ctx.conn.execute("select pg_notify('test_tick', '')")
