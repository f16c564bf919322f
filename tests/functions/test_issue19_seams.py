"""Issue 19's seams that show over HTTP: each test is named after the item it closes."""

from __future__ import annotations

from typing import Any

import httpx
import psycopg

from tests.functions.test_payments import checkout, paid_order, place, refund
from tests.ordering_fixtures import Outside
from tests.ordering_kit import EXPECTED_TOTAL, Menu, session_completed, signed


def test_item_2_order_refunds_of_a_connect_business_go_to_its_stripe_account(
        api: Any, conn: psycopg.Connection[dict[str, Any]], menu: Menu, outside: Outside) -> None:
    conn.execute("update public.businesses set stripe_account_id = 'acct_conn19' where id = %s", (menu.tenant.business_id,))
    order = paid_order(api, menu, outside)
    r = refund(outside, menu.tenant.claims("manager"), {"order_id": order["order_id"], "amount_cents": 100})
    assert r.status_code == 200, r.text
    [call] = outside.stripe.server.calls("POST", "/v1/refunds")
    assert call.headers.get("stripe-account") == "acct_conn19"
    assert call.form["amount"] == ["100"]


def test_item_2_platform_refunds_carry_no_stripe_account(api: Any, menu: Menu, outside: Outside) -> None:
    order = paid_order(api, menu, outside)
    assert refund(outside, menu.tenant.claims("manager"), {"order_id": order["order_id"]}).json()["amount_cents"] == EXPECTED_TOTAL
    [call] = outside.stripe.server.calls("POST", "/v1/refunds")
    assert "stripe-account" not in call.headers


def test_item_1_connect_fee_and_platform_fee_are_one_figure_returned_in_proportion_on_refunds(
        api: Any, conn: psycopg.Connection[dict[str, Any]], menu: Menu, outside: Outside) -> None:
    b = menu.tenant.business_id
    # the old second rate must not matter any more
    conn.execute("update public.businesses set stripe_account_id = 'acct_fee19', application_fee_bps = 900 where id = %s", (b,))
    fee = conn.execute("select app.platform_fee_cents(%s, %s) as f", (b, EXPECTED_TOTAL)).fetchone()["f"]  # type: ignore[index]
    assert fee == round(EXPECTED_TOTAL * 0.03) + 30  # the starter plan
    order = place(api, menu)
    assert checkout(outside, {"order_id": order["order_id"], "access_token": order["access_token"]}).status_code == 200
    [created] = outside.stripe.sessions()
    assert created.form["payment_intent_data[application_fee_amount]"] == [str(fee)]

    raw, headers = signed(session_completed(order, "cs_fee19", "pi_fee19"), outside.settings.stripe_webhook_secret)
    assert httpx.post(f"{outside.functions.url}/functions/v1/stripe-webhook", content=raw, headers=headers).json()["outcome"] == "paid"
    recorded = conn.execute("select p.application_fee_cents as app_fee, f.fee_cents from public.payments p join public.platform_fees f "
                            "on f.business_id = p.business_id and f.payment_id = p.id and f.refund_id is null where p.order_id = %s",
                            (order["order_id"],)).fetchone()
    assert recorded == {"app_fee": fee, "fee_cents": fee}

    part = 400
    assert refund(outside, menu.tenant.claims("manager"), {"order_id": order["order_id"], "amount_cents": part}).status_code == 200
    assert refund(outside, menu.tenant.claims("manager"), {"order_id": order["order_id"]}).status_code == 200
    calls = outside.stripe.server.calls("POST", "/v1/refunds")
    assert [c.form.get("refund_application_fee") for c in calls] == [["true"], ["true"]]
    back = [r["fee_cents"] for r in conn.execute("select fee_cents from public.platform_fees where order_id = %s and refund_id is not null "
                                                 "order by created_at, base_amount_cents desc", (order["order_id"],))]
    assert back == [-round(fee * part / EXPECTED_TOTAL), -(fee - round(fee * part / EXPECTED_TOTAL))]
    assert conn.execute("select sum(fee_cents) as s from public.platform_fees where order_id = %s", (order["order_id"],)).fetchone() == {"s": 0}


def test_item_1_booking_checkout_takes_the_plans_fee(api: Any, conn: psycopg.Connection[dict[str, Any]], factory: Any) -> None:
    from tests.bookings_kit import build_activity, hold

    tenant = factory.tenant("Escape Fee", {"bookings": True})
    conn.execute("update public.businesses set stripe_account_id = 'acct_bk19', application_fee_bps = 900 where id = %s", (tenant.business_id,))
    booking = hold(api, build_activity(conn, tenant))
    ctx = conn.execute("select app.booking_checkout_context(%s, %s) as c", (booking["booking_id"], booking["access_token"])).fetchone()["c"]  # type: ignore[index]
    expected = conn.execute("select app.platform_fee_cents(%s, %s) as f", (tenant.business_id, booking["total_cents"])).fetchone()["f"]  # type: ignore[index]
    assert expected > 0 and ctx["application_fee_cents"] == expected
    assert ctx["metadata"]["platform_fee_percent"] == "3.00"


# ---- item 11: voice -------------------------------------------------------------------------------

def _voice_line(conn: psycopg.Connection[dict[str, Any]], outside: Outside, seed: bool = True, **settings: Any) -> Any:
    from brigade.migrate import apply_seed
    from functions.app import create_app
    from tests.conftest import ServerThread

    if seed:
        apply_seed(conn)
    return ServerThread(create_app(outside.settings.model_copy(update=settings)))


