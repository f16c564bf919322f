"""Rate-limit benchmark: what the limits cost a guest's place_order (each order from its own IP and
phone, so none is refused: the limiter's full work, never its short cut), side by side with the same
orders with the limits removed, next to pgbench's tpcb-like TPS on the same cluster; plus raw
app.rate_limit_hit calls per second and refusals per second of a full window.

    .venv/bin/python bench/edge.py [--orders 2000] [--hits 5000]
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import bench_cluster, pgbench_tps, write_section  # noqa: E402

DOWNTOWN = "00000000-0000-4000-8000-000000000101"
LATTE, OAT, CROISSANT = ("00000000-0000-4000-8000-0000000d0001", "00000000-0000-4000-8000-0000000f1001",
                         "00000000-0000-4000-8000-0000000d0003")
ANON = json.dumps({"role": "anon"})


def place(dsn: str, n: int, clients: int, tag: str) -> float:
    """n anon orders from `clients` connections, each with its own IP header and phone; orders/s."""
    payload = {"venue_id": DOWNTOWN, "fulfilment": "pickup",
               "items": [{"product_id": LATTE, "modifier_ids": [OAT], "quantity": 1}, {"product_id": CROISSANT, "quantity": 2}]}

    def run(k: int) -> None:
        with psycopg.connect(dsn) as conn:
            for i in range(n // clients):
                headers = json.dumps({"x-forwarded-for": f"10.{tag}{k}.{i // 250}.{i % 250}"})
                body = dict(payload, customer={"name": "Bench", "phone": f"+1{tag}{k:02d}{i:06d}"})
                with conn.transaction():
                    conn.execute("select set_config('role', 'anon', true), set_config('request.jwt.claims', %s, true), "
                                 "set_config('request.headers', %s, true)", (ANON, headers))
                    conn.execute("select public.place_order(%s)", (json.dumps(body),))

    threads = [threading.Thread(target=run, args=(k,)) for k in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return (n // clients * clients) / (time.perf_counter() - started)


def hits(dsn: str, n: int, subjects: int) -> float:
    """n app.rate_limit_hit calls, one per transaction, over `subjects` subjects; calls/s."""
    with psycopg.connect(dsn) as conn:
        started = time.perf_counter()
        for i in range(n):
            with conn.transaction():
                conn.execute("select app.rate_limit_hit('bench', 'ip', %s)", (f"192.0.2.{i % subjects}",))
        return n / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=2000)
    parser.add_argument("--hits", type=int, default=5000)
    parser.add_argument("--pgbench-seconds", type=int, default=10)
    args = parser.parse_args()

    with bench_cluster(seed=True, rate_limits=True) as cluster:
        with psycopg.connect(cluster.dsn, autocommit=True) as conn:
            conn.execute("insert into public.stock_movements (business_id, venue_id, stock_item_id, delta, reason) "
                         "select business_id, venue_id, id, 1000000, 'delivery' from public.stock_items")
            # the business-wide window must not refuse the run: it is the per-guest work being measured
            conn.execute("select app.define_rate_limit('place_order', 'business', 60, %s)", (args.orders * 4,))
            conn.execute("select app.define_rate_limit('bench', 'ip', 600, 1000000)")
        tps = pgbench_tps(cluster, seconds=args.pgbench_seconds)
        limited = place(cluster.dsn, args.orders, 4, "2")
        with psycopg.connect(cluster.dsn, autocommit=True) as conn:
            refused = conn.execute("select coalesce(sum(refused), 0) from app.rate_limit_metrics() where action = 'place_order'").fetchone()
            assert refused is not None and refused[0] == 0, "the run was refused: raise the limits"
            conn.execute("delete from app.rate_limits where action = 'place_order'")
        unlimited = place(cluster.dsn, args.orders, 4, "3")
        spread = hits(cluster.dsn, args.hits, 1000)
        with psycopg.connect(cluster.dsn, autocommit=True) as conn:
            conn.execute("select app.define_rate_limit('bench', 'ip', 600, 50)")
        full = hits(cluster.dsn, args.hits, 1)  # one subject, window full after 50: refusals

    rows = [
        ("pgbench tpcb-like, 4 clients", f"{tps:,.0f} TPS", f"{1:.2f}"),
        ("place_order as anon with the limits (IP, phone, business), 4 clients", f"{limited:,.0f} orders/s", f"{limited / tps:.2f}"),
        ("place_order as anon without limits, 4 clients", f"{unlimited:,.0f} orders/s", f"{unlimited / tps:.2f}"),
        ("app.rate_limit_hit over 1,000 subjects, 1 client", f"{spread:,.0f} hits/s", f"{spread / tps:.2f}"),
        ("app.rate_limit_hit on one full window (refusals), 1 client", f"{full:,.0f} refusals/s", f"{full / tps:.2f}"),
    ]
    body = "| measure | result | ratio to pgbench TPS |\n|---|---|---|\n" + "\n".join(f"| {a} | {b} | {c} |" for a, b, c in rows)
    body += (f"\n\nWith limits / without = {limited / unlimited:.2f} (the limiter's share of a guest order). Each order from "
             f"its own IP and phone, so every limit is looked up, counted and logged, none refused.\n")
    print(body)
    write_section("edge", body)


if __name__ == "__main__":
    main()
