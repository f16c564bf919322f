"""Platform billing and operator console costs, measured side by side on one migrated cluster:

- the platform-fee trigger on payments and the orders-per-month limit trigger on orders, each timed
  with the trigger on and off over the same rows (their overhead as a ratio);
- the operator views (`operator_businesses`, `operator_platform_metrics`) over B businesses × N paid
  orders, against a plain `count(*)` of the orders they aggregate;
- rebuilding a business's draft invoice (prorated lines) after a plan or module change.

    .venv/bin/python bench/billing.py [--businesses 200] [--orders 500]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import bench_cluster, percentile, write_section  # noqa: E402


def timed(conn: psycopg.Connection[Any], sql: str, params: Any = None) -> float:
    t0 = time.perf_counter()
    conn.execute(sql, params)
    return time.perf_counter() - t0


def populate(conn: psycopg.Connection[Any], businesses: int) -> None:
    conn.execute("select set_config('request.jwt.claims', '{\"role\": \"service_role\"}', false)")
    conn.execute("""
      insert into public.businesses (name, slug, modules_json)
      select 'Bench ' || g, 'bench-' || g, '{"ordering": true, "crm": true}' from generate_series(1, %s) g""", (businesses,))
    conn.execute("update public.business_subscriptions set plan_key = 'enterprise'")
    conn.execute("""
      insert into public.venues (business_id, name, slug, is_published) select id, 'Main', 'main', true from public.businesses""")


def insert_orders(conn: psycopg.Connection[Any], per_business: int, offset: int) -> float:
    return timed(conn, """
      insert into public.orders (business_id, venue_id, order_number, channel, fulfilment, currency, subtotal_cents,
                                 total_cents, guest_phone, payment_status, paid_at, placed_at)
      select v.business_id, v.id, %(offset)s + g, 'web', 'pickup', 'USD', 1000 + g %% 500, 1000 + g %% 500, '+15555550100',
             'paid', now() - (g %% 30) * interval '1 day', now() - (g %% 30) * interval '1 day'
      from public.venues v cross join generate_series(1, %(n)s) g""", {"offset": offset, "n": per_business})


def insert_payments(conn: psycopg.Connection[Any], offset: int, count: int) -> float:
    return timed(conn, """
      insert into public.payments (business_id, order_id, venue_id, payment_intent_id, amount_cents, currency, created_at)
      select o.business_id, o.id, o.venue_id, 'pi_bench_' || o.id, o.total_cents, o.currency, o.paid_at
      from public.orders o where o.order_number > %(offset)s and o.order_number <= %(offset)s + %(count)s""",
                 {"offset": offset, "count": count})


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--businesses", type=int, default=200)
    parser.add_argument("--orders", type=int, default=500, help="paid orders per business (split in halves, trigger on/off)")
    args = parser.parse_args()
    half = args.orders // 2
    with bench_cluster() as cluster, psycopg.connect(cluster.dsn, row_factory=dict_row, autocommit=True) as conn:
        populate(conn, args.businesses)
        rows = args.businesses * half

        on_orders = insert_orders(conn, half, 0)
        conn.execute("alter table public.orders disable trigger orders_plan_limit")
        off_orders = insert_orders(conn, half, half)
        conn.execute("alter table public.orders enable trigger orders_plan_limit")

        on_pay = insert_payments(conn, 0, half)
        conn.execute("alter table public.payments disable trigger payments_platform_fee")
        off_pay = insert_payments(conn, half, half)
        conn.execute("alter table public.payments enable trigger payments_platform_fee")
        conn.execute("analyze")

        views = {}
        for name, sql in (("operator_businesses (every business)", "select * from public.operator_businesses"),
                          ("operator_businesses, one business by slug", "select * from public.operator_businesses where slug = 'bench-7'"),
                          ("operator_platform_metrics", "select * from public.operator_platform_metrics"),
                          ("baseline: count(*) of paid orders", "select count(*) from public.orders where paid_at is not null")):
            samples = [timed(conn, sql) * 1000 for _ in range(7)]
            views[name] = (statistics.median(samples), percentile(samples, 99))

        ids = [r["id"] for r in conn.execute("select id from public.businesses order by id limit 100")]
        invoice = []
        for b in ids:
            t0 = time.perf_counter()
            conn.execute("select app.change_plan(%s, 'growth')", (b,))
            invoice.append((time.perf_counter() - t0) * 1000)
        refresh = [timed(conn, "select app.refresh_draft_invoice(%s)", (b,)) * 1000 for b in ids]

    base = views["baseline: count(*) of paid orders"][0]
    lines = [
        f"{args.businesses} businesses × {args.orders} paid orders ({args.businesses * args.orders:,} orders, as many payments).",
        "",
        "| measure | trigger on | trigger off | overhead |",
        "|---|---|---|---|",
        f"| insert {rows:,} orders (orders-per-month limit: counter upsert + plan lookup) | {rows / on_orders:,.0f} rows/s | {rows / off_orders:,.0f} rows/s | {on_orders / off_orders:.2f}× |",
        f"| insert {rows:,} payments (platform fee row from the plan) | {rows / on_pay:,.0f} rows/s | {rows / off_pay:,.0f} rows/s | {on_pay / off_pay:.2f}× |",
        "",
        "| operator query | p50 | p99 | vs count(*) of orders |",
        "|---|---|---|---|",
        *[f"| {k} | {v[0]:.1f} ms | {v[1]:.1f} ms | {v[0] / base:.1f}× |" for k, v in views.items()],
        "",
        f"Plan change (limits check, lines closed/opened, audit, event, prorated draft invoice rebuilt): p50 {statistics.median(invoice):.2f} ms, "
        f"p99 {percentile(invoice, 99):.2f} ms over {len(invoice)} businesses; a draft invoice rebuild alone: p50 {statistics.median(refresh):.2f} ms.",
        "The trigger-on and trigger-off halves insert different rows of the same shape in one run; the first half also warms the cache, "
        "so the overhead is if anything understated.",
    ]
    body = "\n".join(lines)
    print(body)
    write_section("billing and operator", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
