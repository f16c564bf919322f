"""Whole calls to the demo business's Twilio number, driven as Twilio drives them (signed form posts to
each action URL), once with the offline classifier and once with the LLM backend against a fake
OpenAI-compatible endpoint: ordering by phone through to the paid fan-out, and each other path."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row
from twilio.request_validator import RequestValidator

from brigade.auth import Claims
from brigade.migrate import apply_seed
from functions.app import create_app
from tests.conftest import Api, Factory, ServerThread
from functions.twilio_voice import MenuCache
from tests.fakes.http import FakeServer, Reply
from tests.ordering_fixtures import Outside
from tests.ordering_kit import session_completed, signed
from tests.voice_kit import CALLER, DEMO_BUSINESS, DOWNTOWN, DOWNTOWN_NUMBER, DOWNTOWN_PHONE, Call, FakeLlm
from worker import main as worker_main

Conn = psycopg.Connection[dict[str, Any]]
DOWNTOWN_ID = uuid.UUID(DOWNTOWN)


@dataclass
class Line:
    """The functions server Twilio calls, with the NLU backend under test."""

    url: str
    outside: Outside
    backend: str
    llm: FakeLlm | None

    def call(self, **kw: Any) -> Call:
        s = self.outside.settings
        return Call(self.url, s.twilio_auth_token, s.twilio_account_sid, **kw)


@pytest.fixture(params=["rules", "llm"])
def line(request: pytest.FixtureRequest, conn: Conn, factory: Factory, outside: Outside) -> Iterator[Line]:
    """The seeded demo business; `conn` acts as the service (factory), as onboarding and the operator would."""
    apply_seed(conn)
    if request.param == "rules":
        yield Line(outside.functions.url, outside, "rules", None)
        return
    with FakeServer() as fake:
        llm = FakeLlm(fake)
        settings = outside.settings.model_copy(update={"voice_nlu_backend": "llm", "voice_llm_base_url": fake.url + "/v1",
                                                       "voice_llm_api_key": "sk-test", "voice_llm_model": "test-model"})
        with ServerThread(create_app(settings)) as server:
            yield Line(server.url, Outside(outside.stripe, outside.twilio, outside.resend, settings, server), "llm", llm)


def call_row(conn: Conn, call: Call) -> dict[str, Any]:
    row = conn.execute("select * from public.calls where call_sid = %s", (call.sid,)).fetchone()
    assert row is not None
    return row


def balance(conn: Conn) -> int:
    row = conn.execute("select balance from public.voice_credit_balances where business_id = %s", (DEMO_BUSINESS,)).fetchone()
    return row["balance"] if row else 0


def prices(conn: Conn) -> dict[str, int]:
    rows = conn.execute("select name, price_cents from public.products where business_id = %s "
                        "union all select 'Large', price_adjustment_cents from public.product_variants where business_id = %s and name = 'Large' "
                        "union all select name, price_cents from public.modifiers where business_id = %s",
                        (DEMO_BUSINESS, DEMO_BUSINESS, DEMO_BUSINESS)).fetchall()
    return {r["name"]: r["price_cents"] for r in rows}


def tax_bps(conn: Conn) -> int:
    return conn.execute("select tax_rate_bps from public.venues where id = %s", (DOWNTOWN,)).fetchone()["tax_rate_bps"]  # type: ignore[index]


def test_an_order_by_phone_ends_paid_through_the_normal_fan_out(conn: Conn, line: Line) -> None:
    credits_before = balance(conn)
    call = line.call()
    hello = call.dial()
    assert hello.status == 200 and hello.gather is not None, hello.xml
    assert hello.gather.get("action", "").endswith("/functions/v1/twilio-voice/gather?seq=1")
    assert hello.gather.get("speechTimeout") == "auto" and "Latte" in (hello.gather.get("hints") or "")
    assert hello.redirect and hello.redirect.endswith("/twilio-voice/gather?seq=1"), "a fallback when nothing is heard"
    assert "Downtown" in hello.says

    t = call.say("Hi, I'd like a large latte with oat milk and two croissants please")
    assert "one large latte with oat milk and two croissants" in t.says and "Anything else" in t.says, t.says
    app_state = line.outside.functions.server.config.app.state
    understander = app_state.voice_understander  # made by the first turn, kept for the app's life
    t = call.say("no that's all thanks")
    assert "pickup or delivery" in t.says
    t = call.say("I'll pick it up")
    assert app_state.voice_understander is understander
    if line.backend == "llm":  # one keep-alive client for every turn, not a client (and TLS context) per turn
        assert isinstance(understander.client, httpx.AsyncClient) and not understander.client.is_closed
    p = prices(conn)
    subtotal = p["Latte"] + p["Large"] + p["Oat milk"] + 2 * p["Croissant"]
    total = subtotal + round(subtotal * tax_bps(conn) / 10000)
    assert f"${total / 100:.2f}" in t.says and "for pickup" in t.says and "place the order" in t.says, t.says
    assert conn.execute("select count(*) as n from public.orders").fetchone() == {"n": 0}, "reading back the total places nothing"

    t = call.say("yes please")
    assert t.hangup and "texted a payment link" in t.says, t.says

    order = conn.execute("select * from public.orders where channel = 'phone'").fetchone()
    assert order is not None
    assert (order["payment_status"], order["status"], order["fulfilment"]) == ("unpaid", "placed", "pickup")
    assert order["total_cents"] == total and order["guest_phone"] == CALLER and order["venue_id"] == DOWNTOWN_ID
    assert f"#{order['order_number']}" not in t.says and str(order["order_number"]) in t.says
    items = conn.execute("select name, variant_name, quantity, modifiers from public.order_items where order_id = %s order by line_number",
                         (order["id"],)).fetchall()
    assert [(i["name"], i["variant_name"], i["quantity"], [m["name"] for m in i["modifiers"]]) for i in items] == \
        [("Latte", "Large", 1, ["Oat milk"]), ("Croissant", None, 2, [])]

    # the payment link: a Checkout Session made as the checkout function makes one, texted by SMS
    [session] = line.outside.stripe.sessions()
    form = {k: v[0] for k, v in session.form.items()}
    assert session.headers["idempotency-key"] == f"checkout:{order['id']}:1"
    assert form["metadata[order_id]"] == str(order["id"]) and order["checkout_session_id"]
    [sms] = line.outside.twilio.messages()
    assert sms["To"] == CALLER and order["checkout_url"] in sms["Body"] and f"#{order['order_number']}" in sms["Body"]
    logged = conn.execute("select status, provider, template from public.notification_log where order_id = %s", (order["id"],)).fetchall()
    assert logged == [{"status": "sent", "provider": "twilio", "template": "payment_link"}]

    row = call_row(conn, call)
    assert (row["intent"], row["outcome"], row["order_id"], row["step"]) == ("order", "ordered", order["id"], "done")
    assert row["nlu_backend"] == line.backend
    assert [t["role"] for t in row["turns"]].count("caller") == 4
    if line.llm:
        sent = line.llm.requests()
        assert len(sent) == 4 and sent[0]["tool_choice"]["function"]["name"] == "record_understanding"
        assert sent[0]["tools"][0]["function"]["name"] == "record_understanding"

    # Twilio's final status callback burns 10 credits per started minute, once
    r = call.status("completed", 95)
    assert r.status_code == 200 and r.json()["credits"] == 20, r.text
    assert call.status("completed", 95).status_code == 200
    assert balance(conn) == credits_before - 20
    ledger = conn.execute("select kind, credits, call_id from public.credit_transactions where call_sid = %s", (call.sid,)).fetchall()
    assert ledger == [{"kind": "call", "credits": -20, "call_id": row["id"]}]
    assert call_row(conn, call)["credits_charged"] == 20

    # paying the link through the signed Stripe webhook runs the normal fan-out
    placed = {"order_id": str(order["id"]), "business_id": DEMO_BUSINESS, "total_cents": total}
    raw, headers = signed(session_completed(placed, order["checkout_session_id"]), line.outside.settings.stripe_webhook_secret)
    r = httpx.post(f"{line.url}/functions/v1/stripe-webhook", content=raw, headers=headers)
    assert r.status_code == 200 and r.json()["outcome"] == "paid", r.text
    paid = conn.execute("select payment_status, customer_id, pickup_code_hash from public.orders where id = %s", (order["id"],)).fetchone()
    assert paid and paid["payment_status"] == "paid" and paid["customer_id"] and paid["pickup_code_hash"]
    ticket = conn.execute("select items, status from public.kitchen_tickets where order_id = %s", (order["id"],)).fetchone()
    assert ticket and ticket["status"] == "new" and [i["name"] for i in ticket["items"]] == ["Latte", "Croissant"]
    assert conn.execute("select count(*) as n from public.payments where order_id = %s", (order["id"],)).fetchone() == {"n": 1}
    assert conn.execute("select count(*) as n from public.stock_movements where business_id = %s and reason <> 'count'",
                        (DEMO_BUSINESS,)).fetchone()["n"] > 0  # type: ignore[index]
    asyncio.run(worker_main.run(line.outside.settings, drain=True))
    texts = line.outside.twilio.messages()
    assert len(texts) == 2 and re.search(r"pickup code is \d{6}", texts[1]["Body"]), texts



def test_status_check_reads_the_callers_latest_order(conn: Conn, api: Api, line: Line) -> None:
    for _ in range(2):
        api.run(Claims.anon(), "select public.place_order(%s)", (json.dumps({
            "venue_id": DOWNTOWN, "channel": "web", "fulfilment": "pickup", "customer": {"name": "Bo", "phone": CALLER},
            "items": [{"product_id": "00000000-0000-4000-8000-0000000d0003", "quantity": 1}]}),))
    latest = conn.execute("select id, order_number from public.orders order by placed_at desc, order_number desc limit 1").fetchone()
    assert latest is not None
    conn.execute("update public.orders set placed_at = placed_at - interval '1 hour' where id <> %s", (latest["id"],))
    call = line.call()
    call.dial()
    t = call.say("hi, where is my order?")
    assert t.hangup and f"Order number {latest['order_number']} is waiting for payment" in t.says, t.says
    row = call_row(conn, call)
    assert (row["intent"], row["outcome"]) == ("status", "status_given")

    stranger = line.call(from_="+14155550999")
    stranger.dial()
    assert "couldn't find an order" in stranger.say("what's the status of my order").says


def test_asking_for_a_human_dials_the_venue(conn: Conn, line: Line) -> None:
    call = line.call()
    call.dial()
    t = call.say("can I talk to a real person please")
    assert t.dial == DOWNTOWN_PHONE and t.gather is None
    row = call_row(conn, call)
    assert (row["intent"], row["outcome"]) == ("human", "handed_off")
    call.status("completed", 30)
    assert call_row(conn, call)["credits_charged"] == 10, "the agent answered: its minute is billed"


def test_silence_reprompts_then_gives_up(conn: Conn, line: Line) -> None:
    call = line.call()
    call.dial()
    t = call.silence()
    assert "didn't hear anything" in t.says and t.gather is not None
    t = call.silence()
    assert t.hangup and "can't hear you" in t.says
    row = call_row(conn, call)
    assert (row["outcome"], row["silences"]) == ("abandoned", 2)
    assert line.outside.stripe.sessions() == [] and conn.execute("select count(*) as n from public.orders").fetchone() == {"n": 0}


def test_garbled_speech_retries_then_hands_off(conn: Conn, line: Line) -> None:
    call = line.call()
    call.dial()
    t = call.say("lah tay wib uh", confidence=0.12)
    assert "didn't catch that" in t.says and t.gather is not None
    t = call.say("purple monkey dishwasher")
    assert "didn't catch that" in t.says and t.gather is not None
    t = call.say("mmmf grr", confidence=0.05)
    assert t.dial == DOWNTOWN_PHONE and "trouble understanding" in t.says
    row = call_row(conn, call)
    assert (row["outcome"], row["misses"], row["intent"]) == ("handed_off", 3, "unknown")


def test_unknown_items_are_named_and_the_menu_offered(conn: Conn, line: Line) -> None:
    call = line.call()
    call.dial()
    t = call.say("can I get a pepperoni pizza")
    assert "we don't have pepperoni pizza" in t.says and "latte" in t.says and t.gather is not None, t.says
    t = call.say("a pizza and a cappuccino then")
    assert "Got it: one cappuccino" in t.says and "don't have pizza" in t.says, t.says
    row = call_row(conn, call)
    assert row["step"] == "items" and [i["product"] for i in row["cart"]] == ["Cappuccino"] and row["outcome"] is None


@pytest.mark.clock
def test_a_closed_venue_takes_no_order(conn: Conn, line: Line) -> None:
    today = datetime.now(ZoneInfo("America/New_York")).date()
    for day in (today, today + timedelta(days=1)):  # closed today and tomorrow: the call may run across midnight
        conn.execute("insert into public.venue_hours_exceptions (business_id, venue_id, on_date, is_closed) values (%s, %s, %s, true)",
                     (DEMO_BUSINESS, DOWNTOWN, day))
    call = line.call()
    hello = call.dial()
    assert "closed right now" in hello.says and hello.gather is not None
    t = call.say("I'd like two lattes")
    assert t.hangup and "closed" in t.says
    assert call_row(conn, call)["outcome"] == "closed"
    assert conn.execute("select count(*) as n from public.orders").fetchone() == {"n": 0}


def test_zero_credits_forwards_the_call_and_charges_nothing(conn: Conn, line: Line) -> None:
    conn.execute("select app.grant_voice_credits(%s, -%s, 'used up')" % ("%s", balance(conn)), (DEMO_BUSINESS,))
    assert balance(conn) == 0
    call = line.call()
    t = call.dial()
    assert t.dial == DOWNTOWN_PHONE and t.gather is None
    row = call_row(conn, call)
    assert (row["outcome"], row["forward_reason"]) == ("forwarded", "no_credits")
    call.status("completed", 300)
    assert balance(conn) == 0 and call_row(conn, call)["credits_charged"] == 0
    assert line.llm is None or line.llm.requests() == []


def test_a_disabled_module_forwards_the_call(conn: Conn, line: Line) -> None:
    conn.execute("select app.set_business_module(%s, 'voice', false)", (DEMO_BUSINESS,))
    call = line.call()
    t = call.dial()
    assert t.dial == DOWNTOWN_PHONE and "Connecting you" in t.says
    assert call_row(conn, call)["forward_reason"] == "module_disabled"


def test_the_module_switched_off_mid_call_forwards_the_next_turn(conn: Conn, line: Line) -> None:
    call = line.call()
    call.dial()
    conn.execute("select app.set_business_module(%s, 'voice', false)", (DEMO_BUSINESS,))
    t = call.say("a latte please")
    assert t.dial == DOWNTOWN_PHONE
    row = call_row(conn, call)
    assert (row["outcome"], row["forward_reason"]) == ("forwarded", "module_disabled")


def test_a_delivery_order_collects_the_address(conn: Conn, line: Line) -> None:
    call = line.call()
    call.dial()
    call.say("two cappuccinos with almond milk")
    assert "pickup or delivery" in call.say("that's it").says
    assert "address" in call.say("delivery please").says
    t = call.say("12 Main Street apartment 4")
    fee = conn.execute("select delivery_fee_cents from public.venues where id = %s", (DOWNTOWN,)).fetchone()["delivery_fee_cents"]  # type: ignore[index]
    p = prices(conn)
    subtotal = 2 * (p["Cappuccino"] + p["Almond milk"])
    total = subtotal + round(subtotal * tax_bps(conn) / 10000) + fee
    assert "delivery to 12 Main Street apartment 4" in t.says and f"${total / 100:.2f}" in t.says, t.says
    t = call.say("yes")
    order = conn.execute("select fulfilment, delivery_address, total_cents from public.orders").fetchone()
    assert order == {"fulfilment": "delivery", "delivery_address": {"line1": "12 Main Street apartment 4"}, "total_cents": total}
    assert t.hangup and len(line.outside.twilio.messages()) == 1


def test_a_known_caller_is_greeted_and_offered_the_usual(conn: Conn, api: Api, line: Line) -> None:
    conn.execute("insert into public.customers (business_id, full_name, phone, allergens) values (%s, 'Ada Lovelace', %s, '{sesame}')",
                 (DEMO_BUSINESS, CALLER))
    past = api.run(Claims.anon(), "select public.place_order(%s) as r", (json.dumps({
        "venue_id": DOWNTOWN, "channel": "web", "fulfilment": "pickup", "customer": {"name": "Ada", "phone": CALLER},
        "items": [{"product_id": "00000000-0000-4000-8000-0000000d0002", "variant_id": "00000000-0000-4000-8000-0000000e0004",
                   "modifier_ids": ["00000000-0000-4000-8000-0000000f1002"], "quantity": 1}]}),))[0]["r"]
    conn.execute("select app.apply_stripe_event(%s)", (json.dumps(session_completed(past, "cs_past", "pi_past")),))
    call = line.call()
    hello = call.dial()
    assert "Hi Ada" in hello.says and "your usual, one large cappuccino with almond milk" in hello.says, hello.says
    t = call.say("yes please")
    assert "Got it: one large cappuccino with almond milk" in t.says
    call.say("that's all")
    t = call.say("pickup")
    assert "sesame allergy" in t.says
    call.say("yes")
    order = conn.execute("select notes, guest_name from public.orders where channel = 'phone'").fetchone()
    assert order and "sesame" in order["notes"] and order["guest_name"] == "Ada Lovelace"
    assert call_row(conn, call)["customer_id"] is not None


def test_a_bad_signature_gets_403_and_changes_nothing(conn: Conn, line: Line) -> None:
    call = line.call()
    url = f"{line.url}/functions/v1/twilio-voice"
    params = {"CallSid": call.sid, "From": CALLER, "To": DOWNTOWN_NUMBER, "CallStatus": "ringing"}
    assert call.post(url, params, signature="bm90IGEgc2lnbmF0dXJl").status_code == 403
    assert call.post(url, params, signature="").status_code == 403
    # signed for another URL (the query is part of what Twilio signs)
    other = RequestValidator(line.outside.settings.twilio_auth_token).compute_signature(url + "?x=1", params)
    r = call.post(url, params, signature=other)
    assert r.status_code == 403 and r.json()["error"] == "bad_signature"
    # a tampered parameter
    good = RequestValidator(line.outside.settings.twilio_auth_token).compute_signature(url, params)
    assert call.post(url, {**params, "From": "+19999999999"}, signature=good).status_code == 403
    assert conn.execute("select count(*) as n from public.calls").fetchone() == {"n": 0}

    # mid-call: a forged turn and a forged status callback change nothing either
    call.dial()
    before = call_row(conn, call)
    gather = call.last.gather.get("action")  # type: ignore[union-attr]
    assert call.post(gather, {"CallSid": call.sid, "SpeechResult": "a latte"}, signature="forged").status_code == 403
    status_url = f"{line.url}/functions/v1/twilio-voice/status"
    assert call.post(status_url, {"CallSid": call.sid, "CallStatus": "completed", "CallDuration": "600"}, signature="x").status_code == 403
    after = call_row(conn, call)
    assert before == after and balance(conn) == 1000


def test_signed_query_strings_are_verified(conn: Conn, line: Line) -> None:
    call = line.call()
    url = f"{line.url}/functions/v1/twilio-voice?source=number-config"
    r = call.post(url, {"CallSid": call.sid, "From": CALLER, "To": DOWNTOWN_NUMBER, "CallStatus": "ringing"})
    assert r.status_code == 200 and "<Gather" in r.text


def test_malformed_input_is_a_4xx(conn: Conn, line: Line) -> None:
    call = line.call()
    url = f"{line.url}/functions/v1/twilio-voice/status"
    r = call.post(url, {"CallSid": "nope", "CallStatus": "completed"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_call_sid"
    r = call.post(url, {"CallSid": call.sid, "CallStatus": "completed", "CallDuration": "-3"})
    assert r.status_code == 400
    r = call.post(url, {"CallSid": call.sid, "CallStatus": "completed", "CallDuration": "10"})
    assert r.status_code == 404, "a call this number never had"


def test_the_merchant_sees_each_call_with_its_transcript_outcome_and_cost(conn: Conn, api: Api, line: Line) -> None:
    call = line.call()
    call.dial()
    call.say("put me through to someone")
    call.status("completed", 125)
    owner = Claims.user("00000000-0000-4000-8000-00000000a001")
    [row] = api.run(owner, "select * from public.voice_call_log where call_id = %s", (call_row(conn, call)["id"],))
    assert (row["intent"], row["outcome"], row["credits_charged"], row["duration_seconds"]) == ("human", "handed_off", 30, 125)
    assert [t["role"] for t in row["turns"]] == ["agent", "caller", "agent"] and "someone" in row["turns"][1]["text"]
    [ledger] = api.run(owner, "select credits, balance_after from public.credit_transactions where kind = 'call'")
    assert ledger == {"credits": -30, "balance_after": 970}
    assert api.run(owner, "select balance from public.voice_credit_balances") == [{"balance": 970}]
    staff = Claims.user("00000000-0000-4000-8000-00000000a003")  # Downtown only: the call rang Downtown
    assert len(api.run(staff, "select call_id from public.voice_call_log")) == 1
    assert api.run(staff, "select count(*) as n from public.credit_transactions") == [{"n": 0}], "money is for managers"
    conn.execute("select app.set_business_module(%s, 'voice', false)", (DEMO_BUSINESS,))
    assert api.run(owner, "select call_id from public.voice_call_log") == [], "a switched-off module's calls are hidden"


def test_behind_a_proxy_the_public_url_is_what_is_signed(conn: Conn, factory: Factory, outside: Outside) -> None:
    apply_seed(conn)
    settings = outside.settings.model_copy(update={"public_url": "https://voice.brigade.example"})
    with ServerThread(create_app(settings)) as server:
        call = Call(server.url, settings.twilio_auth_token, settings.twilio_account_sid)
        params = {"CallSid": call.sid, "From": CALLER, "To": DOWNTOWN_NUMBER, "CallStatus": "ringing"}
        public = "https://voice.brigade.example/functions/v1/twilio-voice?number=main"
        sig = RequestValidator(settings.twilio_auth_token).compute_signature(public, params)
        r = httpx.post(f"{server.url}/functions/v1/twilio-voice?number=main", data=params, headers={"X-Twilio-Signature": sig})
        assert r.status_code == 200, r.text
        assert 'action="https://voice.brigade.example/functions/v1/twilio-voice/gather?seq=1"' in r.text
        local = RequestValidator(settings.twilio_auth_token).compute_signature(f"{server.url}/functions/v1/twilio-voice?number=main", params)
        r = httpx.post(f"{server.url}/functions/v1/twilio-voice?number=main", data=params, headers={"X-Twilio-Signature": local})
        assert r.status_code == 403, "a signature over the internal URL is not Twilio's"


def order_to_confirm(line: Line) -> Call:
    """A call that has read its order back and waits for the caller's yes."""
    call = line.call()
    call.dial()
    call.say("Hi, I'd like a large latte with oat milk and two croissants please")
    call.say("no that's all thanks")
    assert "place the order" in call.say("I'll pick it up").says
    return call


