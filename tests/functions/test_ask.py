"""POST /functions/v1/ask over HTTP with real Supabase JWTs: the answers follow RLS for the owner, a
manager limited to one venue (who never learns about the other), staff (403) and another tenant; bad
input is a 4xx that logs nothing; the log is the owner's to read and nobody's to change."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import psycopg
import pytest

from brigade import auth
from brigade.auth import Claims
from brigade.settings import Settings
from tests.ask_kit import build
from tests.conftest import Api, Factory, ServerThread, sqlstate

Conn = psycopg.Connection[dict[str, Any]]


@pytest.mark.clock
def test_answers_follow_rls_and_the_log_is_the_owners(conn: Conn, factory: Factory, api: Api, settings: Settings,
                                                      functions_server: ServerThread) -> None:
    ds = build(conn, factory)
    b = str(ds.business_id)
    hill = Claims.user(ds.manager_hill, email="hill@harbour.test")
    rival = factory.tenant("Rival Diner", {"ordering": True, "crm": True})

    def ask(claims: Claims | None, question: str, business: str = b, **extra: Any) -> httpx.Response:
        headers = {"authorization": f"Bearer {auth.sign(claims, settings.jwt_secret)}"} if claims else {}
        return httpx.post(f"{functions_server.url}/functions/v1/ask", json={"business_id": business, "question": question, **extra},
                          headers=headers, timeout=30)

    def names(resp: httpx.Response) -> list[str]:
        assert resp.status_code == 200, resp.text
        return [r["full_name"] for r in resp.json()["tool_calls"][0]["rows"]]

    # the owner sees the whole business
    owner = ask(ds.tenant.claims("owner"), "Who are my top 5 customers?")
    assert names(owner) == ["Linus Torvalds", "Barbara Liskov", "Alan Turing", "Ada Lovelace", "Donald Knuth"]
    body = owner.json()
    assert body["backend"] == "rules" and not body["refused"] and body["tool_calls"][0]["arguments"] == {"n": 5, "venue_id": None}
    assert "Linus Torvalds, 213.00 USD over 6 orders" in body["answer"] and uuid.UUID(body["question_id"])
    # the same question from the manager limited to Hill: the same tool, RLS keeps it to Hill's numbers
    limited = ask(hill, "Who are my top 5 customers?")
    assert names(limited) == ["Barbara Liskov", "Alan Turing", "Ada Lovelace", "John Backus", "Frances Allen"]
    assert [r["total_spent_cents"] for r in limited.json()["tool_calls"][0]["rows"]][2] == 1000  # Ada's Hill order only
    revenue = ask(hill, "How much did we make today?").json()
    assert revenue["tool_calls"][0]["rows"][0]["revenue_cents"] == 1300 and "13.00 USD" in revenue["answer"]
    stock = ask(hill, "What's low on stock?").json()
    assert [r["name"] for r in stock["tool_calls"][0]["rows"]] == ["Flour", "Sugar"]
    # asking about the venue they may not see: refused, nothing about it in the answer
    other = ask(hill, "Top customers at Harbour").json()
    assert other["refused"] and other["tool_calls"] == [] and "Harbour is not one of your venues" in other["answer"]
    assert "Torvalds" not in other["answer"] and "Liskov" not in other["answer"]
    # a model (or a forged request) cannot widen it either: the Harbour id is not one of the manager's venues
    assert sqlstate(lambda: api.run(hill, "select * from public.top_customers(%s, 5, %s)", (b, ds.venues["Harbour"]))) is None
    assert api.run(hill, "select * from public.top_customers(%s, 5, %s)", (b, ds.venues["Harbour"])) == []
    # staff and drivers, strangers and anon are refused before anything runs
    for who in ("staff", "driver"):
        resp = ask(ds.tenant.claims(who), "Who are my top 5 customers?")
        assert resp.status_code == 403 and resp.json()["error"] == "not_manager"
    assert ask(rival.claims("owner"), "Who are my top 5 customers?").status_code == 403
    assert ask(None, "Who are my top 5 customers?").status_code == 401
    assert ask(Claims.anon(), "Who are my top 5 customers?").status_code == 403
    # the other tenant asking about their own business gets their own (empty) data
    theirs = ask(rival.claims("owner"), "Who are my top 5 customers?", str(rival.business_id)).json()
    assert theirs["tool_calls"][0]["rows"] == [] and "No customers with orders yet" in theirs["answer"]
    # a switched-off module answers nothing from it
    conn.execute("select app.set_business_module(%s, 'dispatch', false)", (ds.business_id,))
    off = ask(ds.tenant.claims("owner"), "How are deliveries doing?").json()
    assert off["refused"] and off["tool_calls"][0]["reason"] == "module_disabled" and "delivery performance" not in off["answer"]
    # bad input: 4xx, nothing logged
    before = conn.execute("select count(*) as n from public.admin_questions").fetchone()
    for extra in ({"question": ""}, {"question": "x" * 1001}, {"question": "top customers", "sql": "select 1"}):
        assert ask(ds.tenant.claims("owner"), **extra).status_code == 400  # type: ignore[arg-type]
    assert ask(ds.tenant.claims("owner"), "top customers", "not-a-uuid").status_code == 400
    assert ask(ds.tenant.claims("owner"), "top customers", str(uuid.uuid4())).status_code == 403
    assert conn.execute("select count(*) as n from public.admin_questions").fetchone() == before

    # the log: the owner reads every question of the business, the manager their own, nobody else any
    q = "select question, asked_by from public.admin_questions order by created_at, question"
    everything = api.run(ds.tenant.claims("owner"), q)
    assert len(everything) == 6 and {r["asked_by"] for r in everything} == {ds.tenant.users["owner"], ds.manager_hill}
    assert [r["question"] for r in api.run(hill, q)] == ["Who are my top 5 customers?", "How much did we make today?",
                                                       "What's low on stock?", "Top customers at Harbour"]
    assert api.run(ds.tenant.claims("manager"), q) == []
    assert api.run(ds.tenant.claims("staff"), q) == [] and api.run(rival.claims("owner"), q) == [{"question": "Who are my top 5 customers?",
                                                                                                   "asked_by": rival.users["owner"]}]
    assert sqlstate(lambda: api.run(Claims.anon(), q)) == "42501"
    # written by the function only, and append-only even for the service role
    assert sqlstate(lambda: api.run(ds.tenant.claims("owner"), "insert into public.admin_questions (business_id, question, backend, answer) "
                                                               "values (%s, 'forged', 'rules', 'forged')", (b,))) == "42501"
    assert sqlstate(lambda: api.run(ds.tenant.claims("owner"), "update public.admin_questions set answer = 'x'")) == "42501"
    assert sqlstate(lambda: api.run(Claims.service(), "update public.admin_questions set answer = 'x'")) == "BR006"
    assert sqlstate(lambda: api.run(Claims.service(), "delete from public.admin_questions")) == "BR006"
    # erasing a customer erases their name from the answers that named them, and nothing else changes
    torvalds = ds.customers["Linus Torvalds"]
    logged = conn.execute("select id, answer, tool_calls from public.admin_questions where business_id = %s and customer_ids @> array[%s]",
                          (ds.business_id, torvalds)).fetchall()
    assert len(logged) == 1 and "Linus Torvalds" in logged[0]["answer"]
    conn.execute("select app.anonymise_customer(%s, %s)", (ds.business_id, torvalds))
    after = conn.execute("select answer, tool_calls from public.admin_questions where id = %s", (logged[0]["id"],)).fetchone()
    assert after is not None and "Linus Torvalds" not in after["answer"] and "an erased customer, 213.00 USD" in after["answer"]
    assert after["tool_calls"] == logged[0]["tool_calls"] and "Barbara Liskov" in after["answer"]
    assert "Torvalds" not in json.dumps(api.run(ds.tenant.claims("owner"), "select * from public.admin_questions"), default=str)
