"""The wake-up feed: LISTEN on a direct connection; NOTIFY only wakes, the consumer polls anyway."""

from __future__ import annotations

import asyncio
import logging

import psycopg

log = logging.getLogger("brigade.worker.feed")

CHANNEL = "brigade_events"
# How often the listener looks at `stop` between notifications. Listening in bounded rounds (rather
# than cancelling a pending notifies() generator) never leaves the connection's lock held at close.
ROUND_SECONDS = 0.5


async def listen(dsn: str, wake: asyncio.Event, stop: asyncio.Event) -> None:
    """Set `wake` on every notification; reconnect with backoff when the connection drops."""
    delay = 0.5
    while not stop.is_set():
        try:
            async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
                await conn.execute(f"listen {CHANNEL}")
                wake.set()  # events may have arrived while we were not listening
                delay = 0.5
                while not stop.is_set():
                    async for _ in conn.notifies(timeout=ROUND_SECONDS):
                        wake.set()
        except psycopg.OperationalError as exc:
            if stop.is_set():
                return
            log.warning("listen connection lost, reconnecting",
                        extra={"action": "feed_reconnect", "error": str(exc), "retry_in": delay})
            try:
                await asyncio.wait_for(stop.wait(), timeout=delay)
            except asyncio.TimeoutError:
                pass
            delay = min(delay * 2, 30.0)
