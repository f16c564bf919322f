"""Outbox benchmark: events/s through the worker and commit-to-handler latency (p50/p99), printed
next to pgbench's tpcb-like TPS on the same cluster, so the numbers read as ratios of what this
machine's PostgreSQL can do.

    .venv/bin/python bench/outbox.py [--events 20000] [--latency-events 2000] [--rate 200]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import bench_cluster, percentile, pgbench_tps, write_section  # noqa: E402
from brigade.events import Event  # noqa: E402
from brigade.settings import Settings  # noqa: E402
from worker import main as worker_main  # noqa: E402
from worker.registry import Context, registry  # noqa: E402

LATENCIES: list[float] = []


@registry.on("bench.noop")
async def noop(event: Event, ctx: Context) -> None:
    return None


@registry.on("bench.latency")
async def latency(event: Event, ctx: Context) -> None:
    assert event.emitted_at is not None
    LATENCIES.append((datetime.now(timezone.utc) - event.emitted_at).total_seconds() * 1000)


def emit_tps(dsn: str, clients: int, per_client: int) -> float:
    """One event per committed transaction from several clients: the producer side's rate."""

    def run() -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            for _ in range(per_client):
                conn.execute("select app.emit('bench.noop', null, '{}'::jsonb)")

    threads = [threading.Thread(target=run) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return clients * per_client / (time.perf_counter() - start)


def drain_rate(settings: Settings) -> float:
    """Events/s one worker copy handles from a full queue."""
    with psycopg.connect(settings.dsn, autocommit=True) as conn:
        total = conn.execute("select count(*) from pgmq.q_brigade_events").fetchone()[0]  # type: ignore[index]
    start = time.perf_counter()
    asyncio.run(worker_main.run(settings, drain=True))
    return total / (time.perf_counter() - start)


async def measure_latency(settings: Settings, events: int, rate: float) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(worker_main.run(settings, stop=stop, schedule=False))
    conn = await psycopg.AsyncConnection.connect(settings.dsn, autocommit=True)
    try:
        await asyncio.sleep(0.5)  # let the worker's feed connect before the first event
        interval = 1 / rate
        next_at = time.perf_counter()
        for _ in range(events):
            await conn.execute("select app.emit('bench.latency', null, '{}'::jsonb)")
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
        while len(LATENCIES) < events and not task.done():
            await asyncio.sleep(0.05)
    finally:
        await conn.close()
        stop.set()
        await task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--latency-events", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--pgbench-seconds", type=int, default=10)
    args = parser.parse_args()

    with bench_cluster() as cluster:
        settings = Settings(database_url=cluster.dsn, worker_concurrency=16, worker_batch_size=50,
                            worker_poll_interval=1.0, worker_heartbeat_interval=5.0)
        tps = pgbench_tps(cluster, seconds=args.pgbench_seconds)
        produced = emit_tps(cluster.dsn, clients=4, per_client=args.events // 4)
        handled = drain_rate(settings)
        asyncio.run(measure_latency(settings, args.latency_events, args.rate))

    p50, p99 = percentile(LATENCIES, 50), percentile(LATENCIES, 99)
    rows = [
        ("pgbench tpcb-like, 4 clients", f"{tps:,.0f} TPS", "1.00"),
        ("emit: one event per committed transaction, 4 clients", f"{produced:,.0f} events/s", f"{produced / tps:.2f}"),
        ("worker: one copy draining a full queue (no-op handler)", f"{handled:,.0f} events/s", f"{handled / tps:.2f}"),
    ]
    body = "| measure | result | ratio to pgbench TPS |\n|---|---|---|\n" + "\n".join(f"| {a} | {b} | {c} |" for a, b, c in rows)
    body += (f"\n\nCommit-to-handler latency at {args.rate:.0f} events/s ({len(LATENCIES)} events, worker idle on "
             f"LISTEN between them): p50 {p50:.1f} ms, p99 {p99:.1f} ms.\n")
    print(body)
    write_section("outbox", body)


if __name__ == "__main__":
    main()
