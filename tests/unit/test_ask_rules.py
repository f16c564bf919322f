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
