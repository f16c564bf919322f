"""Plans and billing: every plan limit, the proration arithmetic of the period's invoice, the
subscription status machine and the Stripe Billing adapter."""

from __future__ import annotations

import json
import uuid
from typing import Any

import psycopg
import pytest

from brigade.auth import Claims
from tests.conftest import Api, Factory, Tenant
from tests.ordering_kit import Menu, order_payload

Conn = psycopg.Connection[dict[str, Any]]


def add_venue(api: Api, tenant: Tenant, n: int) -> None:
    api.run(tenant.claims("owner"), "insert into public.venues (business_id, name, slug) values (%s, %s, %s)",
            (tenant.business_id, f"Venue {n}", f"venue-{n}-{uuid.uuid4().hex[:6]}"))


def plan(conn: Conn, key: str) -> dict[str, Any]:
    row = conn.execute("select * from public.plans where key = %s", (key,)).fetchone()
    assert row is not None
    return row


def test_plans_carry_features_limits_and_fees(conn: Conn) -> None:
    rows = conn.execute("select key, max_venues, max_staff, max_orders_per_month, voice_credits_included, features "
                        "from public.plans order by sort_order").fetchall()
    assert [r["key"] for r in rows] == ["starter", "growth", "professional", "enterprise"]
    limited = [r for r in rows if r["key"] != "enterprise"]
    for smaller, bigger in zip(limited, limited[1:]):
        assert smaller["max_venues"] < bigger["max_venues"] and smaller["max_staff"] < bigger["max_staff"]
        assert smaller["max_orders_per_month"] < bigger["max_orders_per_month"]
        assert smaller["voice_credits_included"] < bigger["voice_credits_included"]
        assert set(smaller["features"]) < set(bigger["features"])
    assert rows[-1]["max_venues"] is None and rows[-1]["max_orders_per_month"] is None


def test_a_starter_cannot_add_a_sixth_venue(api: Api, conn: Conn, tenant: Tenant) -> None:
    limit = plan(conn, "starter")["max_venues"]
    assert limit == 5
    for n in range(2, limit):  # the tenant starts with two venues
        add_venue(api, tenant, n)
    with pytest.raises(psycopg.Error) as err:
        add_venue(api, tenant, 99)
    assert err.value.diag.sqlstate == "BR701" and err.value.diag.message_hint == "venue_limit"
    assert "Starter plan allows 5 venues" in (err.value.diag.message_primary or "")
    assert conn.execute("select count(*) as n from public.venues where business_id = %s", (tenant.business_id,)).fetchone() == {"n": 5}

    # growth lifts it; going back down while using six is refused
    api.run(tenant.claims("owner"), "select public.change_plan(%s, 'growth')", (tenant.business_id,))
    add_venue(api, tenant, 6)
    with pytest.raises(psycopg.Error) as err:
        api.run(tenant.claims("owner"), "select public.change_plan(%s, 'starter')", (tenant.business_id,))
    assert err.value.diag.sqlstate == "BR704"
    assert conn.execute("select plan_key from public.business_subscriptions where business_id = %s",
                        (tenant.business_id,)).fetchone() == {"plan_key": "growth"}


def test_staff_limit_counts_members_but_not_drivers(api: Api, conn: Conn, factory: Factory, tenant: Tenant) -> None:
    limit = plan(conn, "starter")["max_staff"]
    have = conn.execute("select count(*) as n from public.memberships where business_id = %s and role <> 'driver'",
                        (tenant.business_id,)).fetchone()["n"]  # type: ignore[index]
    assert have == 3
    for _ in range(limit - have):
        factory.member(tenant.business_id, factory.user(), "staff")
    with pytest.raises(psycopg.Error) as err:
        factory.member(tenant.business_id, factory.user(), "staff")
    assert err.value.diag.sqlstate == "BR702" and err.value.diag.message_hint == "staff_limit"
    factory.member(tenant.business_id, factory.user(), "driver")  # the driver pool is the dispatch module's
    with pytest.raises(psycopg.Error) as err:  # nor can a driver be promoted into a full team
        api.run(tenant.claims("owner"), "update public.memberships set role = 'staff' where business_id = %s and user_id = %s",
                (tenant.business_id, tenant.users["driver"]))
    assert err.value.diag.sqlstate == "BR702"
    conn.execute("select app.change_plan(%s, 'growth')", (tenant.business_id,))
    factory.member(tenant.business_id, factory.user(), "staff")


