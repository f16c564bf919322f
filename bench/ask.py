"""Conversational admin benchmark: answer latency (p50/p99) of the offline backend over the 60-question
corpus (tests/data/ask_corpus.jsonl) on the corpus's dataset grown with generated customers and orders,
next to the same questions through the LLM path against a local fake OpenAI-compatible endpoint (which
answers at once, so the difference is the path's own plumbing: two HTTP round trips, JSON, the tool
messages), next to the same tool calls run alone (what the dashboard would pay for the numbers). Also the parser alone.

    .venv/bin/python bench/ask.py [--customers 20000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg.rows import dict_row

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import bench_cluster, percentile, write_section  # noqa: E402
from brigade.ask.service import ToolRunner, ask, load_context  # noqa: E402
from brigade.ask.understand import LlmAsker, RuleAsker  # noqa: E402
from brigade.auth import Claims  # noqa: E402
from brigade.db import open_pool  # noqa: E402
from tests.ask_kit import build  # noqa: E402
from tests.ask_kit import FakeLlm  # noqa: E402
from tests.conftest import Factory  # noqa: E402
from tests.fakes.http import FakeServer  # noqa: E402

CORPUS = Path(__file__).resolve().parent.parent / "tests" / "data" / "ask_corpus.jsonl"

GROW = ["set session_replication_role = replica", """
insert into public.customers (business_id, id, full_name, email)
select %(b)s, ('00000000-0000-4000-9000-' || lpad(to_hex(g), 12, '0'))::uuid, 'Customer ' || g, 'c' || g || '@bench.test'
from generate_series(1, %(n)s) g""", """
insert into public.orders (business_id, venue_id, order_number, channel, fulfilment, status, payment_status, customer_id, currency,
                           subtotal_cents, total_cents, placed_at, paid_at)
select %(b)s, case when g %% 2 = 0 then %(h)s::uuid else %(l)s::uuid end, 1000 + g * 3 + k, 'web', 'pickup', 'completed', 'paid',
       ('00000000-0000-4000-9000-' || lpad(to_hex(g), 12, '0'))::uuid, 'USD', 100 + (hashint4(g * 3 + k) & 1023),
       100 + (hashint4(g * 3 + k) & 1023), now() - make_interval(days => 1 + (hashint4(g * 5 + k) & 511) %% 400),
       now() - make_interval(days => 1 + (hashint4(g * 5 + k) & 511) %% 400)
from generate_series(1, %(n)s) g cross join generate_series(1, 3) k""", "set session_replication_role = origin", """
insert into public.customer_venue_stats (business_id, venue_id, customer_id, total_orders, total_spent_cents, first_order_at, last_order_at)
select business_id, venue_id, customer_id, count(*), sum(total_cents), min(paid_at), max(paid_at) from public.orders
where business_id = %(b)s and customer_id::text like '00000000-0000-4000-9000-%%' group by 1, 2, 3"""]


async def measure(dsn: str, ds: Any, rounds: int) -> dict[str, list[float]]:
    corpus = [json.loads(line)["question"] for line in CORPUS.read_text().splitlines() if line.strip()]
    owner = ds.tenant.claims("owner")
    out: dict[str, list[float]] = {"rules": [], "llm": [], "rpc": [], "parse": []}
    pool = await open_pool(dsn, max_size=4)
    try:
        ctx = await load_context(pool, owner, ds.business_id)
        with FakeServer() as server:
            FakeLlm(server)
            async with httpx.AsyncClient() as client:
                llm = LlmAsker(f"{server.url}/v1", "sk-bench", "bench", client=client)
                rules = RuleAsker()
                for question in corpus[:5]:  # warm both paths
                    await ask(pool, owner, ds.business_id, question, rules, log=False)
                    await ask(pool, owner, ds.business_id, question, llm, log=False)
                for _ in range(rounds):
                    for question in corpus:
                        for name, asker in (("rules", rules), ("llm", llm)):
                            t0 = time.perf_counter()
                            await ask(pool, owner, ds.business_id, question, asker)
                            out[name].append((time.perf_counter() - t0) * 1000)
                        t0 = time.perf_counter()
                        rules.plan(question, ctx)
                        out["parse"].append((time.perf_counter() - t0) * 1000)
                        # the same tool calls alone, each one read-only request as the caller (what the dashboard pays)
                        runner = ToolRunner(pool, owner, ctx)
                        t0 = time.perf_counter()
                        for tool, raw in rules.plan(question, ctx).calls:
                            t1 = time.perf_counter()
                            await runner.run(tool, raw)
                            out.setdefault(f"tool:{tool}", []).append((time.perf_counter() - t1) * 1000)
                        out["rpc"].append((time.perf_counter() - t0) * 1000)
    finally:
        await pool.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    load = os.getloadavg()[0]
    with bench_cluster() as cluster, psycopg.connect(cluster.dsn, autocommit=True, row_factory=dict_row) as conn:
        ds = build(conn, Factory(conn))
        params = {"b": ds.business_id, "h": ds.venues["Harbour"], "l": ds.venues["Hill"], "n": args.customers}
        for statement in GROW:
            conn.execute(statement, params if "%(" in statement else None)
        conn.execute("select app.crm_rebucket(%s)", (ds.business_id,))
        conn.execute("analyze")
        out = asyncio.run(measure(cluster.dsn, ds, args.rounds))

    rpc50 = percentile(out["rpc"], 50)
    rows = []
    for key, label in (("rules", "answer, offline rules (context + tool + log, 3 transactions)"),
                       ("llm", "answer, LLM path to a fake endpoint that answers at once"),
                       ("rpc", "baseline: the same questions' tool calls alone, as the caller")):
        p50, p99 = percentile(out[key], 50), percentile(out[key], 99)
        rows.append(f"| {label} | {p50:.2f} ms | {p99:.2f} ms | {p50 / rpc50:.1f}× |")
    plumbing = percentile(out["llm"], 50) - percentile(out["rules"], 50)
    body = (f"{args.customers:,} generated customers ({args.customers * 3:,} orders) on top of the corpus dataset, "
            f"{len(out['rules']):,} answers per path (the 60 corpus questions × {args.rounds}), one caller at a time; "
            f"load average {load:.1f} when the run started (the ratios hold better than the milliseconds on a shared machine).\n\n"
            "| measure | p50 | p99 | p50 vs the tools alone |\n|---|---|---|---|\n" + "\n".join(rows) + "\n\n"
            f"Plumbing cost of the LLM path (p50 difference, the model's own time excluded): {plumbing:.2f} ms per answer, "
            f"{percentile(out['llm'], 50) / percentile(out['rules'], 50):.2f}× the offline answer. "
            f"The rule parser alone: p50 {percentile(out['parse'], 50) * 1000:.0f} µs, p99 {percentile(out['parse'], 99) * 1000:.0f} µs.")
    tools = sorted(((percentile(v, 50), k[5:]) for k, v in out.items() if k.startswith("tool:")), reverse=True)
    body += ("\n\nSlowest tools alone (p50): " + ", ".join(f"{name} {ms:.1f} ms" for ms, name in tools[:3])
             + "; fastest: " + ", ".join(f"{name} {ms:.1f} ms" for ms, name in tools[-2:]) + ".")
    print(body)
    write_section("conversational admin (ask)", body)


if __name__ == "__main__":
    main()
