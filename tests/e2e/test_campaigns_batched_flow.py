"""Issue 18: batched marketing sends through the worker: one event's batch sends every due send once,
and a worker dying after the provider took a message never sends it again."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest

from tests.campaigns_kit import automation, customer, enable, sends
from tests.ordering_fixtures import Outside
from tests.ordering_kit import Menu
from worker import main as worker_main
from worker.handlers import campaigns as handler


@pytest.fixture
def shop(conn: psycopg.Connection[dict[str, Any]], menu: Menu) -> Menu:
    enable(conn, menu.tenant.business_id)
    return menu


def drain(outside: Outside) -> Any:
    return asyncio.run(worker_main.run(outside.settings, idle=True))


def texts(outside: Outside) -> list[dict[str, str]]:
    return [m for m in outside.twilio.messages() if "pickup code" not in m["Body"]]


def test_one_event_sends_the_due_batch_and_the_other_events_find_it_done(api: Any, conn: psycopg.Connection[dict[str, Any]],
                                                                         shop: Menu, outside: Outside) -> None:
    b = shop.tenant.business_id
    people = [customer(api, conn, shop, name=f"Bo {i}", days_ago=35) for i in range(4)]
    rule = automation(conn, b)
    conn.execute("select app.evaluate_dormant_automations(%s)", (b,))
    outside.settings.marketing_claim_batch = 3
    consumer = drain(outside)
    assert consumer.failed == 0
    assert len(texts(outside)) == 4 and len({m["To"] for m in texts(outside)}) == 4, "each once"
    assert {s["status"] for s in sends(conn, b, automation_id=rule)} == {"sent"} and len(people) == 4


def test_a_worker_dying_after_the_provider_call_never_sends_again(api: Any, conn: psycopg.Connection[dict[str, Any]], shop: Menu,
                                                                  outside: Outside, monkeypatch: pytest.MonkeyPatch) -> None:
    b = shop.tenant.business_id
    customer(api, conn, shop, name="Cora Crash", days_ago=35)
    rule = automation(conn, b)
    conn.execute("select app.evaluate_dormant_automations(%s)", (b,))
    real = handler.deliver

    async def sent_then_died(*args: Any, **kwargs: Any) -> Any:
        await real(*args, **kwargs)  # the fake Twilio has the message
        raise RuntimeError("the worker died before recording it")

    monkeypatch.setattr(handler, "deliver", sent_then_died)
    drain(outside)
    assert len(texts(outside)) == 1
    [row] = sends(conn, b, automation_id=rule)
    assert row["status"] == "sending" and row["attempted_at"] is not None
    monkeypatch.undo()
    conn.execute("update pgmq.q_brigade_events set vt = now()")  # its event's retry, now
    drain(outside)
    assert len(texts(outside)) == 1, "the retried event finds the send handed over"
    assert conn.execute("select app.recover_marketing_sends(interval '0 seconds') as n").fetchone() == {"n": 1}
    [row] = sends(conn, b, automation_id=rule)
    assert (row["status"], row["error"]) == ("failed", "interrupted")
    drain(outside)
    assert len(texts(outside)) == 1