@pytest.mark.clock
def test_orders_per_month_limit(api: Api, conn: Conn, menu: Menu) -> None:
    b = menu.tenant.business_id
    limit = plan(conn, "starter")["max_orders_per_month"]
    first = api.run(Claims.anon(), "select public.place_order(%s) as r", (json.dumps(order_payload(menu)),))[0]["r"]
    # the month is the order's own, in the business's zone
    name = conn.execute("select app.orders_month_counter(%s, placed_at) as n from public.orders where id = %s",
                        (b, first["order_id"])).fetchone()["n"]  # type: ignore[index]
    assert conn.execute("select value from app.business_counters where business_id = %s and name = %s", (b, name)).fetchone() == {"value": 1}

    def usage_at(value: int) -> None:
        """This month's and next month's counters at value, so the test holds when a month ends while it runs."""
        conn.execute("insert into app.business_counters (business_id, name, value) "
                     "select %s, app.orders_month_counter(%s, at), %s from unnest(array[now(), now() + interval '1 month']) at "
                     "on conflict (business_id, name) do update set value = excluded.value", (b, b, value))

    usage_at(limit - 1)
    api.run(Claims.anon(), "select public.place_order(%s)", (json.dumps(order_payload(menu)),))  # the last one allowed
    usage_at(limit)
    with pytest.raises(psycopg.Error) as err:
        api.run(Claims.anon(), "select public.place_order(%s)", (json.dumps(order_payload(menu)),))
    assert err.value.diag.sqlstate == "BR703" and err.value.diag.message_hint == "order_limit"
    # next month's counter is another counter; enterprise has no limit
    conn.execute("select app.change_plan(%s, 'enterprise')", (b,))
    api.run(Claims.anon(), "select public.place_order(%s)", (json.dumps(order_payload(menu)),))


def invoice_lines(conn: Conn, b: uuid.UUID) -> dict[str, dict[str, Any]]:
    invoice = conn.execute("select app.refresh_draft_invoice(%s) as id", (b,)).fetchone()["id"]  # type: ignore[index]
    rows = conn.execute("select item_key, days, period_days, amount_cents, unit_amount_cents from public.billing_invoice_lines "
                        "where business_id = %s and invoice_id = %s", (b, invoice)).fetchall()
    return {f"{r['item_key']}:{r['days']}": r for r in rows}


def test_proration_by_day(conn: Conn, tenant: Tenant) -> None:
    """A 30-day period: starter all along until the 21st, CRM from the 11th, growth from the 21st."""
    b = tenant.business_id
    conn.execute("update public.businesses set time_zone = 'UTC' where id = %s", (b,))  # the days below are UTC days
    conn.execute("update public.business_subscriptions set current_period_start = '2026-11-01T00:00Z', "
                 "current_period_end = '2026-12-01T00:00Z', trial_ends_at = '2026-11-01T00:00Z' where business_id = %s", (b,))  # no trial
    conn.execute("update public.business_subscription_lines set starts_at = '2026-11-01T00:00Z' where business_id = %s", (b,))
    conn.execute("select app.set_business_module(%s, 'crm', true)", (b,))
    conn.execute("update public.business_subscription_lines set starts_at = '2026-11-11T09:30Z' where business_id = %s and item_key = 'crm'", (b,))
    conn.execute("select app.change_plan(%s, 'growth')", (b,))
    conn.execute("update public.business_subscription_lines set ends_at = '2026-11-21T15:00Z' where business_id = %s and item_key = 'starter'", (b,))
    conn.execute("update public.business_subscription_lines set starts_at = '2026-11-21T15:00Z' where business_id = %s and item_key = 'growth'", (b,))

    lines = invoice_lines(conn, b)
    assert set(lines) == {"starter:20", "growth:10", "crm:20", "ordering:30"}
    assert all(line["period_days"] == 30 for line in lines.values())
    assert lines["starter:20"]["amount_cents"] == 1933  # 2900 × 20/30 = 1933.33
    assert lines["growth:10"]["amount_cents"] == 2633   # 7900 × 10/30 = 2633.33
    assert lines["crm:20"]["amount_cents"] == 2600      # 3900 × 20/30
    assert lines["ordering:30"]["amount_cents"] == 0
    total = conn.execute("select total_cents from public.billing_invoices where business_id = %s and period_start = '2026-11-01T00:00Z'",
                         (b,)).fetchone()
    assert total == {"total_cents": 1933 + 2633 + 2600}

    # half a cent rounds away from zero: loyalty (2900) for 3 of 30 days... 290 exact; campaigns 4900 × 3/30 = 490;
    # a 4-day line of dispatch 5900 × 4/30 = 786.67 → 787
    conn.execute("select app.set_business_module(%s, 'dispatch', true)", (b,))
    conn.execute("update public.business_subscription_lines set starts_at = '2026-11-05T00:00Z', ends_at = '2026-11-09T23:59Z' "
                 "where business_id = %s and item_key = 'dispatch'", (b,))
    assert invoice_lines(conn, b)["dispatch:4"]["amount_cents"] == 787