def say_yes_twice(call: Call, line: Line) -> tuple[Any, httpx.Response]:
    """The caller says yes; then Twilio retries that same turn (same CallSid and seq), which must be
    answered from the kept reply with no second request to Stripe or Twilio."""
    assert call.last is not None and call.last.gather is not None
    action = call.last.gather.get("action", "")
    t = call.say("yes please")
    sent = len(line.outside.stripe.sessions()), len(line.outside.twilio.messages())
    retry = call.post(action, call._params(CallStatus="in-progress", SpeechResult="yes please", Confidence="0.92"))
    assert (len(line.outside.stripe.sessions()), len(line.outside.twilio.messages())) == sent, "the retry ran a provider call again"
    return t, retry


def test_the_placed_order_commits_before_stripe_is_called(conn: Conn, db_dsn: str, line: Line) -> None:
    """The business's order-number counter (app.business_counters, updated by place_order) is free while
    the Checkout Session is being made: a slow Stripe must not hold every other order of the business."""
    server = line.outside.stripe.server
    original = next(h for m, p, h in server.routes if m == "POST" and p.pattern == r"/v1/checkout/sessions")
    seen: list[tuple[int, str]] = []

    def meanwhile(req: Any, match: Any) -> Any:
        with psycopg.connect(db_dsn, autocommit=True) as other:
            with other.transaction():  # NOWAIT raises LockNotAvailable if the placing turn still held the counters
                locked = other.execute("select count(*) from (select 1 from app.business_counters where business_id = %s "
                                       "for update nowait) c", (DEMO_BUSINESS,)).fetchone()
            status = other.execute("select status from public.orders where channel = 'phone'").fetchone()
        seen.append((locked[0], status[0] if status else "not visible"))  # type: ignore[index]
        return original(req, match)

    server.routes.insert(0, ("POST", re.compile(r"/v1/checkout/sessions"), meanwhile))
    call = order_to_confirm(line)
    t, retry = say_yes_twice(call, line)
    assert t.hangup and "texted a payment link" in t.says, t.says
    assert retry.status_code == 200 and retry.text == t.xml, "the retried turn is answered from the kept reply"
    assert len(line.outside.stripe.sessions()) == 1 and len(line.outside.twilio.messages()) == 1
    assert conn.execute("select count(*) as n from public.orders").fetchone() == {"n": 1}
    assert len(seen) == 1 and seen[0][0] >= 1 and seen[0][1] == "placed", seen
    order = conn.execute("select id, checkout_session_id, checkout_url from public.orders where channel = 'phone'").fetchone()
    assert order["checkout_session_id"] and order["checkout_url"]
    row = call_row(conn, call)
    assert (row["outcome"], row["step"], row["order_id"]) == ("ordered", "done", order["id"])
    agent_turns = [turn["text"] for turn in row["turns"] if turn["role"] == "agent"]
    assert agent_turns[-1].startswith("Thank you! Your order number is") and len(agent_turns) == len(set(agent_turns)), agent_turns


