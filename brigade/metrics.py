"""Request metrics of the functions app: a Prometheus registry of its own (counters and a latency
histogram per function and status) and per-minute counts that are added to app.function_stats every
few seconds, where the SQL metrics, the alert rules and every copy's /metrics read them."""

from __future__ import annotations

import asyncio
import json
import logging
from collections import defaultdict
from datetime import datetime, timezone
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from psycopg_pool import AsyncConnectionPool

from brigade import queries

log = logging.getLogger("brigade.metrics")
SLOW_MS = 1000.0  # a request slower than this counts as slow (the seed's "slow queries > 1s")


def function_of(path: str, prefix: str = "/functions/v1") -> str:
    """The function a request path belongs to: /functions/v1/twilio-voice/gather → twilio-voice."""
    rest = path[len(prefix):] if path.startswith(prefix) else path
    return rest.strip("/").split("/", 1)[0] or "root"


class RequestStats:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("brigade_function_requests", "HTTP requests answered, by function and status",
                                ["function", "status"], registry=self.registry)
        self.latency = Histogram("brigade_function_duration_seconds", "Time to answer, by function", ["function"],
                                 registry=self.registry, buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        self._pending: dict[tuple[str, str, int], list[float]] = defaultdict(lambda: [0, 0.0, 0.0, 0])

    def observe(self, function: str, status: int, ms: float) -> None:
        """Count one answered request."""
        self.requests.labels(function, str(status)).inc()
        self.latency.labels(function).observe(ms / 1000)
        bucket = datetime.now(timezone.utc).replace(second=0, microsecond=0).isoformat()
        row = self._pending[(bucket, function, status)]
        row[0] += 1
        row[1] += ms
        row[2] = max(row[2], ms)
        row[3] += 1 if ms > SLOW_MS else 0

    async def flush(self, pool: AsyncConnectionPool) -> int:
        """Add the counts gathered since the last flush to app.function_stats."""
        if not self._pending:
            return 0
        pending, self._pending = self._pending, defaultdict(lambda: [0, 0.0, 0.0, 0])
        rows = [{"bucket": b, "function": f, "status": s, "requests": v[0], "total_ms": v[1], "max_ms": v[2], "slow": v[3]}
                for (b, f, s), v in pending.items()]
        try:
            async with pool.connection() as conn:
                await conn.execute(queries.get("record_function_stats"), {"rows": json.dumps(rows)})
                await conn.commit()
        except Exception as exc:  # the database is down: keep the counts for the next flush
            for (b, f, s), v in pending.items():
                row = self._pending[(b, f, s)]
                row[0] += v[0]
                row[1] += v[1]
                row[2] = max(row[2], v[2])
                row[3] += v[3]
            log.warning("could not record request stats", extra={"action": "function_stats_flush", "error": str(exc)})
            return 0
        return len(rows)

    async def flush_every(self, pool: AsyncConnectionPool, seconds: float, stop: asyncio.Event) -> None:
        """Flush until stop is set, then once more."""
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), timeout=seconds)
            except asyncio.TimeoutError:
                pass
            await self.flush(pool)


def worker_families(stats: dict[str, Any]) -> list[Any]:
    """Prometheus metric families of the worker and the outbox, from app.worker_metrics()."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    depth = GaugeMetricFamily("brigade_outbox_events", "Outbox events by state", labels=["state"])
    for state in ("ready", "invisible", "dead"):
        depth.add_metric([state], float(stats["outbox"].get(state) or 0))
    oldest = GaugeMetricFamily("brigade_outbox_oldest_ready_age_seconds", "Age of the oldest event waiting")
    oldest.add_metric([], float(stats["outbox"].get("oldest_ready_age_seconds") or 0))
    handled = CounterMetricFamily("brigade_worker_events", "Outbox events handled, by topic and outcome", labels=["topic", "outcome"])
    seconds = CounterMetricFamily("brigade_worker_handler_seconds", "Handler time, by topic", labels=["topic"])
    slowest = GaugeMetricFamily("brigade_worker_handler_max_seconds_1h", "Slowest handler run in the last hour", labels=["topic"])
    for row in stats["handlers"]:
        handled.add_metric([row["topic"], row["outcome"]], float(row["events"]))
    for row in stats["handler_time"]:
        seconds.add_metric([row["topic"]], float(row["total_ms"]) / 1000)
        slowest.add_metric([row["topic"]], float(row["max_ms_1h"] or 0) / 1000)
    errors = GaugeMetricFamily("brigade_provider_errors_1h", "Messages a provider refused in the last hour",
                               labels=["channel", "provider"])
    for row in stats["provider_errors"]:
        errors.add_metric([row["channel"], row["provider"] or "unknown"], float(row["n"]))
    return [depth, oldest, handled, seconds, slowest, errors]