def test_proration_uses_the_business_time_zone(conn: Conn, tenant: Tenant) -> None:
    b = tenant.business_id
    conn.execute("update public.businesses set time_zone = 'America/New_York' where id = %s", (b,))
    conn.execute("update public.business_subscriptions set current_period_start = '2026-11-01T04:00Z', "
                 "current_period_end = '2026-12-01T05:00Z', trial_ends_at = '2026-11-01T04:00Z' where business_id = %s", (b,))  # no trial
    conn.execute("update public.business_subscription_lines set starts_at = '2026-11-01T04:00Z' where business_id = %s", (b,))
    conn.execute("select app.set_business_module(%s, 'crm', true)", (b,))
    # 02:00Z on the 11th is still the 10th in New York: 21 local days, not 20
    conn.execute("update public.business_subscription_lines set starts_at = '2026-11-11T02:00Z' where business_id = %s and item_key = 'crm'", (b,))
    assert invoice_lines(conn, b)["crm:21"]["amount_cents"] == round(3900 * 21 / 30)


def test_a_module_switch_rebills_the_draft_at_once(api: Api, conn: Conn, tenant: Tenant, operator: Claims) -> None:
    b = tenant.business_id
    conn.execute("update public.business_subscriptions set trial_ends_at = current_period_start where business_id = %s", (b,))  # no trial
    before = api.run(tenant.claims("owner"), "select public.billing_overview(%s) as o", (b,))[0]["o"]
    api.run(operator, "select public.set_business_module(%s, 'loyalty', true)", (b,))
    after = api.run(tenant.claims("owner"), "select public.billing_overview(%s) as o", (b,))[0]["o"]
    assert after["subscription"]["monthly_total_cents"] == before["subscription"]["monthly_total_cents"] + 2900
    keys = {line["item_key"] for line in after["invoice"]["lines"]}
    assert "loyalty" in keys and "loyalty" not in {line["item_key"] for line in before["invoice"]["lines"]}
    loyalty = next(line for line in after["invoice"]["lines"] if line["item_key"] == "loyalty")
    assert loyalty["amount_cents"] == round(2900 * loyalty["days"] / loyalty["period_days"])
    # only the owner reads the bill
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        api.run(tenant.claims("manager"), "select public.billing_overview(%s)", (b,))
    assert api.run(tenant.claims("manager"), "select count(*) as n from public.billing_invoice_lines") == [{"n": 0}]
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        api.run(tenant.claims("manager"), "select public.change_plan(%s, 'growth')", (b,))


def test_subscription_status_machine(api: Api, conn: Conn, tenant: Tenant, operator: Claims) -> None:
    b = tenant.business_id
    sub = conn.execute("select status, trial_ends_at - current_period_start as trial from public.business_subscriptions "
                       "where business_id = %s", (b,)).fetchone()
    assert sub is not None and sub["status"] == "trial" and sub["trial"].days == 14

    def move(status: str) -> str | None:
        try:
            api.run(operator, "select app.set_subscription_status(%s, %s)", (b, status))
        except psycopg.Error as exc:
            return exc.diag.sqlstate
        return None

    assert move("active") is None
    assert move("trial") == "BR705"
    assert move("past_due") is None
    assert move("canceled") is None
    sub = conn.execute("select monthly_total_cents, canceled_at from public.business_subscriptions where business_id = %s", (b,)).fetchone()
    assert sub is not None and sub["monthly_total_cents"] == 0 and sub["canceled_at"] is not None
    assert move("past_due") == "BR705"
    assert move("active") is None  # reactivated: lines reopen
    assert conn.execute("select monthly_total_cents from public.business_subscriptions where business_id = %s", (b,)).fetchone() == {
        "monthly_total_cents": 2900}
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        api.run(tenant.claims("owner"), "select app.set_subscription_status(%s, 'active')", (b,))
    actions = [r["action"] for r in conn.execute("select action from public.audit_log where business_id = %s and action like 'subscription.%%' order by id", (b,))]
    assert actions == ["subscription.active", "subscription.past_due", "subscription.canceled", "subscription.active"]