def test_a_failed_checkout_cancels_the_unpaid_order_and_hands_the_call_over(conn: Conn, line: Line) -> None:
    server = line.outside.stripe.server
    server.routes.insert(0, ("POST", re.compile(r"/v1/checkout/sessions"),
                             lambda req, match: Reply(500, {"error": {"type": "api_error", "message": "Stripe is down"}})))
    call = order_to_confirm(line)
    t, retry = say_yes_twice(call, line)
    assert t.dial == DOWNTOWN_PHONE and "couldn't set up the payment" in t.says, t.xml
    assert retry.status_code == 200 and retry.text == t.xml
    order = conn.execute("select status, payment_status, cancel_reason, checkout_session_id from public.orders "
                         "where channel = 'phone'").fetchone()
    assert (order["status"], order["payment_status"], order["checkout_session_id"]) == ("cancelled", "unpaid", None)
    assert "payment link could not be made" in order["cancel_reason"]
    assert line.outside.twilio.messages() == [], "no payment link to text"
    row = call_row(conn, call)
    assert (row["outcome"], row["step"]) == ("handed_off", "done")


def test_the_menu_is_kept_between_turns_for_its_time(conn: Conn, db_dsn: str) -> None:
    """MenuCache: a venue's menu read once within its ttl (a change shows after it), every turn with ttl 0."""
    apply_seed(conn)
    clock = [1000.0]

    async def run() -> tuple[list[str], list[str], list[str], int]:
        async with await psycopg.AsyncConnection.connect(db_dsn, autocommit=True, row_factory=dict_row) as aconn:
            kept, fresh = MenuCache(30, timer=lambda: clock[0]), MenuCache(0)
            before = [p.name for p in (await kept.get(aconn, DEMO_BUSINESS, DOWNTOWN)).products]
            await aconn.execute("update public.products set is_published = false where business_id = %s and name = 'Croissant'",
                                (DEMO_BUSINESS,))
            clock[0] += 29
            within = [p.name for p in (await kept.get(aconn, DEMO_BUSINESS, DOWNTOWN)).products]
            clock[0] += 2
            after = [p.name for p in (await kept.get(aconn, DEMO_BUSINESS, DOWNTOWN)).products]
            now_fresh = [p.name for p in (await fresh.get(aconn, DEMO_BUSINESS, DOWNTOWN)).products]
            assert now_fresh == after
            return before, within, after, len(kept.menus or {})

    before, within, after, entries = asyncio.run(run())
    assert "Croissant" in before and within == before, "within the ttl the kept menu answers"
    assert "Croissant" not in after and set(after) == set(before) - {"Croissant"}, "after the ttl the menu is read again"
    assert entries == 1
