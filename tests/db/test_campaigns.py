"""Campaigns & automations in SQL: matching triggers to rules, the send-time checks, quiet hours,
frequency caps, allergen and stock suppression, campaigns and their preview, attribution edges and
the performance view, and who may read what."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest

from brigade.auth import Claims
from tests.campaigns_kit import automation, backdate, customer, enable, paid_order, sends
from tests.conftest import Api, Factory
from tests.ordering_kit import Menu


@pytest.fixture
def shop(conn: psycopg.Connection[dict[str, Any]], menu: Menu) -> Menu:
    enable(conn, menu.tenant.business_id)
    conn.execute("insert into public.stock_movements (business_id, venue_id, stock_item_id, delta, reason) "
                 "select business_id, venue_id, id, 1000, 'delivery' from public.stock_items where business_id = %s", (menu.tenant.business_id,))
    return menu


@contextmanager
def raises(code: str) -> Iterator[None]:
    with pytest.raises(psycopg.Error) as refused:
        yield
    assert refused.value.sqlstate == code, refused.value


def claim(conn: psycopg.Connection[dict[str, Any]], business_id: uuid.UUID, send_id: uuid.UUID, at: str | None = None) -> dict[str, Any]:
    if at is None:
        return conn.execute("select app.claim_marketing_send(%s, %s) as c", (business_id, send_id)).fetchone()["c"]  # type: ignore[index]
    return conn.execute("select app.claim_marketing_send(%s, %s, %s::timestamptz) as c", (business_id, send_id, at)).fetchone()["c"]  # type: ignore[index]


def complete(conn: psycopg.Connection[dict[str, Any]], business_id: uuid.UUID, send_id: uuid.UUID, recipient: str = "x") -> None:
    conn.execute("select app.complete_marketing_send(%s, %s, %s, 'test', 'log', %s, 0.79, null)",
                 (business_id, send_id, recipient, f"SM{uuid.uuid4().hex}"))


def send_now(conn: psycopg.Connection[dict[str, Any]], business_id: uuid.UUID, send_id: uuid.UUID) -> dict[str, Any]:
    c = claim(conn, business_id, send_id)
    if c["action"] == "send":
        complete(conn, business_id, send_id, c["recipient"])
    return c


# --- dormancy ---------------------------------------------------------------------------------------

def test_dormant_rule_matches_each_lapse_once(api: Api, conn: psycopg.Connection[dict[str, Any]], shop: Menu) -> None:
    b = shop.tenant.business_id
    lapsed = customer(api, conn, shop, name="Lee Lapsed", days_ago=31)
    edge = customer(api, conn, shop, name="Eve Edge", days_ago=29.9)
    rule = automation(conn, b, dormant_days=30, delay_seconds=0)
    assert conn.execute("select app.evaluate_dormant_automations(%s) as n", (b,)).fetchone() == {"n": 1}
    [s] = sends(conn, b, automation_id=rule)
    assert s["customer_id"] == lapsed and s["status"] == "scheduled" and s["context"]["dormant_days"] == 30
    assert conn.execute("select app.evaluate_dormant_automations(%s) as n", (b,)).fetchone() == {"n": 0}, "once per lapse"
    backdate(conn, b, edge, 30.01)
    assert conn.execute("select app.evaluate_dormant_automations(%s) as n", (b,)).fetchone() == {"n": 1}
    # ordering again and lapsing again is a new lapse
    paid_order(api, conn, shop, {"name": "Lee Lapsed", "phone": conn.execute(
        "select phone from public.customers where id = %s", (lapsed,)).fetchone()["phone"]})  # type: ignore[index]
    backdate(conn, b, lapsed, 45)
    assert conn.execute("select app.evaluate_dormant_automations(%s) as n", (b,)).fetchone() == {"n": 1}
    assert len(sends(conn, b, automation_id=rule, customer_id=lapsed)) == 2


def test_nothing_matches_when_the_module_is_off_or_the_rule_inactive(api: Api, conn: psycopg.Connection[dict[str, Any]], shop: Menu) -> None:
    b = shop.tenant.business_id
    customer(api, conn, shop, days_ago=40)
    rule = automation(conn, b, is_active=False)
    assert conn.execute("select app.evaluate_dormant_automations(%s) as n", (b,)).fetchone() == {"n": 0}
    conn.execute("update public.automations set is_active = true where id = %s", (rule,))
    conn.execute("select app.set_business_module(%s, 'campaigns', false)", (b,))
    assert conn.execute("select app.evaluate_dormant_automations(%s) as n", (b,)).fetchone() == {"n": 0}
    conn.execute("select app.set_business_module(%s, 'campaigns', true)", (b,))
    assert conn.execute("select app.evaluate_dormant_automations(%s) as n", (b,)).fetchone() == {"n": 1}


def test_segment_and_venue_filters(api: Api, conn: psycopg.Connection[dict[str, Any]], shop: Menu) -> None:
    b = shop.tenant.business_id
    vip = customer(api, conn, shop, name="Vic Vip", days_ago=40)
    plain = customer(api, conn, shop, name="Pat Plain", days_ago=40)
    conn.execute("insert into public.customer_tags (business_id, customer_id, tag) values (%s, %s, 'vip')", (b, vip))
    segment = conn.execute("insert into public.segments (business_id, venue_id, key, name, criteria) values (%s, %s, 'vips', 'VIPs', %s) returning id",
                           (b, shop.venue_id, json.dumps({"hasTag": "vip"}))).fetchone()["id"]  # type: ignore[index]
    conn.execute("select app.recompute_segment(%s, %s)", (b, segment))
    rule = automation(conn, b, segment_id=segment)
    elsewhere = automation(conn, b, venue_id=shop.tenant.venues[1])
    conn.execute("select app.evaluate_dormant_automations(%s)", (b,))
    assert [s["customer_id"] for s in sends(conn, b, automation_id=rule)] == [vip]
    assert sends(conn, b, automation_id=elsewhere) == [], "nobody ordered at the other venue"
    assert plain not in [s["customer_id"] for s in sends(conn, b)]


# --- event triggers ----------------------------------------------------------------------------------

def test_first_order_review_request_birthday_and_tier_triggers(api: Api, conn: psycopg.Connection[dict[str, Any]], shop: Menu) -> None:
    b = shop.tenant.business_id
    first = automation(conn, b, trigger="order.first", body="Welcome, {{first_name}}!")
    review = automation(conn, b, trigger="order.review_request", delay_seconds=7200, body="How was order #{{order_number}}?")
    birthday = automation(conn, b, trigger="customer.birthday", body="Happy birthday {{first_name}}")
    tier = automation(conn, b, trigger="loyalty.tier_changed", body="You reached {{tier}}")
    ada = customer(api, conn, shop, name="Ada First")
    [welcome] = sends(conn, b, automation_id=first)
    assert welcome["customer_id"] == ada
    phone = conn.execute("select phone from public.customers where id = %s", (ada,)).fetchone()["phone"]  # type: ignore[index]
    conn.execute("update public.venues set accepts_dine_in = true where id = %s", (shop.venue_id,))
    second = paid_order(api, conn, shop, {"name": "Ada First", "phone": phone}, fulfilment="dine_in", table_ref="4")
    assert len(sends(conn, b, automation_id=first)) == 1, "only the first order"

    # completing an order asks for a review, after the rule's delay, under its own consent channel
    for status in ("accepted", "preparing", "ready", "completed"):
        api.run(shop.tenant.claims("staff"), "select public.set_order_status(%s, %s)", (second["order_id"], status))
    [ask] = sends(conn, b, automation_id=review)
    assert ask["context"]["order_number"] == second["order_number"]
    left = conn.execute("select extract(epoch from %s::timestamptz - now())::float as s", (ask["due_at"],)).fetchone()
    assert left is not None and 7100 < left["s"] <= 7200  # the database's clock set due_at: measure it with that clock
    assert claim(conn, b, ask["id"], (datetime.now(timezone.utc) + timedelta(hours=3)).isoformat())["reason"] == "no_consent", "review requests need REVIEW_REQUEST consent"

    conn.execute("update public.customers set date_of_birth = '1990-07-14' where id = %s", (ada,))
    conn.execute("select app.emit_crm_events_at(30, '2040-07-14 12:00+00')")  # her birthday, whenever the test runs
    conn.execute("select app.emit_crm_events_at(30, '2040-07-14 18:00+00')")
    assert [s["customer_id"] for s in sends(conn, b, automation_id=birthday)] == [ada], "once a year"

    conn.execute("insert into public.loyalty_tiers (business_id, name, min_spend_cents, multiplier) values (%s, 'Gold', 1000, 1.5)", (b,))
    conn.execute("select app.recompute_tiers(%s)", (b,))
    got = [s for s in sends(conn, b, automation_id=tier) if s["customer_id"] == ada]
    assert len(got) == 1 and got[0]["context"]["tier"] == "Gold"
    c = send_now(conn, b, got[0]["id"])
    assert c["vars"]["tier"] == "Gold" and c["vars"]["first_name"] == "Ada"


def test_stock_critical_rules_reach_the_venues_managers_never_customers(conn: psycopg.Connection[dict[str, Any]], shop: Menu, factory: Factory) -> None:
    b = shop.tenant.business_id
    rule = automation(conn, b, trigger="stock.critical", channel="email", subject="Low stock at {{venue_name}}",
                      body="{{stock_item}} is down to {{quantity}} {{unit}}")
    other_venue_manager = factory.user("elsewhere@example.test")
    factory.member(b, other_venue_manager, "manager", [shop.tenant.venues[1]])
    item = conn.execute("select id, quantity, critical_level from public.stock_items where business_id = %s and venue_id = %s limit 1",
                        (b, shop.venue_id)).fetchone()
    assert item is not None
    conn.execute("update public.stock_items set critical_level = %s where id = %s", (float(item["quantity"]) - 1, item["id"]))
    conn.execute("insert into public.stock_movements (business_id, venue_id, stock_item_id, delta, reason) values (%s, %s, %s, -1, 'waste')",
                 (b, shop.venue_id, item["id"]))
    got = sends(conn, b, automation_id=rule)
    users = {s["user_id"] for s in got}
    assert users == {shop.tenant.users["owner"], shop.tenant.users["manager"]}, "owner and manager of that venue; not staff, not the other venue"
    assert all(s["customer_id"] is None for s in got)
    c = send_now(conn, b, got[0]["id"])
    assert c["action"] == "send" and c["marketing"] is False and c["recipient"].endswith("@example.test")
    assert c["unsubscribe_token"] is None


# --- send-time checks -----------------------------------------------------------------------------

def test_send_time_checks(api: Api, conn: psycopg.Connection[dict[str, Any]], shop: Menu) -> None:
    b = shop.tenant.business_id
    ok = customer(api, conn, shop, name="Olga Ok", days_ago=40)
    no_consent = customer(api, conn, shop, name="Nina Noconsent", days_ago=40, consent=())
    no_phone = customer(api, conn, shop, name="Paul Nophone", days_ago=40, phone=False)
    erased = customer(api, conn, shop, name="Erin Erased", days_ago=40)
    stopped = customer(api, conn, shop, name="Sam Stop", days_ago=40)
    leaving = customer(api, conn, shop, name="Lou Leaving", days_ago=40)
    rule = automation(conn, b)
    conn.execute("select app.evaluate_dormant_automations(%s)", (b,))
    conn.execute("select app.anonymise_customer(%s, %s)", (b, erased))
    conn.execute("insert into public.customer_delete_requests (business_id, customer_id) values (%s, %s)", (b, leaving))
    phone = conn.execute("select phone from public.customers where id = %s", (stopped,)).fetchone()["phone"]  # type: ignore[index]
    conn.execute("insert into public.marketing_suppressions (business_id, channel, address, reason) values (%s, 'sms', %s, 'bounce')", (b, phone))
    outcome = {s["customer_id"]: claim(conn, b, s["id"]) for s in sends(conn, b, automation_id=rule)}
    assert outcome[ok]["action"] == "send"
    assert {c: o.get("reason") for c, o in outcome.items() if c != ok} == {
        no_consent: "no_consent", no_phone: "no_contact", erased: "deleted", stopped: "suppressed", leaving: "deleted"}
    assert outcome[ok]["unsubscribe_channel"] == "SMS_MARKETING"
    assert re.fullmatch(r"v[0-9]+\.[0-9a-f]{64}", outcome[ok]["unsubscribe_token"]), "a versioned HMAC (0077)"
    skipped = {s["customer_id"]: s["skip_reason"] for s in sends(conn, b, automation_id=rule) if s["status"] == "skipped"}
    assert len(skipped) == 5, "skips are final, with their reason"


def test_allergen_and_critical_ingredient_suppression(api: Api, conn: psycopg.Connection[dict[str, Any]], shop: Menu) -> None:
    b = shop.tenant.business_id
    croissant = shop.products["croissant"]
    conn.execute("update public.products set allergens = '{Gluten,Dairy}' where id = %s", (croissant,))
    allergic = customer(api, conn, shop, name="Gil Gluten", days_ago=40)
    conn.execute("insert into public.customer_preferences (business_id, customer_id, kind, value) values (%s, %s, 'allergen', ' GLUTEN ')", (b, allergic))
    fine = customer(api, conn, shop, name="Fay Fine", days_ago=40)
    promo = automation(conn, b, product_id=croissant, body="Two {{product_name}}s for one this week")
    plain = automation(conn, b, body="We miss you")
    conn.execute("select app.evaluate_dormant_automations(%s)", (b,))
    promo_sends = {s["customer_id"]: s["id"] for s in sends(conn, b, automation_id=promo)}
    assert claim(conn, b, promo_sends[allergic])["reason"] == "allergen"
    assert [claim(conn, b, s["id"])["action"] for s in sends(conn, b, automation_id=plain, customer_id=allergic)] == ["send"], \
        "a message featuring no product still reaches them"
    # an ingredient of the croissant at critical level at the venue: the promotion waits for no one
    conn.execute("update public.stock_items s set critical_level = s.quantity + 1 where s.business_id = %s and s.venue_id = %s "
                 "and s.sku in (select r.stock_sku from public.recipe_lines r where r.product_id = %s)", (b, shop.venue_id, croissant))
    assert conn.execute("select count(*) as n from public.recipe_lines where product_id = %s", (croissant,)).fetchone()["n"] > 0  # type: ignore[index]
    assert claim(conn, b, promo_sends[fine])["reason"] == "stock_critical"
    preview = conn.execute("select app.marketing_block(%s, %s, %s, 'sms', 'SMS_MARKETING', null) as r", (b, fine, shop.venue_id)).fetchone()
    assert preview == {"r": None}


def test_frequency_cap_per_rule_and_per_business(api: Api, conn: psycopg.Connection[dict[str, Any]], shop: Menu) -> None:
    b = shop.tenant.business_id
    cid = customer(api, conn, shop)
    capped = automation(conn, b, trigger="customer.birthday", cap_count=1, cap_days=7)
    other = automation(conn, b, trigger="loyalty.tier_changed", cap_count=2, cap_days=7, cap_scope="business")
    enqueue = "select app.enqueue_automations(%s, %s, %s, %s, null) as n"
    assert conn.execute(enqueue, (b, "customer.birthday", "k1", cid)).fetchone() == {"n": 1}
    assert conn.execute(enqueue, (b, "customer.birthday", "k1", cid)).fetchone() == {"n": 0}, "the same trigger twice is one send"
    conn.execute(enqueue, (b, "customer.birthday", "k2", cid))
    first, second = sends(conn, b, automation_id=capped)
    assert send_now(conn, b, first["id"])["action"] == "send"
    assert claim(conn, b, second["id"])["reason"] == "frequency_cap"
    # eight days later the cap has room again
    conn.execute("update public.campaign_sends set sent_at = sent_at - interval '8 days' where id = %s", (first["id"],))
    conn.execute(enqueue, (b, "customer.birthday", "k3", cid))
    assert send_now(conn, b, sends(conn, b, automation_id=capped)[-1]["id"])["action"] == "send"
    # business scope counts every rule's messages: two sent this week (k3 + this one) caps the third
    for key in ("t1", "t2"):
        conn.execute(enqueue, (b, "loyalty.tier_changed", key, cid))
    t1, t2 = sends(conn, b, automation_id=other)
    assert send_now(conn, b, t1["id"])["action"] == "send"
    assert claim(conn, b, t2["id"])["reason"] == "frequency_cap"


@pytest.mark.parametrize(("local_now", "expected"), [
    ("2026-07-01 22:30", ("deferred", "2026-07-02 08:00")),  # inside a window that wraps midnight
    ("2026-07-02 07:59", ("deferred", "2026-07-02 08:00")),
    ("2026-07-02 08:00", ("send", None)),                    # the window's end is not quiet
    ("2026-07-01 20:59", ("send", None)),
    ("2026-07-01 21:00", ("deferred", "2026-07-02 08:00")),
])
def test_quiet_hours_in_the_venue_time_zone(api: Api, conn: psycopg.Connection[dict[str, Any]], shop: Menu,
                                            local_now: str, expected: tuple[str, str | None]) -> None:
    b = shop.tenant.business_id
    conn.execute("update public.venues set time_zone = 'Europe/Paris' where id = %s", (shop.venue_id,))
    customer(api, conn, shop, days_ago=40)
    rule = automation(conn, b, quiet_start="21:00", quiet_end="08:00")
    conn.execute("select app.evaluate_dormant_automations(%s)", (b,))
    [s] = sends(conn, b, automation_id=rule)
    conn.execute("update public.campaign_sends set due_at = '2026-01-01' where id = %s", (s["id"],))
    at = f"timestamp '{local_now}' at time zone 'Europe/Paris'"
    c = conn.execute(f"select app.claim_marketing_send(%s, %s, {at}) as c", (b, s["id"])).fetchone()["c"]  # type: ignore[index]
    assert c["action"] == expected[0]
    if expected[1]:
        until = conn.execute(f"select (%s::timestamptz at time zone 'Europe/Paris')::text as t, extract(epoch from %s::timestamptz - {at})::int as secs",
                             (c["until"], c["until"])).fetchone()
        assert until["t"] == f"{expected[1]}:00" and c["delay_seconds"] == until["secs"]  # type: ignore[index]
        row = sends(conn, b, automation_id=rule)[0]
        assert row["status"] == "scheduled" and row["deferrals"] == 1
        again = conn.execute("select count(*) as n from pgmq.q_brigade_events where message->>'topic' = 'automation.due' "
                             "and message->'payload'->>'send_id' = %s", (str(s["id"]),)).fetchone()
        assert again == {"n": 2}, "the deferred send is announced again, delayed to the window's end"


# --- campaigns --------------------------------------------------------------------------------------

def test_campaign_preview_schedule_launch_and_cancel(api: Api, conn: psycopg.Connection[dict[str, Any]], shop: Menu) -> None:
    b = shop.tenant.business_id
    reach = [customer(api, conn, shop, name=f"Reach {i}") for i in range(3)]
    silent = customer(api, conn, shop, name="Quiet Quinn", consent=())
    nophone = customer(api, conn, shop, name="Nope Nophone", phone=False)
    segment = conn.execute("insert into public.segments (business_id, venue_id, key, name, criteria) values (%s, %s, 'everyone', 'Everyone', %s) "
                           "returning id", (b, shop.venue_id, json.dumps({"field": "total_orders", "op": "gte", "value": 1}))).fetchone()
    seg = segment["id"]  # type: ignore[index]
    conn.execute("select app.recompute_segment(%s, %s)", (b, seg))
    manager = shop.tenant.claims("manager")
    preview = api.run(manager, "select public.campaign_preview(%s, 'sms') as p", (seg,))[0]["p"]
    assert preview["members"] >= 5 and preview["reachable"] == len(reach)
    assert preview["blocked"]["no_consent"] >= 1 and preview["blocked"]["no_contact"] == 1
    with raises("PT404"):
        api.run(shop.tenant.claims("staff"), "select public.campaign_preview(%s, 'sms')", (seg,))

    campaign = api.run(manager, "insert into public.campaigns (business_id, name, segment_id, channel, body) values (%s, 'Autumn', %s, 'sms', "
                       "'Pumpkin latte is back') returning id", (b, seg))[0]["id"]
    with raises("BR352"):
        api.run(manager, "select public.schedule_campaign(%s, now() - interval '1 day')", (campaign,))
    scheduled = api.run(manager, "select public.schedule_campaign(%s, now() + interval '1 day') as r", (campaign,))[0]["r"]
    assert scheduled["preview"]["reachable"] == len(reach)
    due = conn.execute("select extract(epoch from vt - now()) as s from pgmq.q_brigade_events where message->>'topic' = 'campaign.due'").fetchone()
    assert due and 86300 < float(due["s"]) <= 86400
    assert conn.execute("select app.launch_campaign(%s, %s) as n", (b, campaign)).fetchone() == {"n": 0}, "not before its time"
    assert api.rowcount(manager, "update public.campaigns set body = 'changed' where id = %s", (campaign,)) == 0, "only drafts are edited"
    conn.execute("update public.campaigns set scheduled_at = now() where id = %s", (campaign,))
    launched = conn.execute("select app.launch_campaign(%s, %s) as n", (b, campaign)).fetchone()["n"]  # type: ignore[index]
    assert launched == preview["members"]
    assert conn.execute("select app.launch_campaign(%s, %s) as n", (b, campaign)).fetchone() == {"n": 0}, "launched once"
    outcomes = [claim(conn, b, s["id"]) for s in sends(conn, b, campaign_id=campaign)]
    assert sum(o["action"] == "send" for o in outcomes) == len(reach)
    assert {o.get("reason") for o in outcomes if o["action"] != "send"} == {"no_consent", "no_contact"}
    assert silent and nophone

    other = api.run(manager, "insert into public.campaigns (business_id, name, segment_id, channel, body) values (%s, 'Never', %s, 'sms', 'x') "
                    "returning id", (b, seg))[0]["id"]
    api.run(manager, "select public.schedule_campaign(%s, now() + interval '1 hour')", (other,))
    api.run(manager, "select public.cancel_campaign(%s)", (other,))
    conn.execute("update public.campaigns set scheduled_at = now() where id = %s", (other,))
    assert conn.execute("select app.launch_campaign(%s, %s) as n", (b, other)).fetchone() == {"n": 0}
    with raises("BR351"):
        api.run(manager, "select public.schedule_campaign(%s, now() + interval '1 hour')", (other,))


# --- attribution ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("sent_ago", "attributed"), [("6 days 23 hours", True), ("7 days 1 hour", False), ("1 minute", True)])
def test_attribution_window_edges(api: Api, conn: psycopg.Connection[dict[str, Any]], shop: Menu, sent_ago: str, attributed: bool) -> None:
    b = shop.tenant.business_id
    cid = customer(api, conn, shop, days_ago=40)
    rule = automation(conn, b)
    conn.execute("select app.evaluate_dormant_automations(%s)", (b,))
    [s] = sends(conn, b, automation_id=rule)
    send_now(conn, b, s["id"])
    conn.execute("update public.campaign_sends set sent_at = now() - %s::interval, attribution_ends_at = now() - %s::interval + interval '7 days' "
                 "where id = %s", (sent_ago, sent_ago, s["id"]))
    phone = conn.execute("select phone from public.customers where id = %s", (cid,)).fetchone()["phone"]  # type: ignore[index]
    order = paid_order(api, conn, shop, {"name": "Dana Dormant", "phone": phone})
    got = conn.execute("select send_id, automation_id from public.campaign_attributions where order_id = %s", (order["order_id"],)).fetchall()
    assert got == ([{"send_id": s["id"], "automation_id": rule}] if attributed else [])


def test_last_touch_wins_and_the_performance_view_adds_up(api: Api, conn: psycopg.Connection[dict[str, Any]], shop: Menu) -> None:
    b = shop.tenant.business_id
    cid = customer(api, conn, shop, days_ago=40)
    winback = automation(conn, b, name="Win-back")
    birthday = automation(conn, b, name="Birthday", trigger="customer.birthday")
    conn.execute("select app.evaluate_dormant_automations(%s)", (b,))
    conn.execute("select app.enqueue_automations(%s, 'customer.birthday', 'bd', %s, null)", (b, cid))
    [older] = sends(conn, b, automation_id=winback)
    [latest] = sends(conn, b, automation_id=birthday)
    send_now(conn, b, older["id"])
    send_now(conn, b, latest["id"])
    conn.execute("update public.campaign_sends set sent_at = now() - interval '2 days', attribution_ends_at = now() + interval '5 days' where id = %s", (older["id"],))
    conn.execute("update public.campaign_sends set sent_at = now() - interval '1 day', attribution_ends_at = now() + interval '6 days' where id = %s", (latest["id"],))
    conn.execute("update public.notification_log set status = 'delivered' where id = (select notification_id from public.campaign_sends where id = %s)", (latest["id"],))
    phone = conn.execute("select phone from public.customers where id = %s", (cid,)).fetchone()["phone"]  # type: ignore[index]
    order = paid_order(api, conn, shop, {"name": "Dana Dormant", "phone": phone})
    perf = {r["name"]: r for r in api.run(shop.tenant.claims("manager"), "select * from public.campaign_performance where business_id = %s", (b,))}
    assert perf["Birthday"]["orders"] == 1 and perf["Birthday"]["revenue_cents"] == order["total_cents"]
    assert perf["Birthday"]["sends"] == 1 and perf["Birthday"]["delivered"] == 1 and float(perf["Birthday"]["message_cost_cents"]) == pytest.approx(0.79)
    assert perf["Win-back"]["orders"] == 0 and perf["Win-back"]["sends"] == 1
    # a full refund takes the revenue back out
    conn.execute("update public.orders set refunded_cents = total_cents where id = %s", (order["order_id"],))
    again = api.run(shop.tenant.claims("owner"), "select revenue_cents from public.campaign_performance where id = %s", (birthday,))
    assert again == [{"revenue_cents": 0}]


# --- who sees what ----------------------------------------------------------------------------------

def test_only_owners_and_managers_with_the_module_see_marketing(api: Api, conn: psycopg.Connection[dict[str, Any]], shop: Menu) -> None:
    b = shop.tenant.business_id
    customer(api, conn, shop, days_ago=40)
    automation(conn, b)
    conn.execute("select app.evaluate_dormant_automations(%s)", (b,))
    count = "select (select count(*) from public.automations) as a, (select count(*) from public.campaign_sends) as s"
    assert api.run(shop.tenant.claims("manager"), count) == [{"a": 1, "s": 1}]
    assert api.run(shop.tenant.claims("staff"), count) == [{"a": 0, "s": 0}]
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        api.run(shop.tenant.claims("staff"), "insert into public.automations (business_id, name, trigger, channel, body) "
                "values (%s, 'x', 'order.first', 'sms', 'x')", (b,))
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        api.run(shop.tenant.claims("owner"), "update public.campaign_sends set status = 'sent'")
    conn.execute("select app.set_business_module(%s, 'campaigns', false)", (b,))
    assert api.run(shop.tenant.claims("owner"), count) == [{"a": 0, "s": 0}]
    with pytest.raises(psycopg.errors.lookup("23514")):
        conn.execute("insert into public.automations (business_id, name, trigger, channel, body) values (%s, 'x', 'order.first', 'email', 'no subject')", (b,))
    with pytest.raises(psycopg.errors.lookup("23514")):
        conn.execute("insert into public.automations (business_id, name, trigger, channel, body, quiet_start) values (%s, 'x', 'order.first', 'sms', 'x', '22:00')", (b,))
    assert Claims.anon().role == "anon"
