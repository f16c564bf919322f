"""Onboarding steps, storefront settings (platform-wide uniqueness, validation, publishing, anon
reads), staff invitations with expiry and the audit of team changes."""

from __future__ import annotations

import json
import uuid
from typing import Any

import psycopg
import pytest

from brigade.auth import Claims
from tests.conftest import Api, Factory, Tenant

Conn = psycopg.Connection[dict[str, Any]]


def code(exc: pytest.ExceptionInfo[psycopg.Error]) -> tuple[str | None, str | None]:
    return exc.value.diag.sqlstate, exc.value.diag.message_hint


def set_storefront(api: Api, t: Tenant, **cols: Any) -> None:
    assignments = ", ".join(f"{k} = %s" for k in cols)
    n = api.rowcount(t.claims("owner"), f"update public.storefront_settings set {assignments} where business_id = %s",
                     (*[json.dumps(v) if isinstance(v, dict) else v for v in cols.values()], t.business_id))
    assert n == 1


def subdomain(conn: Conn, t: Tenant) -> str:
    return conn.execute("select subdomain from public.storefront_settings where business_id = %s", (t.business_id,)).fetchone()["subdomain"]  # type: ignore[index]


def test_every_business_gets_a_storefront_on_its_slug(conn: Conn, tenant: Tenant) -> None:
    row = conn.execute("select b.slug, s.subdomain, s.is_published from public.businesses b join public.storefront_settings s "
                       "on s.business_id = b.id where b.id = %s", (tenant.business_id,)).fetchone()
    assert row is not None and row["subdomain"] == row["slug"] and row["is_published"] is False


def test_subdomains_and_custom_domains_are_unique_across_the_platform(api: Api, conn: Conn, factory: Factory) -> None:
    a, b = factory.tenant("Alpha"), factory.tenant("Bravo")
    taken = subdomain(conn, a)
    with pytest.raises(psycopg.Error) as err:
        set_storefront(api, b, subdomain=taken.upper())  # normalised to lower case, so still a clash
    assert code(err) == ("BR712", "domain_taken")

    with pytest.raises(psycopg.Error) as err:
        set_storefront(api, a, custom_domain="order.alpha.example")
    assert code(err) == ("BR716", "feature_not_in_plan")
    for t in (a, b):
        conn.execute("select app.change_plan(%s, 'growth')", (t.business_id,))
    set_storefront(api, a, custom_domain="Order.Alpha.example.")
    assert conn.execute("select custom_domain from public.storefront_settings where business_id = %s",
                        (a.business_id,)).fetchone() == {"custom_domain": "order.alpha.example"}
    with pytest.raises(psycopg.Error) as err:
        set_storefront(api, b, custom_domain="order.alpha.example")
    assert code(err) == ("BR712", "domain_taken")
    with pytest.raises(psycopg.Error) as err:
        set_storefront(api, b, subdomain="order.alpha.example")  # a custom domain is never a subdomain
    assert code(err)[0] == "BR710"

    # a name let go is free again; the one taken is claimed
    set_storefront(api, a, subdomain="alpha-eats", custom_domain=None)
    set_storefront(api, b, subdomain=taken, custom_domain="order.alpha.example")
    claims = conn.execute("select hostname, business_id from app.storefront_hostnames where business_id in (%s, %s) order by hostname",
                          (a.business_id, b.business_id)).fetchall()
    assert claims == sorted([{"hostname": "alpha-eats", "business_id": a.business_id}, {"hostname": taken, "business_id": b.business_id},
                             {"hostname": "order.alpha.example", "business_id": b.business_id}], key=lambda r: r["hostname"])


@pytest.mark.parametrize("value, hint", [
    ("ab", "invalid_subdomain"), ("-abc", "invalid_subdomain"), ("abc-", "invalid_subdomain"), ("a_b_c", "invalid_subdomain"),
    ("xn--abc", "invalid_subdomain"), ("a" * 64, "invalid_subdomain"), ("www", "reserved_subdomain"), ("admin", "reserved_subdomain"),
])
def test_subdomain_validation(api: Api, tenant: Tenant, value: str, hint: str) -> None:
    with pytest.raises(psycopg.Error) as err:
        set_storefront(api, tenant, subdomain=value)
    assert code(err) == ("BR710", hint)


@pytest.mark.parametrize("value", ["localhost", "exa mple.com", "-a.example.com", "a..example.com", "example.c", "http://x.example.com"])
def test_custom_domain_validation(api: Api, conn: Conn, tenant: Tenant, value: str) -> None:
    conn.execute("select app.change_plan(%s, 'growth')", (tenant.business_id,))
    with pytest.raises(psycopg.Error) as err:
        set_storefront(api, tenant, custom_domain=value)
    assert code(err) == ("BR711", "invalid_custom_domain")