def test_stripe_billing_adapter_writes_the_same_rows(conn: Conn, tenant: Tenant) -> None:
    b = tenant.business_id

    def apply(event_type: str, obj: dict[str, Any]) -> str:
        event = {"id": f"evt_{uuid.uuid4().hex[:10]}", "type": event_type, "data": {"object": obj}}
        return conn.execute("select app.apply_stripe_billing_event(%s) as r", (json.dumps(event),)).fetchone()["r"]  # type: ignore[index]

    sub = {"id": "sub_123", "object": "subscription", "customer": "cus_9", "status": "active", "metadata": {"business_id": str(b)}}
    assert apply("customer.subscription.updated", sub) == "applied"
    row = conn.execute("select status, billing_provider, stripe_customer_id from public.business_subscriptions where business_id = %s", (b,)).fetchone()
    assert row == {"status": "active", "billing_provider": "stripe", "stripe_customer_id": "cus_9"}
    assert apply("invoice.payment_failed", {"id": "in_1", "object": "invoice", "subscription": "sub_123"}) == "applied"
    assert conn.execute("select status from public.business_subscriptions where business_id = %s", (b,)).fetchone() == {"status": "past_due"}
    assert apply("invoice.paid", {"id": "in_1", "object": "invoice", "subscription": "sub_123"}) == "applied"
    assert conn.execute("select status from public.business_subscriptions where business_id = %s", (b,)).fetchone() == {"status": "active"}
    assert apply("customer.subscription.deleted", {**sub, "status": "canceled"}) == "applied"
    assert apply("customer.subscription.updated", {**sub, "status": "past_due"}) == "stale"  # a late event never un-cancels
    assert apply("invoice.paid", {"id": "in_2", "object": "invoice", "subscription": "sub_unknown"}) == "unknown_subscription"


def test_closing_a_period_finalises_the_invoice_and_starts_the_next(conn: Conn, tenant: Tenant) -> None:
    b = tenant.business_id
    conn.execute("update public.business_subscriptions set current_period_start = '2026-10-01T00:00Z', "
                 "current_period_end = '2026-11-01T00:00Z', trial_ends_at = '2026-10-01T00:00Z' where business_id = %s", (b,))  # no trial
    conn.execute("update public.business_subscription_lines set starts_at = '2026-10-01T00:00Z' where business_id = %s", (b,))
    assert conn.execute("select app.close_due_billing_periods('2026-11-15T00:00Z') as n").fetchone() == {"n": 1}
    invoices = conn.execute("select period_start, status, total_cents from public.billing_invoices where business_id = %s "
                            "order by period_start", (b,)).fetchall()
    closed = [i for i in invoices if i["status"] == "open"]
    assert len(closed) == 1 and closed[0]["total_cents"] == 2900
    assert invoices[-1]["status"] == "draft"
    assert conn.execute("select app.close_due_billing_periods('2026-11-15T00:00Z') as n").fetchone() == {"n": 0}
    with pytest.raises(psycopg.Error) as err:
        conn.execute("update public.billing_invoices set status = 'draft' where business_id = %s and status = 'open'", (b,))
    assert err.value.diag.sqlstate == "BR706"
    started = conn.execute("select message -> 'payload' as p from pgmq.q_brigade_events where message ->> 'topic' = 'billing.period_started'").fetchall()
    assert len(started) == 1 and started[0]["p"]["voice_credits_included"] == plan(conn, "starter")["voice_credits_included"]


def test_billing_events_arrive_through_the_stripe_webhook_ledger(conn: Conn, tenant: Tenant) -> None:
    b = tenant.business_id
    event = {"id": "evt_billing_1", "object": "event", "type": "customer.subscription.updated", "livemode": False,
             "data": {"object": {"id": "sub_w", "object": "subscription", "customer": "cus_w", "status": "past_due",
                                 "metadata": {"business_id": str(b)}}}}
    for _ in range(2):  # a retried delivery is recorded once
        conn.execute("select app.apply_stripe_event(%s)", (json.dumps(event),))
    row = conn.execute("select status, stripe_subscription_id from public.business_subscriptions where business_id = %s", (b,)).fetchone()
    assert row == {"status": "past_due", "stripe_subscription_id": "sub_w"}
    actions = conn.execute("select count(*) as n from public.stripe_events where id = 'evt_billing_1'").fetchone()
    assert actions == {"n": 1}