def test_item_11_the_credit_balance_is_rechecked_mid_call(conn: psycopg.Connection[dict[str, Any]], outside: Outside) -> None:
    from tests.voice_kit import DEMO_BUSINESS, Call

    with _voice_line(conn, outside) as server:
        s = outside.settings
        b = conn.execute("select balance from public.voice_credit_balances where business_id = %s", (DEMO_BUSINESS,)).fetchone()
        conn.execute("select app.grant_voice_credits(%s, %s, 'test: 20 left', 'test19')", (DEMO_BUSINESS, 20 - (b["balance"] if b else 0)))
        call = Call(server.url, s.twilio_auth_token, s.twilio_account_sid)
        hello = call.dial()
        assert hello.gather is not None, hello.xml
        t = call.say("a large latte please")
        assert t.gather is not None and t.dial is None, "20 credits cover the first minutes"
        # three minutes in, the call has burned 30 credits: more than the balance
        conn.execute("update public.calls set started_at = started_at - interval '3 minutes' where call_sid = %s", (call.sid,))
        t = call.say("and a croissant")
        assert t.dial and t.gather is None, t.xml
        row = conn.execute("select outcome, forward_reason from public.calls where call_sid = %s", (call.sid,)).fetchone()
        assert row == {"outcome": "handed_off", "forward_reason": None}
        assert call.status("completed", 185).json()["credits"] == 40, "the minutes the agent talked are charged"


def test_item_11_a_retried_gather_turn_is_answered_once(conn: psycopg.Connection[dict[str, Any]], outside: Outside) -> None:
    from tests.voice_kit import Call

    with _voice_line(conn, outside) as server:
        s = outside.settings
        call = Call(server.url, s.twilio_auth_token, s.twilio_account_sid)
        hello = call.dial()
        assert hello.gather is not None
        action = hello.gather.get("action") or ""
        assert action.endswith("?seq=1")
        params = call._params(CallStatus="in-progress", SpeechResult="two croissants please", Confidence="0.9")
        first = call.post(action, params)
        state = conn.execute("select jsonb_array_length(turns) as n, cart from public.calls where call_sid = %s", (call.sid,)).fetchone()
        again = call.post(action, params)  # Twilio retries the same request
        assert again.status_code == first.status_code == 200 and again.text == first.text
        assert conn.execute("select jsonb_array_length(turns) as n, cart from public.calls where call_sid = %s", (call.sid,)).fetchone() == state
        assert state is not None and sum(line["quantity"] for line in state["cart"]) == 2, "two croissants, not four"
        assert "?seq=2" in first.text, "the next turn has the next number"


def test_item_11_phone_delivery_addresses_are_geocoded_and_checked_against_the_radius(
        conn: psycopg.Connection[dict[str, Any]], outside: Outside) -> None:
    from brigade.migrate import apply_seed
    from tests.fakes.http import FakeServer, Reply
    from tests.voice_kit import DOWNTOWN, Call

    apply_seed(conn)
    venue = conn.execute("select latitude, longitude from public.venues where id = %s", (DOWNTOWN,)).fetchone()
    assert venue is not None
    places = {"99 Far Away Road": (venue["latitude"] + 1.0, venue["longitude"]),        # ~111 km
              "12 Main Street": (venue["latitude"] + 0.01, venue["longitude"])}         # ~1.1 km

    def search(req: Any, _: Any) -> Reply:
        q = req.query["q"][0]
        hits = [{"lat": str(lat), "lon": str(lon), "display_name": name} for name, (lat, lon) in places.items() if q.startswith(name)]
        return Reply(200, hits)

    with FakeServer() as geo:
        geo.route("GET", r"/search", search)
        with _voice_line(conn, outside, False, geocoder_provider="nominatim", geocoder_base_url=geo.url) as server:
            s = outside.settings
            call = Call(server.url, s.twilio_auth_token, s.twilio_account_sid)
            call.dial()
            call.say("two croissants")
            call.say("that's it")
            assert "address" in call.say("delivery please").says
            t = call.say("99 Far Away Road")
            assert "outside our delivery area" in t.says and "pick it up" in t.says, t.says
            assert "address" in call.say("delivery").says
            t = call.say("12 Main Street")
            assert "delivery to 12 Main Street" in t.says, t.says
            call.say("yes")
        [lookup, *_] = geo.calls("GET", r"/search")
        assert lookup.query["format"] == ["jsonv2"]
    order = conn.execute("select fulfilment, delivery_address from public.orders").fetchone()
    assert order is not None and order["fulfilment"] == "delivery"
    assert (order["delivery_address"]["latitude"], order["delivery_address"]["longitude"]) == places["12 Main Street"]


def test_item_10_the_merchant_downloads_payouts_csv_over_http(api: Any, conn: psycopg.Connection[dict[str, Any]], menu: Menu,
                                                               outside: Outside, operator: Any) -> None:
    from tests.functions.test_payments import bearer

    order = paid_order(api, menu, outside)
    window = conn.execute("select now() - interval '1 hour' as s, now() + interval '1 hour' as e").fetchone()
    assert window is not None
    api.run(operator, "select public.generate_payouts(%s, %s, %s)", (window["s"], window["e"], menu.tenant.business_id))
    url = f"{outside.functions.url}/functions/v1/payouts.csv"
    b = str(menu.tenant.business_id)
    r = httpx.get(url, params={"business_id": b}, headers=bearer(outside, menu.tenant.claims("owner")))
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv"), r.text
    header, line, *rest = r.text.splitlines()
    assert header.startswith("business_id,business_name,period_start") and rest == []
    assert line.startswith(b + ",") and f",{order['total_cents']}," in line
    assert httpx.get(url, params={"business_id": b}, headers=bearer(outside, menu.tenant.claims("manager"))).status_code == 404
    assert httpx.get(url, params={"business_id": b}).status_code == 401
    assert httpx.get(url, params={"business_id": b, "from": "yesterday-ish"},
                     headers=bearer(outside, menu.tenant.claims("owner"))).status_code == 400
