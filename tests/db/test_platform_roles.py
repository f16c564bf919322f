"""The permission matrix (owner, manager, staff, driver — and a signed-in customer who is no member)
over every table and RPC of issue 9, the way PostgREST runs requests."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest
from psycopg import sql

from brigade.auth import Claims
from tests.conftest import Api, Factory
from tests.db.tenant_rows import TenantRows
from tests.db.tenant_rows import platform as platform_rows
from tests.ordering_kit import Menu, order_payload, session_completed

ROLES = ("owner", "manager", "staff", "driver", "customer")

# table -> roles that read their own business's rows (none of them are public in this fixture)
READ = {
    "business_subscriptions": {"owner"},
    "billing_invoices": {"owner"},
    "billing_invoice_lines": {"owner"},
    "storefront_settings": {"owner", "manager", "staff", "driver"},
    "onboarding_steps": {"owner", "manager"},
    "staff_invitations": {"owner", "manager"},
    "platform_fees": {"owner"},
    "business_payouts": {"owner"},
    "audit_log": {"owner"},
    "customer_addresses": {"owner", "manager", "staff", "customer"},
    "customer_payment_methods": {"customer"},
    "product_reviews": {"owner", "manager", "staff", "customer"},
    "order_reviews": {"owner", "manager", "staff", "customer"},
}

# RPC -> roles allowed
RPC = {
    "select public.change_plan(%(b)s, 'starter')": {"owner"},
    "select public.billing_overview(%(b)s)": {"owner"},
    "select public.onboarding_status(%(b)s)": {"owner", "manager"},
    "select public.invite_member(%(b)s, 'x-' || gen_random_uuid() || '@example.test', 'staff')": {"owner", "manager"},
    "select public.invite_member(%(b)s, 'y-' || gen_random_uuid() || '@example.test', 'manager')": {"owner"},
    "select public.moderate_review('order', %(review)s, 'approved')": {"owner", "manager"},
    "select public.generate_payouts(now() - interval '1 day', now(), %(b)s)": set(),
    "select public.admin_set_business_status(%(b)s, 'active')": set(),
    "select public.set_payment_account(%(b)s, 'acct_abcdefgh')": set(),
    "select app.set_subscription_status(%(b)s, 'active')": set(),
    "select public.admin_create_business('{\"name\": \"X\", \"slug\": \"x-role-test\"}')": set(),
}


@pytest.fixture
def world(api: Api, conn: psycopg.Connection[dict[str, Any]], factory: Factory, menu: Menu) -> dict[str, Any]:
    t = menu.tenant
    signed_in = Claims.user(factory.user("cust@example.test"), email="cust@example.test")
    order = api.run(signed_in, "select public.place_order(%s) as r", (json.dumps(order_payload(menu)),))[0]["r"]
    conn.execute("select app.apply_stripe_event(%s)", (json.dumps(session_completed(order, "cs_roles", "pi_roles")),))
    customer = conn.execute("select customer_id from public.orders where id = %s", (order["order_id"],)).fetchone()["customer_id"]  # type: ignore[index]
    conn.execute("insert into public.venue_opening_hours (business_id, venue_id, weekday, opens_at, closes_at) "
                 "select %s, %s, d, '00:00', '00:00' from generate_series(0, 6) d", (t.business_id, t.venues[0]))
    platform_rows.seed(TenantRows(conn=conn, api=api, factory=factory, tenant=t, menu=menu, orders=[order], customer=customer))
    conn.execute("update public.storefront_settings set is_published = false where business_id = %s", (t.business_id,))
    conn.execute("update public.product_reviews set status = 'pending' where business_id = %s", (t.business_id,))
    conn.execute("update public.order_reviews set status = 'pending' where business_id = %s", (t.business_id,))
    review = conn.execute("select id from public.order_reviews where business_id = %s", (t.business_id,)).fetchone()["id"]  # type: ignore[index]
    claims = {role: t.claims(role) for role in ROLES if role != "customer"} | {"customer": signed_in}
    return {"b": t.business_id, "claims": claims, "review": review}


@pytest.mark.parametrize("table", sorted(READ))
def test_who_reads_what(api: Api, conn: psycopg.Connection[dict[str, Any]], world: dict[str, Any], table: str) -> None:
    total = conn.execute(sql.SQL("select count(*) as n from public.{} where business_id = %s").format(sql.Identifier(table)), (world["b"],)).fetchone()
    assert total and total["n"] > 0, f"the fixture has no {table} rows"
    for role in ROLES:
        rows = api.run(world["claims"][role], sql.SQL("select count(*) as n from public.{} where business_id = %s").format(sql.Identifier(table)),
                       (world["b"],))
        assert (rows[0]["n"] > 0) == (role in READ[table]), f"{role} {'cannot' if role in READ[table] else 'can'} read {table}"


@pytest.mark.parametrize("call", sorted(RPC))
def test_who_calls_what(api: Api, world: dict[str, Any], call: str) -> None:
    for role in ROLES:
        try:
            api.run(world["claims"][role], call, {"b": world["b"], "review": world["review"]})
            allowed = True
        except (psycopg.errors.InsufficientPrivilege, psycopg.errors.RaiseException) as exc:
            allowed = False
            assert exc.diag.sqlstate in ("42501", "PT404"), f"{role}: {call} failed with {exc.diag.sqlstate}: {exc}"
        except psycopg.Error as exc:
            assert exc.diag.sqlstate == "PT404", f"{role}: {call} failed with {exc.diag.sqlstate}: {exc}"
            allowed = False
        assert allowed == (role in RPC[call]), f"{role} {'may not' if role in RPC[call] else 'may'} call {call}"


def test_who_writes_what(api: Api, world: dict[str, Any]) -> None:
    b, claims = world["b"], world["claims"]
    for role in ROLES:
        edited = api.rowcount(claims[role], "update public.storefront_settings set tagline = %s where business_id = %s", (role, b))
        assert (edited == 1) == (role in ("owner", "manager")), f"{role} edits the storefront: {edited}"
        promoted = api.rowcount(claims[role], "update public.memberships set role = role where business_id = %s", (b,))
        assert (promoted > 0) == (role == "owner"), f"{role} changes roles"
        for table in ("staff_invitations", "billing_invoices", "platform_fees", "business_payouts", "onboarding_steps"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                api.run(claims[role], sql.SQL("insert into public.{} (business_id) values (%s)").format(sql.Identifier(table)), (b,))
    csv_rows = {role: api.run(claims[role], "select public.payouts_csv(%s) as t", (b,))[0]["t"].count("\n") - 1 for role in ("owner", "manager", "customer")}
    assert csv_rows == {"owner": 1, "manager": 0, "customer": 0}
