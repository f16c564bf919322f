"""Data retention (issue 14 item 3): each policy's edge — a day inside kept, a day past gone (or
anonymised/redacted) — at a fixed instant, a business's own numbers within the bounds, and what stays
(the credit ledger, the money of old orders)."""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg

from brigade.auth import Claims
from tests.conftest import Api, Factory, sqlstate
from tests.ordering_kit import Menu, order_payload, session_completed

NOW = datetime(2030, 6, 15, 12, 0, tzinfo=timezone.utc)  # the instant the run is applied as of


def ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


def test_retention_edges_overrides_and_what_stays(api: Api, conn: psycopg.Connection[dict[str, Any]], factory: Factory,
                                                  menu: Menu) -> None:
    t = menu.tenant
    b, venue = t.business_id, t.venues[0]
    other = factory.tenant("Other Cafe", {"ordering": True})
    for module in ("voice", "dispatch"):
        conn.execute("select app.set_business_module(%s, %s, true)", (b, module))
    conn.execute("select app.set_business_module(%s, 'voice', true)", (other.business_id,))

    # calls: day 89 kept, day 91 redacted; the other business keeps 30 days only (its own setting)
    rnd = random.Random(1)
    conn.execute("select app.grant_voice_credits(%s, 100, 'test')", (b,))
    conn.execute("select app.grant_voice_credits(%s, 100, 'test')", (other.business_id,))
    calls: dict[str, str] = {}
    for business, vid, label, days in ((b, venue, "day89", 89), (b, venue, "day91", 91),
                                       (other.business_id, other.venues[0], "other29", 29), (other.business_id, other.venues[0], "other31", 31)):
        number = "+1555" + "".join(rnd.choice("0123456789") for _ in range(7))
        conn.execute("insert into public.voice_numbers (business_id, venue_id, phone_number) values (%s, %s, %s)", (business, vid, number))
        sid = "CA" + "".join(rnd.choice("0123456789abcdef") for _ in range(32))
        conn.execute("select app.voice_start_call(%s, '+12125550199', %s)", (sid, number))
        conn.execute("update public.calls set turns = '[{\"caller\": \"two lattes please\"}]', cart = '[{\"name\": \"Latte\"}]' "
                     "where call_sid = %s", (sid,))
        conn.execute("select app.voice_end_call(%s, 'completed', 61)", (sid,))
        conn.execute("update public.calls set started_at = %s, ended_at = %s where call_sid = %s", (ago(days), ago(days), sid))
        calls[label] = sid
    owner = t.claims("owner")
    assert api.run(other.claims("owner"), "select public.set_retention(%s, 'call_logs', 30) ->> 'days' as d", (other.business_id,)) == [{"d": "30"}]
    # the bounds: 30..365 days for calls, payment records at least 7 years, platform policies not per business
    assert sqlstate(lambda: api.run(owner, "select public.set_retention(%s, 'call_logs', 29)", (b,))) == "BR850"
    assert sqlstate(lambda: api.run(owner, "select public.set_retention(%s, 'payment_records', 2000)", (b,))) == "BR850"
    assert sqlstate(lambda: api.run(owner, "select public.set_retention(%s, 'outbox_archive', 30)", (b,))) == "BR851"
    assert sqlstate(lambda: api.run(owner, "select public.set_retention(%s, 'nope', 30)", (b,))) == "BR851"
    assert sqlstate(lambda: api.run(t.claims("manager"), "select public.set_retention(%s, 'call_logs', 60)", (b,))) == "42501"
    assert sqlstate(lambda: api.run(owner, "select public.set_retention(%s, 'call_logs', 60)", (other.business_id,))) == "42501"
    assert api.run(owner, "select policy, days from public.retention_policy where business_id = %s and policy = 'call_logs'", (b,)) == \
        [{"policy": "call_logs", "days": 90}]
    assert api.run(owner, "select count(*) as n from public.business_retention") == [{"n": 0}], "another business's setting is not mine"

    # driver GPS trail: day 29 kept, day 31 deleted
    driver = conn.execute("insert into public.drivers (business_id, user_id, display_name) values (%s, %s, 'D') returning id",
                          (b, t.users["driver"])).fetchone()["id"]  # type: ignore[index]
    for days in (29, 31):
        conn.execute("insert into public.driver_locations (business_id, driver_id, latitude, longitude, recorded_at) "
                     "values (%s, %s, 40.7, -74.0, %s)", (b, driver, ago(days)))

    # payment records: 7 years less a day kept, 7 years and a day anonymised (money untouched)
    paid = {}
    for label, days in (("kept", 2557 - 1), ("anonymised", 2557 + 1)):
        order = api.run(Claims.anon(), "select public.place_order(%s) as r", (json.dumps(order_payload(menu, notes="ring twice")),))[0]["r"]
        conn.execute("select app.apply_stripe_event(%s)", (json.dumps(session_completed(order, f"cs_{label}", f"pi_{label}")),))
        conn.execute("update public.orders set placed_at = %s, paid_at = %s where id = %s", (ago(days), ago(days), order["order_id"]))
        conn.execute("update public.stripe_events set received_at = %s, payload = jsonb_set(payload, '{data,object,customer_details}', "
                     "'{\"email\": \"ada@example.test\", \"name\": \"Ada\"}') where order_id = %s", (ago(days), order["order_id"]))
        paid[label] = order
    # abandoned carts: unpaid for 29 days kept, for 31 days the contact details go
    carts = {}
    for label, days in (("kept", 29), ("anonymised", 31)):
        cart = api.run(Claims.anon(), "select public.place_order(%s) as r", (json.dumps(order_payload(menu)),))[0]["r"]
        conn.execute("update public.orders set placed_at = %s, checkout_url = 'https://checkout.stripe.test/x' where id = %s",
                     (ago(days), cart["order_id"]))
        carts[label] = cart

    # expired tokens (30 days after expiry) and the outbox archive (30 days)
    customer = conn.execute("select customer_id from public.orders where id = %s", (paid["kept"]["order_id"],)).fetchone()["customer_id"]  # type: ignore[index]
    for label, days in (("kept", 29), ("gone", 31)):
        conn.execute("insert into public.consent_tokens (business_id, customer_id, venue_id, channel, token_hash, expires_at) "
                     "values (%s, %s, %s, %s, %s, %s)", (b, customer, venue, "EMAIL_MARKETING" if label == "kept" else "SMS_MARKETING",
                                                         f"hash-{label}", ago(days)))
        conn.execute("insert into public.staff_invitations (business_id, email, role, token_hash, expires_at) values (%s, %s, 'staff', %s, %s)",
                     (b, f"{label}@example.test", f"inv-{label}", ago(days)))
        conn.execute("insert into pgmq.a_brigade_events (msg_id, read_ct, enqueued_at, archived_at, vt, message) "
                     "values (%s, 1, %s, %s, %s, '{}')", (900000 + days, ago(days), ago(days), ago(days)))

    ledger_before = conn.execute("select count(*) as n, sum(credits) as credits from public.credit_transactions where business_id = %s", (b,)).fetchone()
    result = conn.execute("select app.apply_retention(%s) as r", (NOW,)).fetchone()["r"]  # type: ignore[index]
    assert result == {"call_logs": 2, "driver_locations": 1, "payment_records": 2, "abandoned_carts": 1, "expired_tokens": 2,
                      "outbox_archive": 1}, result  # payment records: the order and its checkout.session.completed event
    assert conn.execute("select app.apply_retention(%s) as r", (NOW,)).fetchone()["r"] == {k: 0 for k in result}, "a second run touches nothing"  # type: ignore[index]

    by_sid = {r["call_sid"]: r for r in conn.execute("select call_sid, from_number, turns, cart, credits_charged, duration_seconds "
                                                     "from public.calls").fetchall()}
    for label, redacted in (("day89", False), ("day91", True), ("other29", False), ("other31", True)):
        row = by_sid[calls[label]]
        assert (row["from_number"] == "expired" and row["turns"] == [] and row["cart"] == []) is redacted, (label, row)
        assert row["credits_charged"] > 0 and row["duration_seconds"] == 61, "the call's facts stay"
    assert conn.execute("select count(*) as n, sum(credits) as credits from public.credit_transactions where business_id = %s",
                        (b,)).fetchone() == ledger_before, "the credit ledger keeps every fact"

    assert [r["recorded_at"] for r in conn.execute("select recorded_at from public.driver_locations where driver_id = %s", (driver,))] == [ago(29)]

    people = {r["id"]: r for r in conn.execute("select id::text, guest_name, guest_email, guest_phone, notes, total_cents, payment_status, "
                                               "checkout_url from public.orders").fetchall()}
    kept, gone = people[paid["kept"]["order_id"]], people[paid["anonymised"]["order_id"]]
    assert kept["guest_email"] == "ada@example.test" and kept["notes"] == "ring twice"
    assert (gone["guest_name"], gone["guest_email"], gone["guest_phone"], gone["notes"]) == (None, None, None, "")
    assert (gone["total_cents"], gone["payment_status"]) == (kept["total_cents"], "paid"), "the money stays"
    payloads = {r["order_id"]: r["p"] for r in conn.execute("select order_id::text, payload -> 'data' -> 'object' as p from public.stripe_events "
                                                            "where order_id is not null")}
    assert "customer_details" in payloads[paid["kept"]["order_id"]] and "customer_details" not in payloads[paid["anonymised"]["order_id"]]
    assert payloads[paid["anonymised"]["order_id"]]["amount_total"] == paid["anonymised"]["total_cents"]
    assert people[carts["kept"]["order_id"]]["guest_email"] == "ada@example.test"
    assert (people[carts["anonymised"]["order_id"]]["guest_email"], people[carts["anonymised"]["order_id"]]["checkout_url"]) == (None, None)

    assert [r["token_hash"] for r in conn.execute("select token_hash from public.consent_tokens where token_hash like 'hash-%%'")] == ["hash-kept"]
    assert [r["email"] for r in conn.execute("select email from public.staff_invitations")] == ["kept@example.test"]
    assert [r["msg_id"] for r in conn.execute("select msg_id from pgmq.a_brigade_events")] == [900029]
