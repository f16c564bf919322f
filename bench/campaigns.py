"""Campaigns benchmark: evaluate a dormant-30-days automation over N customers and enqueue the sends
(set-based, one batch of delayed events), side by side with the same matching done one customer at a
time through the per-trigger path (app.enqueue_automations, one event each); then the send-time check
(claim + record) per send, and a campaign preview over a segment of every customer.

    .venv/bin/python bench/campaigns.py [--customers 100000] [--claims 5000]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import bench_cluster, pgbench_tps, write_section  # noqa: E402

BUSINESS = "00000000-0000-4000-8000-00000000c0c0"
VENUE = "00000000-0000-4000-8000-0000000c0001"

LOAD = """
set session_replication_role = replica;  -- bulk load: no triggers, no FK checks
insert into public.businesses (id, name, slug, modules_json)
values ({b}, 'Bench Bistro', 'bench-bistro', '{{"ordering": true, "crm": true, "campaigns": true}}');
insert into public.venues (business_id, id, name, slug) values ({b}, {v}, 'Main', 'main');
insert into public.customers (business_id, id, full_name, phone, email)
select {b}, ('00000000-0000-4000-9000-' || lpad(to_hex(g), 12, '0'))::uuid, 'Customer ' || g,
       '+1555' || lpad(g::text, 7, '0'), 'c' || g || '@bench.test'
from generate_series(1, {n}) g;
-- last orders spread over 0-119 days: about three quarters are 30+ days dormant
insert into public.customer_venue_stats (business_id, venue_id, customer_id, total_orders, total_spent_cents, first_order_at, last_order_at)
select {b}, {v}, ('00000000-0000-4000-9000-' || lpad(to_hex(g), 12, '0'))::uuid, 1 + g % 7, 1500 * (1 + g % 7),
       now() - interval '300 days', now() - make_interval(days => g % 120, hours => g % 24)
from generate_series(1, {n}) g;
-- two thirds consented to SMS marketing
insert into public.customer_consent_log (business_id, customer_id, channel, action, source)
select {b}, ('00000000-0000-4000-9000-' || lpad(to_hex(g), 12, '0'))::uuid, 'SMS_MARKETING', 'GRANTED', 'checkout'
from generate_series(1, {n}) g where g % 3 <> 0;
set session_replication_role = origin;
analyze;
"""

ONE_BY_ONE = """
do $$
declare r record;
begin
  for r in
    select s.customer_id, s.venue_id, s.last_order_at from public.customer_venue_stats s
    join public.customers c on c.business_id = s.business_id and c.id = s.customer_id
    where s.business_id = {b} and s.total_orders > 0 and s.last_order_at <= now() - interval '30 days'
      and c.anonymised_at is null
  loop
    perform app.enqueue_automations({b}, 'customer.dormant', 'dormant:' || r.customer_id || ':' || r.last_order_at,
                                    r.customer_id, r.venue_id, '{{}}'::jsonb);
  end loop;
end $$
"""


def timed(conn: psycopg.Connection, query: object, params: dict | None = None) -> float:
    t0 = time.perf_counter()
    conn.execute(query, params)  # type: ignore[arg-type]
    return time.perf_counter() - t0


STEP = "select app.complete_marketing_sends(%s::jsonb), app.start_marketing_send(%s, %s)"  # the worker's marketing_send_step


def worker_path(dsn: str, sends: int, batch: int, outcomes: dict[str, int], lock: threading.Lock, durable: bool) -> None:
    """What the worker does in SQL for marketing sends, no provider: claim a batch (committed), then one commit
    per send recording the previous one's outcome and handing this one over. Durable commits are the worker's;
    without them the figure is the SQL's own cost."""
    done = 0
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("set synchronous_commit = on" if durable else "set synchronous_commit = off")
        while done < sends:
            claims = [r[0] for r in conn.execute("select c from app.claim_marketing_sends(null, null, %s) c", (min(batch, sends - done),))]
            if not claims:
                return
            done += len(claims)
            last: list[dict[str, object]] = []  # the previous send's outcome, recorded in the next commit
            for claim in claims:
                with lock:
                    outcomes[claim["action"]] = outcomes.get(claim["action"], 0) + 1
                if claim["action"] != "send":
                    continue
                conn.execute(STEP, (json.dumps(last), claim["business_id"], claim["send_id"]))
                last = [{"business_id": claim["business_id"], "send_id": claim["send_id"], "recipient": claim["recipient"],
                         "template": "customer.dormant", "provider": "log", "message_id": "x", "cost_cents": 0.79, "error": None}]
            conn.execute(STEP, (json.dumps(last), None, None))


