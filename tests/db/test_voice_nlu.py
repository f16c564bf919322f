"""The voice agent's understanding over the seeded demo menu: the utterance corpus (intent and item
extraction accuracy, dev and an untuned holdout), quantities, fuzzy names, and the LLM backend's
request, tool-call parsing, name resolution and fallback against a fake OpenAI-compatible endpoint."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from brigade.migrate import apply_seed
from brigade.voice.nlu import LlmUnderstander, Menu, RuleUnderstander, Understanding
from tests.fakes.http import FakeServer, Reply
from tests.voice_kit import DEMO_BUSINESS, DOWNTOWN, FakeLlm

CORPUS = Path(__file__).resolve().parent.parent / "data" / "voice_corpus.jsonl"


def load_corpus() -> list[dict[str, Any]]:
    return [json.loads(line) for line in CORPUS.read_text().splitlines() if line.strip()]


def as_rows(u: Understanding) -> list[dict[str, Any]]:
    return sorted(({"product": i.product, "variant": i.variant, "modifiers": sorted(i.modifiers), "quantity": i.quantity}
                   for i in u.items), key=json.dumps)


def score(results: list[tuple[dict[str, Any], Understanding]]) -> tuple[float, float]:
    intent = sum(u.intent == row["intent"] for row, u in results) / len(results)
    items = sum(as_rows(u) == sorted(row["items"], key=json.dumps) for row, u in results) / len(results)
    return intent, items


@pytest.fixture
def menu(conn: psycopg.Connection[dict[str, Any]]) -> Menu:
    apply_seed(conn)
    row = conn.execute("select app.voice_menu(%s, %s) as m", (DEMO_BUSINESS, DOWNTOWN)).fetchone()
    assert row is not None
    return Menu.from_json(row["m"])


def test_the_menu_is_the_seeded_one(menu: Menu) -> None:
    assert [p.name for p in menu.products] == ["Latte", "Cappuccino", "Croissant", "Avocado toast"]
    latte = menu.product("latte")
    assert latte and [v.name for v in latte.variants] == ["Regular", "Large"] and latte.default_variant == "Regular"
    assert [m.name for m in latte.modifiers] == ["Oat milk", "Almond milk", "Extra shot", "Vanilla syrup"]


def test_corpus_accuracy(menu: Menu) -> None:
    corpus = load_corpus()
    assert len(corpus) >= 100 and {r["intent"] for r in corpus} == {"order", "status", "human", "unknown"}
    rules = RuleUnderstander()
    results = [(row, rules.understand_sync(row["text"], menu)) for row in corpus]
    intent, items = score(results)
    assert intent >= 0.93 and items >= 0.95, (intent, items)
    holdout = [(row, u) for row, u in results if row["split"] == "holdout"]
    assert len(holdout) >= 30
    h_intent, h_items = score(holdout)
    assert h_intent >= 0.75 and h_items >= 0.9, (h_intent, h_items)


@pytest.mark.parametrize(("text", "expected"), [
    ("two lattes and 3 croissants", [("Latte", 2), ("Croissant", 3)]),
    ("a dozen croissants", [("Croissant", 12)]),
    ("half a dozen croissants", [("Croissant", 6)]),
    ("eleven cappucinos", [("Cappuccino", 11)]),
    ("one avo toast and a lattay", [("Avocado toast", 1), ("Latte", 1)]),
])
def test_quantities_and_fuzzy_names(menu: Menu, text: str, expected: list[tuple[str, int]]) -> None:
    u = RuleUnderstander().understand_sync(text, menu)
    assert [(i.product, i.quantity) for i in u.items] == expected and u.intent == "order"


def test_items_resolve_to_menu_ids(menu: Menu) -> None:
    [line] = RuleUnderstander().understand_sync("a large latte with oat milk and an extra shot", menu).items
    latte = menu.product("Latte")
    assert latte and line.product_id == latte.id
    assert line.variant_id == next(v.id for v in latte.variants if v.name == "Large")
    assert sorted(line.modifier_ids) == sorted(m.id for m in latte.modifiers if m.name in ("Oat milk", "Extra shot"))


@pytest.mark.parametrize(("text", "step", "field", "value"), [
    ("yes please", "confirm", "affirm", True),
    ("no, that's wrong", "confirm", "affirm", False),
    ("no that's all thanks", "items", "done", True),
    ("I'll come and pick it up", "fulfilment", "fulfilment", "pickup"),
    ("can you deliver it", "fulfilment", "fulfilment", "delivery"),
    ("my usual please", "intent", "usual", True),
])
def test_short_answers(menu: Menu, text: str, step: str, field: str, value: Any) -> None:
    assert getattr(RuleUnderstander().understand_sync(text, menu, step), field) == value


@pytest.fixture
def llm() -> Iterator[tuple[FakeLlm, str]]:
    with FakeServer() as server:
        yield FakeLlm(server), server.url + "/v1"


async def test_llm_backend_passes_the_corpus_like_the_rules(menu: Menu, llm: tuple[FakeLlm, str]) -> None:
    fake, url = llm
    corpus = load_corpus()
    async with httpx.AsyncClient() as client:
        backend = LlmUnderstander(url, "sk-test", "test-model", client=client)
        results = [(row, await backend.understand(row["text"], menu)) for row in corpus]
    assert all(u.backend == "llm" for _, u in results)
    rules = RuleUnderstander()
    assert [as_rows(u) for _, u in results] == [as_rows(rules.understand_sync(r["text"], menu)) for r in corpus]
    assert score(results)[0] >= 0.93
    sent = fake.requests()[0]
    assert sent["model"] == "test-model" and sent["tools"][0]["type"] == "function"
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "record_understanding"}}
    assert fake.server.calls("POST", r"/v1/chat/completions")[0].headers["authorization"] == "Bearer sk-test"


async def test_llm_names_are_resolved_against_the_menu(menu: Menu) -> None:
    answer = {"intent": "order", "items": [
        {"product": "latte", "variant": "large", "modifiers": ["oat", "Vanilla Syrup", "ketchup"], "quantity": 2},
        {"product": "Pizza Margherita", "quantity": 1}, {"product": "Croissant", "quantity": 500}]}
    with FakeServer() as server:
        server.route("POST", r"/v1/chat/completions", lambda req, _: Reply(200, {"choices": [{"message": {"tool_calls": [
            {"type": "function", "function": {"name": "record_understanding", "arguments": json.dumps(answer)}}]}}]}))
        u = await LlmUnderstander(server.url + "/v1", "", "m").understand("whatever", menu)
    assert u.backend == "llm" and u.intent == "order"
    assert [(i.product, i.variant, i.modifiers, i.quantity) for i in u.items] == \
        [("Latte", "Large", ["Oat milk", "Vanilla syrup"], 2), ("Croissant", None, [], 1)]
    assert u.unknown_items == ["Pizza Margherita"]


@pytest.mark.parametrize("reply", [Reply(500, {"error": {"message": "overloaded"}}), Reply(200, {"choices": []}),
                                   Reply(200, {"choices": [{"message": {"content": "I think they want a latte"}}]})])
async def test_llm_failure_falls_back_to_the_rules(menu: Menu, reply: Reply) -> None:
    with FakeServer() as server:
        server.route("POST", r"/v1/chat/completions", lambda req, _: reply)
        u = await LlmUnderstander(server.url + "/v1", "", "m").understand("two lattes please", menu)
    assert u.backend == "rules-fallback" and [(i.product, i.quantity) for i in u.items] == [("Latte", 2)]
