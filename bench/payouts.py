"""Payout benchmark (issue 23): the monthly payout computation of B businesses (default 200) with a month
of orders each (default 600 paid orders a business, a quarter of them deliveries with a courier cost,
1 % refunded), as the platform.payouts job runs it (app.run_scheduled_payouts), side by side with the
floor: one bare aggregate of the same payments, fees, refunds and delivery costs grouped by business.
Then the sending step (app.prepare_due_payouts: carry-in, status, audit, the transfer event) for the
same 200 payouts.

    .venv/bin/python bench/payouts.py [--businesses 200] [--orders 600]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import bench_cluster, write_section  # noqa: E402

LOAD = """
set session_replication_role = replica;  -- bulk load: no triggers, no FK checks
insert into public.businesses (id, name, slug, modules_json, payout_schedule, time_zone, stripe_account_id)
select ('00000000-0000-4000-8000-' || lpad(to_hex(b), 12, '0'))::uuid, 'Bench ' || b, 'bench-' || b,
       '{{"ordering": true, "dispatch": true}}', 'monthly', 'UTC', 'acct_bench' || lpad(b::text, 6, '0')
from generate_series(1, {businesses}) b;
insert into public.venues (business_id, id, name, slug)
select id, id, 'Main', 'main' from public.businesses where slug like 'bench-%';
insert into public.orders (business_id, id, venue_id, order_number, channel, fulfilment, status, payment_status, guest_name, currency,
                           subtotal_cents, tax_cents, tip_cents, total_cents, placed_at, paid_at, delivery_address)
select b.id, extensions.gen_random_uuid(), b.id, g, 'web', case when g % 4 = 0 then 'delivery' else 'pickup' end, 'completed', 'paid',
       'Guest', 'USD', 1390, 111, 100, 1601, t.at, t.at, case when g % 4 = 0 then '{{"line1": "1 Main St"}}'::jsonb end
from public.businesses b cross join generate_series(1, {orders}) g
cross join lateral (select (select s from period) + ((select e - s from period) * (g::float / ({orders} + 1))) as at) t
where b.slug like 'bench-%';
insert into public.payments (business_id, order_id, venue_id, payment_intent_id, amount_cents, currency, created_at)
select business_id, id, venue_id, 'pi_' || id, total_cents, 'USD', paid_at from public.orders where guest_name = 'Guest';
insert into public.platform_fees (business_id, payment_id, order_id, plan_key, base_amount_cents, fee_bps, fixed_cents, fee_cents, currency, created_at)
select business_id, id, order_id, 'starter', amount_cents, 300, 30, round(amount_cents * 0.03) + 30, 'USD', created_at from public.payments;
insert into public.refunds (business_id, order_id, venue_id, amount_cents, currency, status, idempotency_key, applied_at)
select business_id, id, venue_id, 500, 'USD', 'succeeded', 'bench:' || id, paid_at + interval '1 hour'
from public.orders where guest_name = 'Guest' and order_number % 100 = 7;
insert into public.deliveries (business_id, venue_id, order_id, external_delivery_id, pickup, dropoff, currency, dropoff_pin, cost_cents)
select business_id, venue_id, id, 'BRG-' || id, '{{}}', '{{}}', 'USD', '1234', 675 from public.orders where fulfilment = 'delivery';
set session_replication_role = origin;
analyze;
"""

FLOOR = """
with p as (select business_id, sum(amount_cents) as gross, count(*) as n from public.payments, period
           where created_at >= s and created_at < e group by business_id),
     f as (select business_id, sum(fee_cents) as fees from public.platform_fees, period where created_at >= s and created_at < e group by business_id),
     r as (select business_id, sum(amount_cents) as refunds from public.refunds, period
           where status = 'succeeded' and coalesce(applied_at, updated_at) >= s and coalesce(applied_at, updated_at) < e group by business_id),
     d as (select o.business_id, sum(dl.cost_cents) as delivery from public.orders o join public.deliveries dl on dl.business_id = o.business_id
           and dl.order_id = o.id, period where o.fulfilment = 'delivery' and o.paid_at >= s and o.paid_at < e group by o.business_id)
select count(*) as n, sum(p.gross - f.fees - coalesce(r.refunds, 0) - coalesce(d.delivery, 0)) as net
from p join f using (business_id) left join r using (business_id) left join d using (business_id)
"""


def timed(conn: psycopg.Connection, sql: str, runs: int) -> tuple[float, object]:
    """Median wall time (ms) of `sql` over `runs` runs, each rolled back; and its last result."""
    times, result = [], None
    for _ in range(runs):
        start = time.perf_counter()
        result = conn.execute(sql).fetchone()
        times.append((time.perf_counter() - start) * 1000)
        conn.rollback()
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--businesses", type=int, default=200)
    parser.add_argument("--orders", type=int, default=600)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with bench_cluster() as cluster:
        with psycopg.connect(cluster.dsn) as conn:
            conn.execute("create temp table period as select lower(p) as s, upper(p) as e "
                         "from (select app.payout_period('monthly', 'UTC', now()) as p) x")
            start = time.perf_counter()
            conn.execute(LOAD.format(businesses=int(args.businesses), orders=int(args.orders)).encode())
            conn.commit()
            loaded = time.perf_counter() - start
            floor_ms, floor = timed(conn, FLOOR, args.runs)
            compute_ms, computed = timed(conn, "select app.run_scheduled_payouts(now())", args.runs)
            both_ms, sent = timed(conn, "select app.run_scheduled_payouts(now()), jsonb_array_length(app.prepare_due_payouts(now()))", args.runs)
            conn.execute("select app.run_scheduled_payouts(now())")
            net = conn.execute("select count(*) as n, sum(net_cents) as net from public.business_payouts").fetchone()
            conn.rollback()
    assert floor is not None and computed is not None and sent is not None and net is not None
    assert floor[0] == computed[0] == sent[1] == args.businesses and net[1] == floor[1], (floor, computed, sent, net)
    payments = args.businesses * args.orders
    body = f"""
| measure | median | ratio |
|---|---|---|
| floor: one aggregate of the month's payments, fees, refunds, delivery costs grouped by business | {floor_ms:.1f} ms | 1.00 |
| `app.run_scheduled_payouts` (the job's computation: {args.businesses} monthly payouts upserted) | {compute_ms:.1f} ms | {compute_ms / floor_ms:.2f} |
| the same plus `app.prepare_due_payouts` (carry-in, `processing`, audit, one transfer event each) | {both_ms:.1f} ms | {both_ms / floor_ms:.2f} |
| per payout, computed and sent | {both_ms / args.businesses:.2f} ms | |

{args.businesses} businesses × {args.orders} paid orders in a month ({payments:,} payments, a quarter deliveries with a courier cost,
1 % refunded), loaded in {loaded:.0f} s; each measure the median of {args.runs} runs, each rolled back. Both sides agree on the
total net ({net[1]:,} cents).
"""
    print(body)
    write_section("payouts", body)


if __name__ == "__main__":
    main()
