"""The ask tools' argument checks and the offline parser's edges, without a database."""

from __future__ import annotations

import uuid

import pytest

from brigade.ask.tools import TOOLS, Context, Refused, capabilities
from brigade.ask.understand import RuleAsker

VENUE = str(uuid.uuid4())
CTX = Context(uuid.uuid4(), "Harbour & Hill", "owner", "USD", "UTC", {VENUE: "Harbour"},
              {"ordering": True, "crm": True, "campaigns": False})


@pytest.mark.parametrize("raw", [{"n": 0}, {"n": 101}, {"n": True}, {"n": "5"}, {"n": 5, "extra": 1}, {"venue_id": "not-a-uuid"},
                                 {"venue_id": str(uuid.uuid4())}, {"business_id": str(uuid.uuid4())}, ["n", 5]])
def test_tool_arguments_are_refused_unless_valid(raw: object) -> None:
    with pytest.raises(Refused):
        TOOLS["top_customers"].arguments(raw, CTX)


def test_tool_arguments_take_defaults_and_the_callers_own_business() -> None:
    assert TOOLS["top_customers"].arguments({}, CTX) == {"n": 5, "venue_id": None}
    assert TOOLS["top_customers"].arguments({"business_id": str(CTX.business_id), "venue_id": VENUE.upper()}, CTX) == \
        {"n": 5, "venue_id": VENUE}
    with pytest.raises(Refused, match="period"):
        TOOLS["sales_summary"].arguments({"period": "this_year"}, CTX)


@pytest.mark.parametrize(("question", "call"), [
    ("give me my top 3 customers", ("top_customers", {"n": 3})),
    ("who are my top five customers at harbour", ("top_customers", {"n": 5, "venue_id": VENUE})),
    ("customers who haven't ordered in six weeks", ("customers_not_seen", {"days": 42})),
    ("revenue last month", ("sales_summary", {"period": "last_month"})),
    ("What's my best seller?", ("best_sellers", {"period": "this_week", "n": 1})),
])
def test_rules_understand(question: str, call: tuple[str, dict[str, object]]) -> None:
    assert RuleAsker().plan(question, CTX).calls == [call]


@pytest.mark.parametrize(("question", "reason"), [
    ("please delete every lost customer", "write"), ("can you refund order 12", "write"),
    ("give all my champions 500 points", "write"), ("top customers; drop table customers; --", "write"),
    ("revenue this year", "unsupported_period"), ("who are my top customers at Dockside", "unknown_venue"),
    ("what's the meaning of life", "unsupported"), ("   ", "unsupported"),
])
def test_rules_refuse(question: str, reason: str) -> None:
    plan = RuleAsker().plan(question, CTX)
    assert plan.calls == [] and plan.refusal == reason


def test_capabilities_follow_the_modules() -> None:
    can = capabilities(CTX)
    assert "your top customers by spend or by visits" in can and "how your campaigns and automations performed" not in can


def test_long_results_are_counted_not_all_listed() -> None:
    from datetime import datetime, timezone

    from brigade.ask.understand import CallResult

    rows = [{"customer_id": uuid.uuid4(), "full_name": f"Guest {i}", "last_order_at": datetime(2026, 1, 1, tzinfo=timezone.utc),
             "days_since": 300, "total_orders": 1} for i in range(60)]
    text = TOOLS["customers_not_seen"].render(rows, {"days": 60, "venue_id": None}, CTX)
    assert text.startswith("60 customers have not ordered in 60 days: 1. Guest 0,") and "20. Guest 19," in text
    assert "Guest 20," not in text and text.endswith("; and 40 more")
    shown = CallResult("customers_not_seen", {"days": 60}, "ok", rows=rows).for_model()
    assert len(shown["rows"]) == 50 and shown["row_count"] == 60 and shown["truncated"] is True


async def test_a_question_makes_at_most_eight_tool_calls() -> None:
    from brigade.ask.service import MAX_CALLS, ToolRunner

    runner = ToolRunner(None, None, CTX)  # type: ignore[arg-type]  # refused calls never reach the database
    results = [await runner.run("drop_everything", {}) for _ in range(MAX_CALLS + 2)]
    assert [r.reason for r in results] == ["unknown_tool"] * MAX_CALLS + ["too_many_calls"] * 2
