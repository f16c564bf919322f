"""Order benchmark: signed Stripe webhooks turned into paid orders (the whole fan-out) per second,
with p50/p99 request latency, next to pgbench's tpcb-like TPS on the same cluster: at one venue, and
spread over the venues of one business (--venues, clones of Downtown with their own stock and printers);
plus place_order calls per second for scale. --profile prints what the database spent per paid order
(pg_stat_statements, nested statements included, and the functions' self time).

    .venv/bin/python bench/orders.py [--orders 2000] [--concurrency 8] [--venues 20] [--profile]
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

from bench.common import bench_cluster, free_port, percentile, pgbench_tps, print_profile, reset_profile, write_section  # noqa: E402
from brigade.settings import PROJECT_ROOT  # noqa: E402
from brigade.stripe_events import session_completed  # noqa: E402

DOWNTOWN = "00000000-0000-4000-8000-000000000101"
LATTE, OAT, CROISSANT = ("00000000-0000-4000-8000-0000000d0001", "00000000-0000-4000-8000-0000000f1001",
                         "00000000-0000-4000-8000-0000000d0003")
SECRET = "whsec_bench_secret"
BUSINESS = "00000000-0000-4000-8000-000000000001"

CLONE_VENUES = """
with new as (
  insert into public.venues (business_id, id, name, slug, time_zone, phone, address, latitude, longitude, is_published)
  select v.business_id, extensions.gen_random_uuid(), v.name || ' ' || k, v.slug || '-' || k, v.time_zone, v.phone, v.address,
         v.latitude, v.longitude, true
  from public.venues v cross join generate_series(2, %(n)s) k where v.business_id = %(business)s and v.id = %(venue)s
  returning id
), hours as (
  insert into public.venue_opening_hours (business_id, venue_id, id, weekday, opens_at, closes_at)
  select h.business_id, new.id, extensions.gen_random_uuid(), h.weekday, h.opens_at, h.closes_at
  from new cross join public.venue_opening_hours h where h.business_id = %(business)s and h.venue_id = %(venue)s
), stock as (
  insert into public.stock_items (business_id, venue_id, id, sku, name, unit, critical_level)
  select s.business_id, new.id, extensions.gen_random_uuid(), s.sku, s.name, s.unit, s.critical_level
  from new cross join public.stock_items s where s.business_id = %(business)s and s.venue_id = %(venue)s
), printers as (
  insert into public.printers (business_id, venue_id, id, name, kind, protocol, stations, paper_width_mm, device_token_hash)
  select p.business_id, new.id, extensions.gen_random_uuid(), p.name, p.kind, p.protocol, p.stations, p.paper_width_mm,
         app.device_token_hash(extensions.gen_random_uuid()::text)
  from new cross join public.printers p where p.business_id = %(business)s and p.venue_id = %(venue)s
)
select id from new
"""


def clone_venues(dsn: str, n: int) -> list[str]:
    """Downtown and n - 1 copies of it (always open, the same stock items and printers): n venues of one business."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(CLONE_VENUES, {"n": n, "business": BUSINESS, "venue": DOWNTOWN}).fetchall()
    return [DOWNTOWN, *(str(r[0]) for r in rows)]


def place_orders(dsn: str, n: int, clients: int, venues: list[str]) -> tuple[list[dict], float]:
    """n orders through place_order as anon, from several clients, round the venues; returns them and orders/s."""
    payload = {"venue_id": DOWNTOWN, "fulfilment": "pickup", "customer": {"name": "Bench", "email": "b@x.test"},
               "items": [{"product_id": LATTE, "modifier_ids": [OAT], "quantity": 1}, {"product_id": CROISSANT, "quantity": 2}]}
    orders: list[dict] = []
    lock = threading.Lock()

    def run(count: int, k: int) -> None:
        with psycopg.connect(dsn) as conn:
            for i in range(count):
                body = dict(payload, venue_id=venues[(k + i * clients) % len(venues)],
                            customer={"name": "Bench", "phone": f"+1555{k:02d}{i:05d}"})
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
    """Each order paid by its own signed checkout.session.completed, `concurrency` clients each sending its
    next request when the last one answered; returns paid/s and latencies (ms)."""
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