@pytest.mark.parametrize("cols", [
    {"theme_colors": {"primary": "red"}}, {"theme_colors": {"shadow": "#000000"}}, {"theme_colors": {"primary": "#12345"}},
    {"logo_url": "http://cdn.example.com/logo.png"}, {"banner_url": "javascript:alert(1)"},
])
def test_theme_and_images_are_validated(api: Api, tenant: Tenant, cols: dict[str, Any]) -> None:
    with pytest.raises(psycopg.Error) as err:
        set_storefront(api, tenant, **cols)
    assert code(err)[0] == "BR713"


def complete_onboarding(api: Api, conn: Conn, t: Tenant) -> None:
    """What the owner (and, for the payment account, the operator) does after creation."""
    owner = t.claims("owner")
    main = t.venues[0]
    api.run(owner, "insert into public.venue_opening_hours (business_id, venue_id, weekday, opens_at, closes_at) "
                   "select %s, %s, d, '00:00', '00:00' from generate_series(0, 6) d", (t.business_id, main))
    api.run(owner, "insert into public.product_categories (business_id, name) values (%s, 'Coffee')", (t.business_id,))
    set_storefront(api, t, theme_colors={"primary": "#112233", "accent": "#FFAA00"}, logo_url="https://cdn.example.com/l.png")
    conn.execute("select app.set_payment_account(%s, 'acct_1TestAccount')", (t.business_id,))


def test_a_storefront_goes_live_only_when_the_required_steps_are_done(api: Api, conn: Conn, tenant: Tenant, operator: Claims) -> None:
    b = tenant.business_id
    status = api.run(tenant.claims("owner"), "select public.onboarding_status(%s) as s", (b,))[0]["s"]
    assert status["missing"] == ["opening_hours", "payment_account", "first_categories", "storefront_theme"]
    assert status["ready"] is False
    with pytest.raises(psycopg.Error) as err:
        set_storefront(api, tenant, is_published=True)
    assert code(err) == ("BR714", "onboarding_incomplete")
    assert "opening_hours, payment_account, first_categories, storefront_theme" in (err.value.diag.message_primary or "")

    complete_onboarding(api, conn, tenant)
    status = api.run(tenant.claims("owner"), "select public.onboarding_status(%s) as s", (b,))[0]["s"]
    assert status["ready"] is True and status["missing"] == []
    optional = next(s for s in status["steps"] if s["step"] == "delivery_radius")
    assert optional == {"step": "delivery_radius", "required": False, "done": False, "completed_at": None}
    recorded = {r["step"] for r in conn.execute("select step from public.onboarding_steps where business_id = %s", (b,))}
    assert recorded == {"details", "plan", "owner", "venue", "opening_hours", "payment_account", "first_categories", "storefront_theme"}

    host = subdomain(conn, tenant)
    assert api.run(Claims.anon(), "select count(*) as n from public.storefront_settings where business_id = %s", (b,)) == [{"n": 0}]
    with pytest.raises(psycopg.Error) as err:
        api.run(Claims.anon(), "select public.get_storefront(%s)", (host,))
    assert code(err) == ("PT404", "storefront_not_found")

    api.run(tenant.claims("manager"), "insert into public.venue_hours_exceptions (business_id, venue_id, on_date, is_closed, note) "
            "values (%s, %s, current_date + 3, true, 'Inventory'), (%s, %s, current_date + 90, true, 'Far away')",
            (b, tenant.venues[0], b, tenant.venues[0]))
    set_storefront(api, tenant, is_published=True)
    rows = api.run(Claims.anon(), "select subdomain, theme_colors from public.storefront_settings where business_id = %s", (b,))
    assert rows == [{"subdomain": host, "theme_colors": {"primary": "#112233", "accent": "#FFAA00"}}]
    front = api.run(Claims.anon(), "select public.get_storefront(%s) as s", (host.upper() + ".",))[0]["s"]
    assert front["business"]["id"] == str(b)
    assert [v["id"] for v in front["venues"]] == [str(tenant.venues[0])]  # the unpublished venue is not shown
    assert len(front["venues"][0]["hours"]) == 7 and front["venues"][0]["is_open_now"] is True
    assert [e["note"] for e in front["venues"][0]["exceptions"]] == ["Inventory"], "the next 60 days' exceptions"

    # suspended: anon sees nothing, the storefront answers 404
    api.run(operator, "select public.admin_set_business_status(%s, 'suspended', 'unpaid invoices')", (b,))
    assert api.run(Claims.anon(), "select count(*) as n from public.storefront_settings where business_id = %s", (b,)) == [{"n": 0}]
    with pytest.raises(psycopg.Error):
        api.run(Claims.anon(), "select public.get_storefront(%s)", (host,))


