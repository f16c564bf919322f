"""The wake-up feed: LISTEN on a direct connection; NOTIFY only wakes, the consumer polls anyway."""

from __future__ import annotations

import asyncio
import logging

import psycopg

log = logging.getLogger("brigade.worker.feed")

CHANNEL = "brigade_events"


async def listen(dsn: str, wake: asyncio.Event, stop: asyncio.Event) -> None:
    """Set `wake` on every notification; reconnect with backoff when the connection drops."""
    delay = 0.5
    while not stop.is_set():
        try:
            async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
                await conn.execute(f"listen {CHANNEL}")
                wake.set()  # events may have arrived while we were not listening
                delay = 0.5
                gen = conn.notifies()
                stop_task = asyncio.ensure_future(stop.wait())
                try:
                    while not stop.is_set():
                        next_task = asyncio.ensure_future(anext(gen))
                        done, _ = await asyncio.wait({next_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
                        if next_task in done:
                            next_task.result()
                            wake.set()
                        else:
                            next_task.cancel()
                finally:
                    stop_task.cancel()
        except (psycopg.OperationalError, StopAsyncIteration) as exc:
            if stop.is_set():
                return
            log.warning("listen connection lost, reconnecting", extra={"action": "feed_reconnect", "error": str(exc), "retry_in": delay})
            try:
                await asyncio.wait_for(stop.wait(), timeout=delay)
            except asyncio.TimeoutError:
                pass
            delay = min(delay * 2, 30.0)