def serve(dsn: str) -> tuple[subprocess.Popen[bytes], str]:
    """`brigade serve` (one uvicorn worker) against the cluster, once healthy; returns it and its base URL."""
    port = free_port()
    env = {**os.environ, "BRIGADE_DATABASE_URL": dsn, "BRIGADE_STRIPE_WEBHOOK_SECRET": SECRET, "BRIGADE_LOG_FORMAT": "json"}
    server = subprocess.Popen([sys.executable, "-m", "brigade", "serve", "--port", str(port)], cwd=PROJECT_ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}/functions/v1"
    for _ in range(200):
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    return server, base


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--venues", type=int, default=20, help="venues of one business for the spread run (1: skip it)")
    parser.add_argument("--pgbench-seconds", type=int, default=10)
    parser.add_argument("--profile", action="store_true", help="print pg_stat_statements per paid order (one-venue run)")
    args = parser.parse_args()

    with bench_cluster(seed=True, profile=args.profile) as cluster:
        venues = clone_venues(cluster.dsn, args.venues)
        with psycopg.connect(cluster.dsn, autocommit=True) as conn:  # enough stock for every order
            conn.execute("insert into public.stock_movements (business_id, venue_id, stock_item_id, delta, reason) "
                         "select business_id, venue_id, id, 1000000, 'delivery' from public.stock_items")
        tps = pgbench_tps(cluster, seconds=args.pgbench_seconds)
        orders, placed_rate = place_orders(cluster.dsn, args.orders, 4, venues[:1])
        spread = place_orders(cluster.dsn, args.orders, 4, venues)[0] if args.venues > 1 else []

        server, base = serve(cluster.dsn)
        try:
            post_webhooks(f"{base}/stripe-webhook", orders[:50], args.concurrency)  # warm the server's connections
            if args.profile:
                reset_profile(cluster.dsn)
            paid_rate, latencies = post_webhooks(f"{base}/stripe-webhook", orders[50:], args.concurrency)
            if args.profile:
                print_profile(cluster.dsn, len(orders) - 50, "paid order")
            spread_rate, spread_lat = post_webhooks(f"{base}/stripe-webhook", spread, args.concurrency) if spread else (0.0, [])
        finally:
            server.terminate()
            server.wait(timeout=30)

    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    rows = [
        ("pgbench tpcb-like, 4 clients", f"{tps:,.0f} TPS", "1.00"),
        ("place_order as anon (priced, validated, 2 lines), 4 clients", f"{placed_rate:,.0f} orders/s", f"{placed_rate / tps:.2f}"),
        (f"signed webhook → paid order with full fan-out, {args.concurrency} concurrent, one venue", f"{paid_rate:,.0f} orders/s",
         f"{paid_rate / tps:.2f}"),
    ]
    if spread:
        rows.append((f"the same over {len(venues)} venues of one business", f"{spread_rate:,.0f} orders/s", f"{spread_rate / tps:.2f}"))
    body = "| measure | result | ratio to pgbench TPS |\n|---|---|---|\n" + "\n".join(f"| {a} | {b} | {c} |" for a, b, c in rows)
    body += (f"\n\nWebhook request latency, one venue ({len(latencies)} requests after 50 to warm up, one uvicorn worker, "
             f"{args.concurrency} concurrent clients): p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    if spread:
        body += f"; over {len(venues)} venues p50 {percentile(spread_lat, 50):.1f} ms, p99 {percentile(spread_lat, 99):.1f} ms"
    body += (". The fan-out per paid order: payment row, platform fee, customer match or insert, per-venue stats upsert, kitchen "
             "ticket and its print jobs (two printers per venue), stock movements through the recipe, loyalty points, two "
             "notification rows, pickup code HMAC, order.paid event.\n")
    print(body)
    write_section("orders", body)


if __name__ == "__main__":
    main()
