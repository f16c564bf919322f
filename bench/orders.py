"""Order benchmark: signed Stripe webhooks turned into paid orders (the whole fan-out) per second,
with p50/p99 request latency, next to pgbench's tpcb-like TPS on the same cluster; plus
place_order calls per second for scale.

    .venv/bin/python bench/orders.py [--orders 2000] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import psycopg
import stripe

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import bench_cluster, free_port, percentile, pgbench_tps, write_section  # noqa: E402
from brigade.settings import PROJECT_ROOT  # noqa: E402
from brigade.stripe_events import session_completed  # noqa: E402

DOWNTOWN = "00000000-0000-4000-8000-000000000101"
LATTE, OAT, CROISSANT = ("00000000-0000-4000-8000-0000000d0001", "00000000-0000-4000-8000-0000000f1001",
                         "00000000-0000-4000-8000-0000000d0003")
SECRET = "whsec_bench_secret"


def place_orders(dsn: str, n: int, clients: int) -> tuple[list[dict], float]:
    """n orders through place_order as anon, from several clients; returns them and orders/s."""
    payload = {"venue_id": DOWNTOWN, "fulfilment": "pickup", "customer": {"name": "Bench", "email": "b@x.test"},
               "items": [{"product_id": LATTE, "modifier_ids": [OAT], "quantity": 1}, {"product_id": CROISSANT, "quantity": 2}]}
    orders: list[dict] = []
    lock = threading.Lock()

    def run(count: int, k: int) -> None:
        with psycopg.connect(dsn) as conn:
            for i in range(count):
                body = dict(payload, customer={"name": "Bench", "phone": f"+1555{k:02d}{i:05d}"})
                with conn.transaction():
                    conn.execute("select set_config('role', 'anon', true), set_config('request.jwt.claims', '{\"role\":\"anon\"}', true)")
                    row = conn.execute("select public.place_order(%s)", (json.dumps(body),)).fetchone()
                with lock:
                    orders.append(row[0])  # type: ignore[index]

    threads = [threading.Thread(target=run, args=(n // clients, k)) for k in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return orders, len(orders) / (time.perf_counter() - start)


def post_webhooks(url: str, orders: list[dict], concurrency: int) -> tuple[float, list[float]]:
    """Each order paid by its own signed checkout.session.completed; returns paid/s and latencies (ms)."""
    bodies = []
    for o in orders:
        event = session_completed(session_id=f"cs_{uuid.uuid4().hex}", payment_intent=f"pi_{uuid.uuid4().hex}",
                                  order_id=o["order_id"], business_id=o["business_id"], amount_cents=o["total_cents"])
        body = json.dumps(event)
        bodies.append((body, stripe.WebhookSignature.generate_signature_header(body, SECRET)))
    latencies: list[float] = []
    outcomes: list[str] = []
    lock = threading.Lock()
    chunks = [bodies[i::concurrency] for i in range(concurrency)]

    def run(chunk: list[tuple[str, str]]) -> None:
        with httpx.Client(timeout=60) as client:
            for body, header in chunk:
                t0 = time.perf_counter()
                r = client.post(url, content=body, headers={"stripe-signature": header, "content-type": "application/json"})
                dt = (time.perf_counter() - t0) * 1000
                with lock:
                    latencies.append(dt)
                    outcomes.append(r.json().get("outcome", r.text))

    threads = [threading.Thread(target=run, args=(c,)) for c in chunks]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    assert outcomes.count("paid") == len(orders), {o: outcomes.count(o) for o in set(outcomes)}
    return len(orders) / elapsed, latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--pgbench-seconds", type=int, default=10)
    args = parser.parse_args()

    with bench_cluster(seed=True) as cluster:
        with psycopg.connect(cluster.dsn, autocommit=True) as conn:  # enough stock for every order
            conn.execute("insert into public.stock_movements (business_id, venue_id, stock_item_id, delta, reason) "
                         "select business_id, venue_id, id, 1000000, 'delivery' from public.stock_items")
        tps = pgbench_tps(cluster, seconds=args.pgbench_seconds)
        orders, placed_rate = place_orders(cluster.dsn, args.orders, clients=4)

        port = free_port()
        env = {**os.environ, "BRIGADE_DATABASE_URL": cluster.dsn, "BRIGADE_STRIPE_WEBHOOK_SECRET": SECRET, "BRIGADE_LOG_FORMAT": "json"}
        server = subprocess.Popen([sys.executable, "-m", "brigade", "serve", "--port", str(port)], cwd=PROJECT_ROOT, env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            base = f"http://127.0.0.1:{port}/functions/v1"
            for _ in range(200):
                try:
                    if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            paid_rate, latencies = post_webhooks(f"{base}/stripe-webhook", orders, args.concurrency)
        finally:
            server.terminate()
            server.wait(timeout=30)

    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    rows = [
        ("pgbench tpcb-like, 4 clients", f"{tps:,.0f} TPS", "1.00"),
        ("place_order as anon (priced, validated, 2 lines), 4 clients", f"{placed_rate:,.0f} orders/s", f"{placed_rate / tps:.2f}"),
        (f"signed webhook → paid order with full fan-out, {args.concurrency} concurrent", f"{paid_rate:,.0f} orders/s", f"{paid_rate / tps:.2f}"),
    ]
    body = "| measure | result | ratio to pgbench TPS |\n|---|---|---|\n" + "\n".join(f"| {a} | {b} | {c} |" for a, b, c in rows)
    body += (f"\n\nWebhook request latency ({len(latencies)} requests, one uvicorn worker, {args.concurrency} concurrent clients): "
             f"p50 {p50:.1f} ms, p99 {p99:.1f} ms. The fan-out per paid order: payment row, customer match or insert, per-venue "
             f"stats upsert, kitchen ticket, stock movements through the recipe, loyalty points, two notification rows, pickup "
             f"code HMAC, order.paid event.\n")
    print(body)
    write_section("orders", body)


if __name__ == "__main__":
    main()