def invite(api: Api, claims: Claims, t: Tenant, email: str, role: str, venues: list[uuid.UUID] | None = None) -> dict[str, Any]:
    return api.run(claims, "select public.invite_member(%s, %s, %s, %s) as r", (t.business_id, email, role, venues or []))[0]["r"]


def test_invitations_accept_once_with_the_invited_email(api: Api, conn: Conn, factory: Factory, tenant: Tenant) -> None:
    inv = invite(api, tenant.claims("owner"), tenant, "New.Barista@Example.test", "staff", [tenant.venues[0]])
    assert inv["email"] == "new.barista@example.test"
    stored = conn.execute("select token_hash, expires_at - created_at as valid from public.staff_invitations where id = %s",
                          (inv["invitation_id"],)).fetchone()
    assert stored is not None and inv["token"].split(".")[1] not in stored["token_hash"] and stored["valid"].days == 7
    event = conn.execute("select message -> 'payload' as p from pgmq.q_brigade_events where message ->> 'topic' = 'staff.invited'").fetchone()
    assert event is not None and event["p"]["token"] == inv["token"]

    stranger = Claims.user(factory.user("someone@example.test"), email="someone@example.test")
    with pytest.raises(psycopg.Error) as err:
        api.run(stranger, "select public.accept_invitation(%s)", (inv["token"],))
    assert code(err) == ("BR722", "invitation_email_mismatch")
    forged = inv["token"].split(".")[0] + "." + "0" * 48
    invited = Claims.user(factory.user("new.barista@example.test"), email="new.barista@example.test")
    with pytest.raises(psycopg.Error) as err:
        api.run(invited, "select public.accept_invitation(%s)", (forged,))
    assert code(err) == ("PT404", "invitation_not_found")

    joined = api.run(invited, "select public.accept_invitation(%s) as r", (inv["token"],))[0]["r"]
    assert joined["role"] == "staff" and joined["already_accepted"] is False
    assert api.run(invited, "select app.has_venue_access(%s, %s) as a, app.has_venue_access(%s, %s) as b",
                   (tenant.business_id, tenant.venues[0], tenant.business_id, tenant.venues[1])) == [{"a": True, "b": False}]
    assert api.run(invited, "select public.accept_invitation(%s) as r", (inv["token"],))[0]["r"]["already_accepted"] is True
    other = Claims.user(factory.user("new.barista2@example.test"), email="new.barista@example.test")
    with pytest.raises(psycopg.Error) as err:
        api.run(other, "select public.accept_invitation(%s)", (inv["token"],))
    assert code(err) == ("BR721", "invitation_used")
    with pytest.raises(psycopg.Error) as err:
        invite(api, tenant.claims("owner"), tenant, "new.barista@example.test", "manager")
    assert code(err) == ("BR724", "already_member")


def test_invitations_expire(api: Api, conn: Conn, factory: Factory, tenant: Tenant) -> None:
    inv = invite(api, tenant.claims("owner"), tenant, "late@example.test", "driver")
    invited = Claims.user(factory.user("late@example.test"), email="late@example.test")
    # one second before expiry it still works (in a rolled-back copy of the attempt), after it does not
    conn.execute("update public.staff_invitations set expires_at = now() - interval '1 second' where id = %s", (inv["invitation_id"],))
    with pytest.raises(psycopg.Error) as err:
        api.run(invited, "select public.accept_invitation(%s)", (inv["token"],))
    assert code(err) == ("BR720", "invitation_expired")
    assert conn.execute("select count(*) as n from public.memberships where business_id = %s and role = 'driver'",
                        (tenant.business_id,)).fetchone() == {"n": 1}
    conn.execute("update public.staff_invitations set expires_at = now() + interval '1 minute' where id = %s", (inv["invitation_id"],))
    assert api.run(invited, "select public.accept_invitation(%s) as r", (inv["token"],))[0]["r"]["role"] == "driver"

    # a re-invitation replaces the pending one; a revoked invitation cannot be used
    first = invite(api, tenant.claims("owner"), tenant, "twice@example.test", "staff")
    second = invite(api, tenant.claims("owner"), tenant, "twice@example.test", "staff")
    twice = Claims.user(factory.user("twice@example.test"), email="twice@example.test")
    with pytest.raises(psycopg.Error) as err:
        api.run(twice, "select public.accept_invitation(%s)", (first["token"],))
    assert code(err) == ("BR721", "invitation_revoked")
    assert api.run(tenant.claims("owner"), "select public.revoke_invitation(%s) as r", (second["invitation_id"],)) == [{"r": True}]
    with pytest.raises(psycopg.Error) as err:
        api.run(twice, "select public.accept_invitation(%s)", (second["token"],))
    assert code(err) == ("BR721", "invitation_revoked")


