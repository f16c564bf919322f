"""The outbox consumer: lease a batch, run each event's handler, acknowledge in the same transaction.

At-least-once delivery with a visibility timeout (pgmq). A handler's database work and the event's
deletion commit together; if the lease ran out and another copy already acknowledged the event, our
transaction rolls back, so database effects happen exactly once. A failure pushes the event's
visibility out with exponential backoff; after the last attempt it moves to brigade_events_dead.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import traceback
from typing import Any

from brigade import queries
from brigade.events import Event
from worker.registry import Registry, Resources

log = logging.getLogger("brigade.worker")


class LeaseLost(Exception):
    """Another worker copy acknowledged the event first."""


def backoff_seconds(attempt: int, base: float, cap: float) -> float:
    """Delay after failed attempt N (1-based): base, 2·base, 4·base, ... capped, with 0-10% jitter."""
    return min(cap, base * 2 ** (attempt - 1)) * random.uniform(1.0, 1.1)


class Consumer:
    def __init__(self, resources: Resources, registry: Registry) -> None:
        self.resources = resources
        self.pool = resources.pool
        self.settings = resources.settings
        self.registry = registry
        self.handled = 0
        self.failed = 0
        self.log = logging.LoggerAdapter(log, {"worker_id": resources.worker_id})

    async def read_batch(self, free: int | None = None) -> list[Event]:
        """Lease up to `free` visible events (default: as many as may run at once)."""
        qty = max(1, min(self.settings.worker_batch_size, self.settings.worker_concurrency, free or self.settings.worker_concurrency))
        async with self.pool.connection() as conn:
            rows = await (
                await conn.execute(queries.get("read_events"), {"vt": self.settings.worker_visibility_timeout, "qty": qty})
            ).fetchall()
        return [Event.from_row(row) for row in rows]

    async def process(self, event: Event) -> bool:
        """Run one event's handler; True when it is done with (handled, unknown topic or buried)."""
        handler = self.registry.handlers.get(event.topic)
        ids = {"event_id": event.msg_id, "topic": event.topic, "business_id": str(event.business_id), "attempt": event.attempt}
        started = time.perf_counter()
        try:
            async with self.pool.connection() as conn:
                async with conn.transaction():
                    if handler is None:
                        self.log.info("no handler for topic, acknowledged", extra={"action": "event_skipped", **ids})
                    else:
                        ctx = self.resources.context(conn, self.log)
                        await handler(event, ctx)
                    row = await (await conn.execute(queries.get("ack_event"), {"msg_id": event.msg_id})).fetchone()
                    if not row or not row["deleted"]:
                        raise LeaseLost(f"event {event.msg_id} was acknowledged by another worker")
                    # counted with the acknowledgement: a rolled-back run counts nothing
                    await conn.execute(queries.get("record_handler_stat"), {
                        "topic": event.topic, "outcome": "ok", "ms": (time.perf_counter() - started) * 1000})
            self.handled += 1
            return True
        except LeaseLost:
            self.log.warning("lease lost; effects rolled back", extra={"action": "event_lease_lost", **ids})
            return True
        except Exception as exc:  # a handler may fail in any way; the event must survive it
            self.failed += 1
            error = "".join(traceback.format_exception_only(exc)).strip()
            await self._failed(event, error, ids, (time.perf_counter() - started) * 1000)
            return False

    async def _failed(self, event: Event, error: str, ids: dict[str, Any], ms: float = 0.0) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(queries.get("record_handler_stat"), {
                "topic": event.topic, "outcome": "dead" if event.attempt >= self.settings.worker_max_attempts else "retry", "ms": ms})
            if event.attempt >= self.settings.worker_max_attempts:
                row = await (await conn.execute(queries.get("bury_event"), {"msg_id": event.msg_id, "error": error})).fetchone()
                self.log.error("event dead after last attempt", extra={"action": "event_dead", "error": error,
                                                                        "dead_id": row and row["dead_id"], **ids})
            else:
                delay = backoff_seconds(event.attempt, self.settings.worker_backoff_base, self.settings.worker_backoff_max)
                await conn.execute(queries.get("retry_event_later"), {"msg_id": event.msg_id, "delay": delay})
                self.log.warning("handler failed, retrying", extra={"action": "event_retry", "error": error,
                                                                    "retry_in": round(delay, 3), **ids})
            await conn.commit()

    async def next_event_in(self) -> float | None:
        """Seconds until the next event is visible (negative: visible now); None when the queue is empty."""
        async with self.pool.connection() as conn:
            row = await (await conn.execute(queries.get("next_event_in"))).fetchone()
        assert row is not None
        return row["seconds"]

    async def run(self, stop: asyncio.Event, wake: asyncio.Event, *, drain: bool = False, idle: bool = False) -> None:
        """Consume until stop is set (or, with drain, until the queue is empty, leased events included;
        or, with idle, until no event is visible now: delayed and leased ones are left for later).

        Pipelined: up to worker_concurrency handlers run at once, and a slot freed by one that finishes
        is refilled at once, so a slow handler never holds back the events leased after it. A stop
        lets the running handlers finish (their events would otherwise wait out the lease)."""
        running: set[asyncio.Task[bool]] = set()
        try:
            while not stop.is_set():
                wake.clear()
                free = self.settings.worker_concurrency - len(running)
                batch = await self.read_batch(free) if free > 0 else []
                for event in batch:
                    running.add(asyncio.create_task(self.process(event), name=f"event-{event.msg_id}"))
                if batch and len(running) < self.settings.worker_concurrency:
                    continue  # slots left: more may be visible now
                timeout = self.settings.worker_poll_interval
                if not running:
                    seconds = await self.next_event_in()
                    if (drain and seconds is None) or idle:
                        return
                    if seconds is not None:
                        timeout = max(0.01, min(timeout, seconds))
                elif idle and not batch:
                    await asyncio.wait(running)  # nothing more visible: finish what runs, then look once more
                    running = {t for t in running if not t.done()}
                    continue
                waits = {asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())}
                done, _ = await asyncio.wait(waits | running, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                for waiter in waits:
                    waiter.cancel()
                running -= done
        finally:
            if running:
                await asyncio.gather(*running, return_exceptions=True)
