"""`brigade worker`: the feed, the consumer and the scheduler of one worker copy."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import uuid

from brigade import queries
from brigade.db import open_pool
from brigade.settings import Settings, get_settings
from worker.consumer import Consumer
from worker.feed import listen
from worker.registry import Resources, load_plugins, registry
from worker.scheduler import Scheduler

log = logging.getLogger("brigade.worker")


async def beat(pool, consumer: Consumer, worker_id: str) -> None:  # type: ignore[no-untyped-def]
    """Record this copy as alive, with its counters."""
    async with pool.connection() as conn:
        await conn.execute(queries.get("heartbeat"), {
            "id": worker_id, "hostname": socket.gethostname(), "pid": os.getpid(),
            "handled": consumer.handled, "failed": consumer.failed})
        await conn.commit()


async def heartbeat(pool, consumer: Consumer, worker_id: str, interval: float, stop: asyncio.Event) -> None:  # type: ignore[no-untyped-def]
    """Record this copy as alive every interval until stopped; remove it on a clean stop."""
    while True:
        await beat(pool, consumer, worker_id)
        try:
            await asyncio.wait_for(stop.wait(), timeout=interval)
            break
        except asyncio.TimeoutError:
            continue
    async with pool.connection() as conn:
        await conn.execute(queries.get("remove_worker"), {"id": worker_id})
        await conn.commit()


async def run(settings: Settings | None = None, *, drain: bool = False, stop: asyncio.Event | None = None,
              schedule: bool = True, idle: bool = False) -> Consumer:
    """Run one worker copy until stop is set (or SIGINT/SIGTERM; or, with drain, the queue is empty;
    or, with idle, nothing is visible now)."""
    settings = settings or get_settings()
    load_plugins(settings.plugin_modules)
    stop = stop or asyncio.Event()
    wake = asyncio.Event()
    worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass

    # two connections per handler at most: a marketing batch commits its claims and sends on a second one
    pool = await open_pool(settings.dsn, min_size=1, max_size=2 * settings.worker_concurrency + 3, name="worker")
    resources = Resources.build(pool, settings, worker_id)
    consumer = Consumer(resources, registry)
    scheduler = Scheduler(resources, registry)
    await beat(pool, consumer, worker_id)  # registered before it consumes anything
    tasks = [
        asyncio.create_task(listen(settings.dsn, wake, stop), name="feed"),
        asyncio.create_task(heartbeat(pool, consumer, worker_id, settings.worker_heartbeat_interval, stop), name="heartbeat"),
    ]
    log.info("worker started", extra={"action": "worker_started", "worker_id": worker_id,
                                      "topics": sorted(registry.handlers), "jobs": sorted(registry.jobs)})
    try:
        if schedule and not (drain or idle):
            scheduler.start()
        await consumer.run(stop, wake, drain=drain, idle=idle)
    finally:
        stop.set()
        scheduler.shutdown()
        await asyncio.gather(*tasks, return_exceptions=True)
        await pool.close()
        log.info("worker stopped", extra={"action": "worker_stopped", "worker_id": worker_id,
                                          "handled": consumer.handled, "failed": consumer.failed})
    return consumer