@pytest.mark.parametrize("inviter, role, allowed", [
    ("owner", "owner", True), ("owner", "manager", True), ("manager", "manager", False), ("manager", "staff", True),
    ("manager", "driver", True), ("staff", "staff", False), ("driver", "driver", False),
])
def test_who_may_invite_whom(api: Api, tenant: Tenant, inviter: str, role: str, allowed: bool) -> None:
    try:
        invite(api, tenant.claims(inviter), tenant, f"{uuid.uuid4().hex[:8]}@example.test", role)
    except psycopg.errors.InsufficientPrivilege:
        assert not allowed
        return
    assert allowed


def test_pending_invitations_count_toward_the_team_limit(api: Api, conn: Conn, tenant: Tenant) -> None:
    limit = conn.execute("select max_staff from public.plans where key = 'starter'").fetchone()["max_staff"]  # type: ignore[index]
    for n in range(limit - 3):  # owner, manager and staff already (drivers do not count)
        invite(api, tenant.claims("owner"), tenant, f"p{n}@example.test", "staff")
    with pytest.raises(psycopg.Error) as err:
        invite(api, tenant.claims("owner"), tenant, "one-too-many@example.test", "staff")
    assert code(err) == ("BR702", "staff_limit")
    conn.execute("update public.staff_invitations set expires_at = now() - interval '1 day' "
                 "where business_id = %s and email = 'p0@example.test'", (tenant.business_id,))
    invite(api, tenant.claims("owner"), tenant, "one-too-many@example.test", "staff")  # an expired one frees its seat
    invite(api, tenant.claims("owner"), tenant, "a-driver@example.test", "driver")  # drivers are not counted


def test_team_changes_are_audited(api: Api, conn: Conn, tenant: Tenant) -> None:
    owner = tenant.claims("owner")
    api.run(owner, "update public.memberships set role = 'manager' where business_id = %s and user_id = %s",
            (tenant.business_id, tenant.users["staff"]))
    api.run(owner, "delete from public.memberships where business_id = %s and user_id = %s", (tenant.business_id, tenant.users["driver"]))
    rows = conn.execute("select action, details, actor_user_id from public.audit_log where business_id = %s and action like 'member.%%' "
                        "and action <> 'member.added' order by id", (tenant.business_id,)).fetchall()
    assert [(r["action"], r["details"].get("after"), r["actor_user_id"]) for r in rows] == [
        ("member.role_changed", "manager", tenant.users["owner"]), ("member.removed", None, tenant.users["owner"])]
    assert api.rowcount(tenant.claims("manager"), "update public.memberships set role = 'owner' where business_id = %s and user_id = %s",
                        (tenant.business_id, tenant.users["manager"])) == 0


def test_the_sql_console_is_the_operator_and_api_roles_are_not(api: Api, db_dsn: str, tenant: Tenant) -> None:
    """psql / the Supabase SQL editor as postgres, without JWT claims, runs the operator's RPCs and views."""
    with psycopg.connect(db_dsn, autocommit=True, row_factory=psycopg.rows.dict_row) as console:
        created = console.execute("select public.admin_create_business(%s) as r", (json.dumps(
            {"name": "Console Deli", "slug": "console-deli", "owner_email": "deli@example.test"}),)).fetchone()["r"]  # type: ignore[index]
        listed = console.execute("select slug, plan_key from public.operator_businesses where id = %s", (created["business_id"],)).fetchall()
        assert listed == [{"slug": "console-deli", "plan_key": "starter"}]
        assert console.execute("select active_businesses from public.operator_platform_metrics").fetchone()["active_businesses"] >= 2  # type: ignore[index]
        audit = console.execute("select actor_role from public.audit_log where business_id = %s and action = 'business.created'",
                                (created["business_id"],)).fetchone()
        assert audit == {"actor_role": "postgres"}
    assert api.run(tenant.claims("owner"), "select count(*) as n from public.operator_businesses") == [{"n": 0}]
    assert api.run(Claims.service(), "select count(*) as n from public.operator_businesses")[0]["n"] >= 2
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        api.run(tenant.claims("owner"), "select public.admin_create_business('{\"name\": \"X\", \"slug\": \"xx-owner\"}')")
