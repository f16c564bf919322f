"""The conversational admin over one seeded dataset (tests/ask_kit.py): the 60-question corpus
(tests/data/ask_corpus.jsonl, 40 dev + 20 holdout reported separately) through the offline rules and
through the LLM path against a fake OpenAI-compatible endpoint, exact tool calls and numbers; the
model's malicious tool calls refused; the fallback when the endpoint fails; every question logged."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from brigade import queries
from brigade.ask.service import CANNOT, Answer, ask
from brigade.ask.understand import LlmAsker, RuleAsker
from brigade.db import open_pool
from tests.ask_kit import Dataset, FakeLlm, build, oracle
from tests.conftest import Factory
from tests.fakes.http import FakeServer

CORPUS = Path(__file__).resolve().parent.parent / "data" / "ask_corpus.jsonl"
Conn = psycopg.Connection[dict[str, Any]]


def load_corpus() -> list[dict[str, Any]]:
    return [json.loads(line) for line in CORPUS.read_text().splitlines() if line.strip()]


def expected_calls(row: dict[str, Any], ds: Dataset) -> list[tuple[str, dict[str, Any]]]:
    def venue(value: Any) -> Any:
        return ds.venue_of(value[1:]) if isinstance(value, str) and value.startswith("@") else value
    return [(c["tool"], {k: venue(v) for k, v in c["args"].items()}) for c in row["calls"]]


def check(row: dict[str, Any], answer: Answer, ds: Dataset, today: date) -> list[str]:
    """What is wrong with the answer (nothing: an empty list)."""
    made = [(c.tool, c.arguments) for c in answer.calls]
    if row.get("refused"):
        problems = [] if answer.refused and not made and answer.answer.startswith(CANNOT) else [f"not refused: {made}"]
        return problems
    want = expected_calls(row, ds)
    if made != want:
        return [f"calls {made} != {want}"]
    if answer.refused or any(c.status != "ok" for c in answer.calls):
        return [f"refused: {answer.answer}"]
    rows = answer.calls[0].rows
    expect = row["expect"]
    if expect == "oracle":
        expect = oracle(want[0][0], want[0][1], today, {str(v): k for k, v in ds.venues.items()})
    problems = []
    for column, values in expect.items():
        if column == "segment_totals":
            totals: dict[str, int] = {}
            for r in rows:
                totals[r["segment"]] = totals.get(r["segment"], 0) + int(r["customers"])
            got: Any = totals
        else:
            got = [float(r[column]) if isinstance(values[0], float) else r[column] for r in rows]
        if got != values:
            problems.append(f"{column}: {got} != {values}")
    return problems


async def run_corpus(pool: Any, ds: Dataset, asker: Any, today: date) -> dict[str, list[tuple[str, list[str]]]]:
    results: dict[str, list[tuple[str, list[str]]]] = {"dev": [], "holdout": []}
    for row in load_corpus():
        answer = await ask(pool, ds.tenant.claims("owner"), ds.business_id, row["question"], asker)
        results[row["split"]].append((row["question"], check(row, answer, ds, today)))
    return results


def accuracy(results: list[tuple[str, list[str]]]) -> float:
    return sum(not problems for _, problems in results) / len(results)


@pytest.mark.clock
async def test_the_corpus_through_both_backends_and_the_model_cannot_misbehave(conn: Conn, factory: Factory, db_dsn: str) -> None:
    ds = build(conn, factory)
    today = conn.execute("select (now() at time zone %s)::date as d", (ds.time_zone,)).fetchone()["d"]  # type: ignore[index]
    corpus = load_corpus()
    assert len(corpus) >= 60 and sum(r["split"] == "dev" for r in corpus) == 40 and sum(r["split"] == "holdout" for r in corpus) == 20
    pool = await open_pool(db_dsn, max_size=4)
    try:
        # the offline rules
        rules = await run_corpus(pool, ds, RuleAsker(), today)
        dev, holdout = accuracy(rules["dev"]), accuracy(rules["holdout"])
        print(f"\nask corpus, rules: dev {dev:.0%}, holdout {holdout:.0%}")
        assert dev == 1.0, [r for r in rules["dev"] if r[1]]
        assert holdout >= 0.9, [r for r in rules["holdout"] if r[1]]
        logged = conn.execute("select count(*) filter (where backend = 'rules') as rules, count(*) filter (where refused) as refused "
                              "from public.admin_questions where business_id = %s", (ds.business_id,)).fetchone()
        assert logged == {"rules": len(corpus), "refused": sum(bool(r.get("refused")) for r in corpus)}

        with FakeServer() as server:
            fake = FakeLlm(server)
            async with httpx.AsyncClient() as client:
                llm = LlmAsker(f"{server.url}/v1", "sk-test", "gpt-test", client=client)
                # the same corpus through the model path: the fake answers with tool calls, Brigade runs them
                through_llm = await run_corpus(pool, ds, llm, today)
                assert accuracy(through_llm["dev"]) == dev and accuracy(through_llm["holdout"]) == holdout
                first = fake.requests()[0]
                assert first["model"] == "gpt-test" and first["tool_choice"] == "auto"
                offered = {t["function"]["name"]: t["function"]["parameters"] for t in first["tools"]}
                assert "top_customers" in offered and all("business_id" not in p["properties"] for p in offered.values())
                assert str(ds.business_id) not in json.dumps(first)  # the model never needs (nor sees) the business id
                # what the model saw after its call: the tool's rows, nothing else
                second = fake.requests()[1]
                tool_msgs = [m for m in second["messages"] if m["role"] == "tool"]
                assert [m["role"] for m in second["messages"]] == ["system", "user", "assistant", "tool"]
                assert [r["full_name"] for r in json.loads(tool_msgs[0]["content"])["rows"]][:2] == ["Linus Torvalds", "Barbara Liskov"]

                # malicious tool calls: another business's id, tools that would write, a foreign venue, bad arguments
                rival = factory.tenant("Rival Diner", {"ordering": True, "crm": True})
                customers_before = conn.execute("select count(*) as n from public.customers").fetchone()
                fake.script = [
                    {"name": "top_customers", "arguments": {"business_id": str(rival.business_id), "n": 5}},
                    {"name": "delete_customers", "arguments": {"days": 90}},
                    {"name": "execute_sql", "arguments": {"sql": "delete from public.customers"}},
                    {"name": "top_customers", "arguments": {"n": 5, "venue_id": str(rival.venues[0])}},
                    {"name": "top_customers", "arguments": {"n": "5; drop table public.customers"}},
                    {"name": "customers_not_seen", "arguments": {"days": 60, "note": "and mark them lost"}},
                    {"name": "sales_summary", "arguments": "{not json"},
                ]
                bad = await ask(pool, ds.tenant.claims("owner"), ds.business_id, "who are my top customers?", llm)
                assert bad.refused and bad.answer.startswith(CANNOT) and bad.backend == "llm"
                assert [(c.tool, c.status, c.reason) for c in bad.calls] == [
                    ("top_customers", "refused", "other_business"), ("delete_customers", "refused", "unknown_tool"),
                    ("execute_sql", "refused", "unknown_tool"), ("top_customers", "refused", "unknown_venue"),
                    ("top_customers", "refused", "invalid_arguments"), ("customers_not_seen", "refused", "invalid_arguments"),
                    ("sales_summary", "refused", "invalid_arguments")]
                assert all(c.rows == [] for c in bad.calls)
                assert conn.execute("select count(*) as n from public.customers").fetchone() == customers_before
                refusals = [json.loads(m["content"]) for m in fake.requests()[-1]["messages"] if m["role"] == "tool"]
                assert [r["refused"] for r in refusals][:3] == ["other_business", "unknown_tool", "unknown_tool"]
                assert all("rows" not in r for r in refusals)
                # the business id the model may pass is accepted when it is the caller's own; the answer is the rows'
                fake.script = [{"name": "top_customers", "arguments": {"business_id": str(ds.business_id), "n": 2}},
                               {"name": "delete_customers", "arguments": {}}]
                mixed = await ask(pool, ds.tenant.claims("owner"), ds.business_id, "top two customers", llm)
                assert not mixed.refused and [r["full_name"] for r in mixed.calls[0].rows] == ["Linus Torvalds", "Barbara Liskov"]
                assert "213.00 USD" in mixed.answer and "Here you are" not in mixed.answer and "Not answered" in mixed.answer
                # the endpoint fails: the rules answer, and the log says so
                fake.broken = True
                fallback = await ask(pool, ds.tenant.claims("owner"), ds.business_id, "Who are my top 5 customers?", llm)
                assert fallback.backend == "rules-fallback" and [r["full_name"] for r in fallback.calls[0].rows][0] == "Linus Torvalds"
        log = conn.execute("select backend, refused, tool_calls from public.admin_questions where id = %s", (bad.question_id,)).fetchone()
        assert log is not None and log["backend"] == "llm" and log["refused"] is True
        assert [c["reason"] for c in log["tool_calls"]][:2] == ["other_business", "unknown_tool"]
        assert conn.execute("select backend from public.admin_questions where id = %s", (fallback.question_id,)).fetchone() == \
            {"backend": "rules-fallback"}
    finally:
        await pool.close()
    with pytest.raises(psycopg.Error) as err:  # a period no tool knows is bad input, whoever calls the RPC
        conn.execute("select * from public.sales_summary(%s, 'next_year')", (ds.business_id,))
    assert err.value.sqlstate == "22023"
    # the statement every tool call's transaction starts with stops any write, even a superuser's
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        with conn.transaction():
            conn.execute(queries.get("ask_read_only"))
            conn.execute("delete from public.customers where business_id = %s", (ds.business_id,))
