"""Voice benchmark: intent and item-extraction accuracy of the offline classifier over the utterance
corpus (tests/data/voice_corpus.jsonl, the seeded demo menu), per split and per intent, with its
per-utterance latency next to the LLM backend's round trip to a local fake endpoint; then whole phone
orders (dial, four spoken turns, status callback: signed like Twilio's) through `brigade serve` with
fake Stripe and Twilio, as calls/s and turn latency next to pgbench's tpcb-like TPS on the same cluster.

    .venv/bin/python bench/voice.py [--calls 150] [--concurrency 4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import bench_cluster, free_port, percentile, pgbench_tps, write_section  # noqa: E402
from brigade.settings import PROJECT_ROOT  # noqa: E402
from brigade.voice.nlu import LlmUnderstander, Menu, RuleUnderstander, Understanding  # noqa: E402
from tests.fakes.http import FakeServer  # noqa: E402
from tests.ordering_kit import FakeStripe, FakeTwilio  # noqa: E402
from tests.voice_kit import DEMO_BUSINESS, DOWNTOWN, Call, FakeLlm  # noqa: E402

CORPUS = PROJECT_ROOT / "tests" / "data" / "voice_corpus.jsonl"
TOKEN, ACCOUNT = "bench-twilio-token", "AC" + "2" * 32
SCRIPT = ["Hi, I'd like a large latte with oat milk and two croissants", "no that's all", "pickup please", "yes"]


def rows_of(u: Understanding) -> list[dict[str, Any]]:
    return sorted(({"product": i.product, "variant": i.variant, "modifiers": sorted(i.modifiers), "quantity": i.quantity}
                   for i in u.items), key=json.dumps)


def accuracy(menu: Menu, fake_llm_url: str) -> tuple[str, dict[str, float]]:
    corpus = [json.loads(line) for line in CORPUS.read_text().splitlines() if line.strip()]
    rules = RuleUnderstander()
    results, rule_ms = [], []
    for row in corpus:
        t0 = time.perf_counter()
        u = rules.understand_sync(row["text"], menu)
        rule_ms.append((time.perf_counter() - t0) * 1000)
        results.append((row, u))

    async def through_llm() -> list[float]:
        out = []
        async with httpx.AsyncClient() as client:
            backend = LlmUnderstander(fake_llm_url, "sk-bench", "bench", client=client)
            for row in corpus:
                t0 = time.perf_counter()
                u = await backend.understand(row["text"], menu)
                out.append((time.perf_counter() - t0) * 1000)
                assert u.backend == "llm"
        return out
    llm_ms = asyncio.run(through_llm())

    def score(subset: list[tuple[dict[str, Any], Understanding]]) -> tuple[int, float, float]:
        n = len(subset)
        return (n, sum(u.intent == r["intent"] for r, u in subset) / n,
                sum(rows_of(u) == sorted(r["items"], key=json.dumps) for r, u in subset) / n)

    lines = ["| utterances | n | intent accuracy | item extraction (exact lines) |", "|---|---|---|---|"]
    summary: dict[str, float] = {}
    for label, subset in (("all", results), ("dev (written with the classifier)", [x for x in results if x[0]["split"] == "dev"]),
                          ("holdout (written after, not tuned on)", [x for x in results if x[0]["split"] == "holdout"])):
        n, i, it = score(subset)
        summary[label.split(" ")[0]] = i
        summary[label.split(" ")[0] + "_items"] = it
        lines.append(f"| {label} | {n} | {i:.1%} | {it:.1%} |")
    by_intent: dict[str, list[Any]] = defaultdict(list)
    for r, u in results:
        by_intent[r["intent"]].append((r, u))
    lines.append("")
    lines.append("| intent | n | recall | precision |")
    lines.append("|---|---|---|---|")
    for intent, subset in sorted(by_intent.items()):
        predicted = [x for x in results if x[1].intent == intent]
        recall = sum(u.intent == intent for _, u in subset) / len(subset)
        precision = sum(r["intent"] == intent for r, _ in predicted) / len(predicted) if predicted else 0.0
        lines.append(f"| {intent} | {len(subset)} | {recall:.1%} | {precision:.1%} |")
    misses = [f"`{r['text']}` → {u.intent}" + ("" if rows_of(u) == sorted(r["items"], key=json.dumps) else " (items differ)")
              for r, u in results if u.intent != r["intent"] or rows_of(u) != sorted(r["items"], key=json.dumps)]
    lines.append("")
    lines.append(f"Per utterance: rules p50 {percentile(rule_ms, 50):.2f} ms, p99 {percentile(rule_ms, 99):.2f} ms; LLM backend "
                 f"round trip to a local fake endpoint p50 {percentile(llm_ms, 50):.2f} ms, p99 {percentile(llm_ms, 99):.2f} ms "
                 f"({percentile(llm_ms, 50) / max(percentile(rule_ms, 50), 1e-6):.0f}× the rules, before any model time). "
                 "The fake (Python's http.server) answers with the rules' reading, so this is plumbing cost only: a model's own latency and accuracy are not measured here.")
    lines.append("")
    lines.append("Misread: " + "; ".join(misses) if misses else "Misread: none.")
    return "\n".join(lines), summary


def whole_calls(base: str, calls: int, concurrency: int) -> tuple[float, list[float], int]:
    """Complete phone orders, each by its own caller; returns calls/s, turn latencies (ms), orders made."""
    latencies: list[float] = []
    lock = threading.Lock()
    errors: list[str] = []

    def run(k: int) -> None:
        for i in range(k, calls, concurrency):
            call = Call(base, TOKEN, ACCOUNT, from_=f"+1646{i:07d}")
            steps = [call.dial, *[(lambda text=text: call.say(text)) for text in SCRIPT]]
            for step in steps:
                t0 = time.perf_counter()
                twiml = step()
                with lock:
                    latencies.append((time.perf_counter() - t0) * 1000)
                if twiml.status != 200:
                    errors.append(twiml.xml)
            if call.status("completed", 75).status_code != 200:
                errors.append("status callback failed")

    threads = [threading.Thread(target=run, args=(k,)) for k in range(concurrency)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    assert not errors, errors[:3]
    return calls / elapsed, latencies, calls


def serve(dsn: str, port: int, stripe_url: str, twilio_url: str, extra: dict[str, str]) -> subprocess.Popen[bytes]:
    env = {**os.environ, "BRIGADE_DATABASE_URL": dsn, "BRIGADE_LOG_FORMAT": "json", "BRIGADE_PAYMENTS_PROVIDER": "stripe",
           "BRIGADE_STRIPE_SECRET_KEY": "sk_test_bench", "BRIGADE_STRIPE_API_BASE": stripe_url, "BRIGADE_SMS_PROVIDER": "twilio",
           "BRIGADE_TWILIO_ACCOUNT_SID": ACCOUNT, "BRIGADE_TWILIO_AUTH_TOKEN": TOKEN, "BRIGADE_TWILIO_FROM_NUMBER": "+15005550006",
           "BRIGADE_TWILIO_API_BASE": twilio_url, **extra}
    server = subprocess.Popen([sys.executable, "-m", "brigade", "serve", "--port", str(port)], cwd=PROJECT_ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(300):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/functions/v1/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=150)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--pgbench-seconds", type=int, default=10)
    args = parser.parse_args()

    with bench_cluster(seed=True) as cluster, FakeServer() as s, FakeServer() as t, FakeServer() as llm_server:
        FakeStripe(s)
        FakeTwilio(t, ACCOUNT)
        FakeLlm(llm_server)
        with psycopg.connect(cluster.dsn, autocommit=True) as conn:
            conn.execute("insert into public.stock_movements (business_id, venue_id, stock_item_id, delta, reason) "
                         "select business_id, venue_id, id, 1000000, 'delivery' from public.stock_items")
            conn.execute("select app.grant_voice_credits(%s, 10000000, 'bench')", (DEMO_BUSINESS,))
            menu = Menu.from_json(conn.execute("select app.voice_menu(%s, %s)", (DEMO_BUSINESS, DOWNTOWN)).fetchone()[0])  # type: ignore[index]
        table, summary = accuracy(menu, llm_server.url + "/v1")
        print(table)
        tps = pgbench_tps(cluster, seconds=args.pgbench_seconds)

        runs = []
        for label, extra in (("rules", {}), ("llm (local fake endpoint)", {"BRIGADE_VOICE_NLU_BACKEND": "llm",
                                                                           "BRIGADE_VOICE_LLM_BASE_URL": llm_server.url + "/v1"})):
            port = free_port()
            server = serve(cluster.dsn, port, s.url, t.url, extra)
            try:
                rate, latencies, n = whole_calls(f"http://127.0.0.1:{port}", args.calls, args.concurrency)
            finally:
                server.terminate()
                server.wait(timeout=30)
            runs.append((label, rate, latencies, n))
        with psycopg.connect(cluster.dsn) as conn:
            ordered = conn.execute("select count(*) from public.calls where outcome = 'ordered'").fetchone()[0]  # type: ignore[index]
            charged = conn.execute("select count(*) from public.credit_transactions where kind = 'call'").fetchone()[0]  # type: ignore[index]
        assert ordered == charged == sum(r[3] for r in runs), (ordered, charged)

    body = table + "\n\n| whole phone order (dial + 4 turns + status callback) | result | turn p50 / p99 | ratio to pgbench TPS |\n|---|---|---|---|\n"
    body += f"| pgbench tpcb-like, 4 clients | {tps:,.0f} TPS | | 1.00 |\n"
    for label, rate, latencies, n in runs:
        body += (f"| {label}, {args.concurrency} concurrent callers, {n} calls | {rate:,.1f} calls/s ({rate * 6:,.0f} requests/s) | "
                 f"{percentile(latencies, 50):.1f} / {percentile(latencies, 99):.1f} ms | {rate / tps:.3f} |\n")
    body += ("\nEach call places a priced `phone` order, creates a Checkout Session on a fake Stripe and texts the link through "
             "a fake Twilio (both over HTTP, real SDKs), and its status callback writes the 10-credit burn; one uvicorn worker.\n")
    print(body)
    write_section("voice", body)


if __name__ == "__main__":
    main()