def batched(dsn: str, sends: int, batch: int, clients: int, durable: bool = True) -> tuple[float, dict[str, int]]:
    outcomes: dict[str, int] = {}
    lock = threading.Lock()
    with ThreadPoolExecutor(clients) as pool:
        t0 = time.perf_counter()
        for f in [pool.submit(worker_path, dsn, sends // clients, batch, outcomes, lock, durable) for _ in range(clients)]:
            f.result()  # a client's error fails the run
        seconds = time.perf_counter() - t0
    assert sum(outcomes.values()) == sends // clients * clients, outcomes
    return seconds, outcomes


def reset(conn: psycopg.Connection) -> None:
    conn.execute("delete from public.campaign_sends")
    conn.execute("select pgmq.purge_queue('brigade_events')")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--claims", type=int, default=5_000)
    parser.add_argument("--batch", type=int, default=25)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--pgbench-seconds", type=int, default=10)
    parser.add_argument("--preview-runs", type=int, default=5)
    args = parser.parse_args()
    started_load = os.getloadavg()[0]

    with bench_cluster() as cluster, psycopg.connect(cluster.dsn, autocommit=True) as conn:
        conn.execute("set synchronous_commit = off")
        load = timed(conn, sql.SQL(LOAD).format(b=sql.Literal(BUSINESS), v=sql.Literal(VENUE), n=sql.Literal(args.customers)))
        rule = conn.execute("insert into public.automations (business_id, name, trigger, dormant_days, channel, body, delay_seconds) "
                            "values (%s, 'Win-back', 'customer.dormant', 30, 'sms', 'We miss you {{first_name}}', 3600) returning id",
                            (BUSINESS,)).fetchone()[0]  # type: ignore[index]
        t0 = time.perf_counter()
        sends = conn.execute("select app.evaluate_dormant_automations(%s)", (BUSINESS,)).fetchone()[0]  # type: ignore[index]
        set_based = time.perf_counter() - t0
        queued = conn.execute("select count(*) from pgmq.q_brigade_events").fetchone()[0]  # type: ignore[index]
        again = timed(conn, "select app.evaluate_dormant_automations(%s)", (BUSINESS,))
        reset(conn)
        one_by_one = timed(conn, sql.SQL(ONE_BY_ONE).format(b=sql.Literal(BUSINESS)))
        slow_sends = conn.execute("select count(*) from public.campaign_sends").fetchone()[0]  # type: ignore[index]
        assert slow_sends == sends, (slow_sends, sends)
        reset(conn)
        conn.execute("select app.evaluate_dormant_automations(%s)", (BUSINESS,))
        conn.execute("update public.campaign_sends set due_at = now() - interval '1 minute'")
        ids = [r[0] for r in conn.execute("select id from public.campaign_sends order by id limit %s", (args.claims,))]
        t0 = time.perf_counter()  # synchronous_commit off, as this row was measured before batching
        outcomes: dict[str, int] = {}
        for send_id in ids:  # one send per transaction: app.claim_marketing_send, the batch of one
            with conn.transaction():
                claim = conn.execute("select app.claim_marketing_send(%s, %s)", (BUSINESS, send_id)).fetchone()[0]  # type: ignore[index]
                outcomes[claim["action"]] = outcomes.get(claim["action"], 0) + 1
                if claim["action"] == "send":
                    conn.execute("select app.complete_marketing_send(%s, %s, %s, 'customer.dormant', 'log', 'x', 0.79, null)",
                                  (BUSINESS, send_id, claim["recipient"]))
        claim_seconds = time.perf_counter() - t0
        sql_only, sql_outcomes = batched(cluster.dsn, args.claims, args.batch, 1, durable=False)
        one_client, one_outcomes = batched(cluster.dsn, args.claims, args.batch, 1)
        many_clients, many_outcomes = batched(cluster.dsn, args.claims, args.batch, args.clients)
        tps = pgbench_tps(cluster, clients=args.clients, seconds=args.pgbench_seconds)
        segment = conn.execute("insert into public.segments (business_id, venue_id, key, name, criteria) values (%s, %s, 'all', 'All', "
                               "'{\"field\": \"total_orders\", \"op\": \"gte\", \"value\": 1}') returning id", (BUSINESS, VENUE)).fetchone()[0]  # type: ignore[index]
        members = conn.execute("select app.recompute_segment(%s, %s)", (BUSINESS, segment)).fetchone()[0]  # type: ignore[index]
        conn.execute("set role service_role")
        conn.execute("""select set_config('request.jwt.claims', '{"role": "service_role"}', false)""")
        runs = []
        for _ in range(args.preview_runs):
            t0 = time.perf_counter()
            preview = conn.execute("select app.campaign_preview(%s, 'sms')", (segment,)).fetchone()[0]  # type: ignore[index]
            runs.append(time.perf_counter() - t0)
        preview_seconds = statistics.median(runs)
        t0 = time.perf_counter()
        per_member = dict(conn.execute(
            "select coalesce(r, 'reachable'), count(*) from (select app.marketing_block(%s, m.customer_id, %s, 'sms', 'SMS_MARKETING', null) r "
            "from public.segment_memberships m where m.business_id = %s and m.segment_id = %s) x group by 1",
            (BUSINESS, VENUE, BUSINESS, segment)).fetchall())
        per_member_seconds = time.perf_counter() - t0
        assert per_member.get("reachable", 0) == preview["reachable"], (per_member, preview)
        conn.execute("reset role")
        assert rule

    body = (
        f"{args.customers:,} customers at one venue, last orders spread over 0–119 days, two thirds with SMS consent; "
        f"generated in {load:.1f} s. Load average {started_load:.1f} when the run started, {os.getloadavg()[0]:.1f} at its end "
        "(the machine is shared: the ratios hold better than the absolute figures).\n\n"
        "| measure | result |\n|---|---|\n"
        f"| evaluate a dormant-30-days automation and enqueue the sends (set-based, one batch of delayed events) | "
        f"{set_based:.2f} s for {sends:,} sends ({sends / set_based:,.0f} sends/s; {queued:,} events queued) |\n"
        f"| the same matching one customer at a time (app.enqueue_automations + app.emit per customer) | "
        f"{one_by_one:.2f} s (the set-based run is {one_by_one / set_based:.1f}× faster) |\n"
        f"| evaluating again (every lapse already has its send: nothing new) | {again:.2f} s |\n"
        f"| campaign preview over a {members:,}-member segment (set-based, app.marketing_blocks; median of {args.preview_runs}) | "
        f"{preview_seconds * 1000:,.0f} ms ({preview['reachable']:,} reachable) |\n"
        f"| the same counts one member at a time (app.marketing_block per member) | {per_member_seconds * 1000:,.0f} ms "
        f"(set-based is {per_member_seconds / preview_seconds:.1f}× faster) |\n"
        "\n| send-time check + record, no provider | result | ratio to pgbench TPS |\n|---|---|---|\n"
        f"| pgbench tpcb-like, {args.clients} clients | {tps:,.0f} TPS | 1.00 |\n"
        f"| one send per transaction (claim + complete), 1 client, commits not waited for | {args.claims / claim_seconds:,.0f} sends/s | "
        f"{args.claims / claim_seconds / tps:.2f} |\n"
        f"| batched claims of {args.batch}, one commit per send (last outcome + next hand-over), 1 client, commits not waited for | "
        f"{sum(sql_outcomes.values()) / sql_only:,.0f} sends/s | {sum(sql_outcomes.values()) / sql_only / tps:.2f} |\n"
        f"| the same with durable commits (the worker's: the hand-over is on disk before the provider call), 1 client | "
        f"{sum(one_outcomes.values()) / one_client:,.0f} sends/s | {sum(one_outcomes.values()) / one_client / tps:.2f} |\n"
        f"| the same durable, {args.clients} clients (SKIP LOCKED) | {sum(many_outcomes.values()) / many_clients:,.0f} sends/s | "
        f"{sum(many_outcomes.values()) / many_clients / tps:.2f} |\n"
        f"\nOutcomes (one per transaction / batched: not waited for, durable 1 client, durable {args.clients} clients): "
        f"{', '.join(f'{k}: {v:,}' for k, v in sorted(outcomes.items()))} / "
        f"{', '.join(f'{k}: {v:,}' for k, v in sorted(sql_outcomes.items()))} / "
        f"{', '.join(f'{k}: {v:,}' for k, v in sorted(one_outcomes.items()))} / "
        f"{', '.join(f'{k}: {v:,}' for k, v in sorted(many_outcomes.items()))} (a skip is final: no-consent customers).\n"
    )
    print(body)
    write_section("campaigns", body)


if __name__ == "__main__":
    main()
