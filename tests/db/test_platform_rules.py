"""Platform rules held by the database: protected columns, owners, append-only audit, module gates
and the subscription lines they drive."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from brigade.auth import Claims
from tests.conftest import Api, Factory, Tenant


@pytest.fixture
def tenant(factory: Factory) -> Tenant:
    return factory.tenant("Gamma Grill", {"ordering": True})


def sqlstate_of(fn: Any) -> str | None:
    try:
        fn()
    except psycopg.Error as exc:
        return exc.sqlstate
    return None


def test_owner_renames_but_cannot_switch_modules_or_status(api: Api, tenant: Tenant, operator: Claims) -> None:
    owner = tenant.claims("owner")
    assert api.rowcount(owner, "update public.businesses set name = 'Gamma Grill & Bar' where id = %s", (tenant.business_id,)) == 1
    for column, value in (("modules_json", '{"ordering": true, "crm": true}'), ("status", "suspended"), ("slug", "stolen")):
        state = sqlstate_of(lambda: api.run(owner, f"update public.businesses set {column} = %s where id = %s",
                                            (value, tenant.business_id)))
        assert state == "42501", column
    assert sqlstate_of(lambda: api.run(tenant.claims("manager"), "update public.businesses set name = 'x' where id = %s",
                                       (tenant.business_id,))) is None
    assert api.run(owner, "select name from public.businesses")[0]["name"] == "Gamma Grill & Bar"
    assert api.rowcount(operator, "update public.businesses set status = 'suspended' where id = %s", (tenant.business_id,)) == 1


def test_modules_json_is_validated(conn: psycopg.Connection[dict[str, Any]], tenant: Tenant) -> None:
    with pytest.raises(psycopg.Error) as unknown:
        conn.execute("update public.businesses set modules_json = '{\"teleport\": true}' where id = %s", (tenant.business_id,))
    assert unknown.value.sqlstate == "BR001"
    with pytest.raises(psycopg.Error) as not_bool:
        conn.execute("update public.businesses set modules_json = '{\"crm\": \"yes\"}' where id = %s", (tenant.business_id,))
    assert not_bool.value.sqlstate == "BR003"


def test_a_business_keeps_an_owner(api: Api, conn: psycopg.Connection[dict[str, Any]], tenant: Tenant) -> None:
    owner = tenant.claims("owner")
    assert sqlstate_of(lambda: api.run(owner, "delete from public.memberships where user_id = %s", (tenant.users["owner"],))) == "BR004"
    assert sqlstate_of(lambda: api.run(owner, "update public.memberships set role = 'staff' where user_id = %s",
                                       (tenant.users["owner"],))) == "BR004"
    # With a second owner, the first may step down.
    second = Factory(conn).user()
    api.run(owner, "insert into public.memberships (business_id, user_id, role) values (%s, %s, 'owner')", (tenant.business_id, second))
    assert api.rowcount(owner, "update public.memberships set role = 'manager' where user_id = %s", (tenant.users["owner"],)) == 1


def test_owners_cannot_be_limited_to_venues(api: Api, conn: psycopg.Connection[dict[str, Any]], tenant: Tenant) -> None:
    membership = conn.execute("select id from public.memberships where user_id = %s", (tenant.users["owner"],)).fetchone()
    assert membership is not None
    state = sqlstate_of(lambda: api.run(tenant.claims("owner"),
                                        "insert into public.membership_venues (business_id, membership_id, venue_id) values (%s, %s, %s)",
                                        (tenant.business_id, membership["id"], tenant.venues[0])))
    assert state == "BR005"


def test_staff_cannot_manage_the_team(api: Api, conn: psycopg.Connection[dict[str, Any]], tenant: Tenant) -> None:
    newcomer = Factory(conn).user()
    for role in ("manager", "staff", "driver"):
        state = sqlstate_of(lambda: api.run(tenant.claims(role),
                                            "insert into public.memberships (business_id, user_id, role) values (%s, %s, 'staff')",
                                            (tenant.business_id, newcomer)))
        assert state == "42501", role
    api.run(tenant.claims("owner"), "insert into public.memberships (business_id, user_id, role) values (%s, %s, 'staff')",
            (tenant.business_id, newcomer))
    assert api.run(Claims.user(newcomer), "select role from public.memberships") == [{"role": "staff"}]


@pytest.mark.parametrize("who", ["superuser", "service_role", "operator", "owner"])
def test_audit_log_is_append_only_for_everyone(
    api: Api, conn: psycopg.Connection[dict[str, Any]], tenant: Tenant, operator: Claims, who: str
) -> None:
    api.run(operator, "select public.set_business_module(%s, 'crm', true)", (tenant.business_id,))
    assert conn.execute("select count(*) as n from public.audit_log where business_id = %s", (tenant.business_id,)).fetchone() == {"n": 1}
    for statement in ("update public.audit_log set action = 'forged' where business_id = %s",
                      "delete from public.audit_log where business_id = %s"):
        if who == "superuser":
            with pytest.raises(psycopg.Error) as exc:
                conn.execute(statement, (tenant.business_id,))
            state = exc.value.sqlstate
        else:
            claims = {"service_role": Claims.service(), "operator": operator, "owner": tenant.claims("owner")}[who]
            state = sqlstate_of(lambda: api.run(claims, statement, (tenant.business_id,)))
        assert state in {"BR006", "42501"}, (who, statement, state)
    assert conn.execute("select action from public.audit_log where business_id = %s", (tenant.business_id,)).fetchall() == [
        {"action": "module.enabled"}]


def lines(conn: psycopg.Connection[dict[str, Any]], business_id: Any) -> dict[str, int]:
    rows = conn.execute("select kind, item_key, unit_amount_cents from public.business_subscription_lines "
                        "where business_id = %s and ends_at is null", (business_id,)).fetchall()
    return {f"{r['kind']}:{r['item_key']}": r["unit_amount_cents"] for r in rows}


def total(conn: psycopg.Connection[dict[str, Any]], business_id: Any) -> int:
    row = conn.execute("select monthly_total_cents from public.business_subscriptions where business_id = %s", (business_id,)).fetchone()
    assert row is not None
    return row["monthly_total_cents"]


def test_module_toggle_audits_and_rebills(api: Api, conn: psycopg.Connection[dict[str, Any]], tenant: Tenant, operator: Claims) -> None:
    prices = {r["key"]: r["monthly_price_cents"] for r in conn.execute("select key, monthly_price_cents from public.modules").fetchall()}
    plan = conn.execute("select monthly_price_cents from public.plans where key = 'starter'").fetchone()
    assert plan is not None
    assert lines(conn, tenant.business_id) == {"plan:starter": plan["monthly_price_cents"], "module:ordering": prices["ordering"]}

    result = api.run(operator, "select public.set_business_module(%s, 'crm', true) as r", (tenant.business_id,))[0]["r"]
    assert result["changed"] and result["modules"]["crm"] is True
    assert result["monthly_total_cents"] == plan["monthly_price_cents"] + prices["ordering"] + prices["crm"]
    assert lines(conn, tenant.business_id)["module:crm"] == prices["crm"]
    assert total(conn, tenant.business_id) == result["monthly_total_cents"]

    again = api.run(operator, "select public.set_business_module(%s, 'crm', true) as r", (tenant.business_id,))[0]["r"]
    assert again["changed"] is False

    api.run(operator, "select public.set_business_module(%s, 'crm', false)", (tenant.business_id,))
    assert "module:crm" not in lines(conn, tenant.business_id)
    closed = conn.execute("select count(*) as n from public.business_subscription_lines where business_id = %s "
                          "and item_key = 'crm' and ends_at is not null", (tenant.business_id,)).fetchone()
    assert closed == {"n": 1}, "the switched-off module's line is closed, not deleted"

    audit = conn.execute("select action, actor_role, actor_user_id, details from public.audit_log where business_id = %s order by id",
                         (tenant.business_id,)).fetchall()
    assert [a["action"] for a in audit] == ["module.enabled", "module.disabled"]
    assert all(a["actor_role"] == "platform_admin" and str(a["actor_user_id"]) == operator.sub for a in audit)
    assert audit[1]["details"]["module"] == "crm" and audit[1]["details"]["after"]["crm"] is False

    events = conn.execute("select message from pgmq.q_brigade_events order by msg_id").fetchall()
    assert [(e["message"]["topic"], e["message"]["payload"]) for e in events] == [
        ("business.module_changed", {"module": "crm", "enabled": True}),
        ("business.module_changed", {"module": "crm", "enabled": False})]


def test_repricing_a_module_reopens_its_line(api: Api, conn: psycopg.Connection[dict[str, Any]], tenant: Tenant, operator: Claims) -> None:
    api.run(operator, "select public.set_business_module(%s, 'crm', true)", (tenant.business_id,))
    conn.execute("update public.modules set monthly_price_cents = 5000 where key = 'crm'")
    conn.execute("select app.recalculate_subscription(%s)", (tenant.business_id,))
    assert lines(conn, tenant.business_id)["module:crm"] == 5000


@pytest.mark.parametrize(("args", "state"), [
    (("crm", True), None),
    (("teleport", True), "BR001"),
    (("crm", None), "22023"),
])
def test_module_switch_input(api: Api, tenant: Tenant, operator: Claims, args: tuple[str, Any], state: str | None) -> None:
    assert sqlstate_of(lambda: api.run(operator, "select public.set_business_module(%s, %s, %s)",
                                       (tenant.business_id, *args))) == state


def test_only_the_operator_switches_modules(api: Api, tenant: Tenant, operator: Claims) -> None:
    for role in ("owner", "manager"):
        assert sqlstate_of(lambda: api.run(tenant.claims(role), "select public.set_business_module(%s, 'crm', true)",
                                           (tenant.business_id,))) == "42501"
    assert sqlstate_of(lambda: api.run(Claims.anon(), "select public.set_business_module(%s, 'crm', true)",
                                       (tenant.business_id,))) == "42501"
    missing = "00000000-0000-4000-8000-00000000dead"
    assert sqlstate_of(lambda: api.run(operator, "select public.set_business_module(%s, 'crm', true)", (missing,))) == "PT404"


GATED_TABLE = """
create table public.gated_notes (
  business_id uuid not null references public.businesses (id),
  id uuid not null default gen_random_uuid(),
  body text not null,
  primary key (business_id, id)
);
alter table public.gated_notes enable row level security;
revoke all on public.gated_notes from anon, authenticated;
grant select on public.gated_notes to authenticated;
create policy "members read notes while crm is on" on public.gated_notes for select to authenticated
  using (app.module_enabled(business_id, 'crm') and business_id in (select app.my_business_ids()));
"""


def test_a_disabled_module_hides_its_rows(api: Api, conn: psycopg.Connection[dict[str, Any]], tenant: Tenant, operator: Claims) -> None:
    """The gate pattern every module table uses, shown on an example table."""
    conn.execute(GATED_TABLE)
    conn.execute("insert into public.gated_notes (business_id, body) values (%s, 'likes oat milk'), (%s, 'VIP')",
                 (tenant.business_id, tenant.business_id))
    owner = tenant.claims("owner")
    assert api.run(owner, "select count(*) as n from public.gated_notes") == [{"n": 0}]
    assert api.run(owner, "select public.business_modules(%s) -> 'crm' as on", (tenant.business_id,)) == [{"on": False}]
    api.run(operator, "select public.set_business_module(%s, 'crm', true)", (tenant.business_id,))
    assert api.run(owner, "select count(*) as n from public.gated_notes") == [{"n": 2}]
    assert api.run(owner, "select public.business_modules(%s) -> 'crm' as on", (tenant.business_id,)) == [{"on": True}]
    api.run(operator, "select public.set_business_module(%s, 'crm', false)", (tenant.business_id,))
    assert api.run(owner, "select count(*) as n from public.gated_notes") == [{"n": 0}]
    assert conn.execute("select count(*) as n from public.gated_notes").fetchone() == {"n": 2}, "hidden, not deleted"


def test_suspension_closes_every_module(api: Api, conn: psycopg.Connection[dict[str, Any]], tenant: Tenant, operator: Claims) -> None:
    assert api.run(operator, "select app.module_enabled(%s, 'ordering') as on", (tenant.business_id,)) == [{"on": True}]
    api.run(operator, "update public.businesses set status = 'suspended' where id = %s", (tenant.business_id,))
    assert api.run(operator, "select app.module_enabled(%s, 'ordering') as on", (tenant.business_id,)) == [{"on": False}]
    assert api.run(Claims.anon(), "select count(*) as n from public.venues where business_id = %s", (tenant.business_id,)) == [{"n": 0}]


def test_require_module_raises_pt403(api: Api, tenant: Tenant) -> None:
    assert sqlstate_of(lambda: api.run(Claims.anon(), "select app.require_module(%s, 'voice')", (tenant.business_id,))) == "PT403"
    assert sqlstate_of(lambda: api.run(Claims.anon(), "select app.require_module(%s, 'ordering')", (tenant.business_id,))) is None


def test_business_modules_is_for_members(api: Api, factory: Factory, tenant: Tenant) -> None:
    outsider = factory.tenant("Delta Deli")
    state = sqlstate_of(lambda: api.run(outsider.claims("owner"), "select public.business_modules(%s)", (tenant.business_id,)))
    assert state == "42501"
    modules = api.run(tenant.claims("staff"), "select public.business_modules(%s) as m", (tenant.business_id,))[0]["m"]
    assert modules == {"ordering": True, "bookings": False, "crm": False, "loyalty": False, "campaigns": False,
                       "voice": False, "dispatch": False}


def test_time_zone_names_are_checked_against_the_zone_database(conn: psycopg.Connection[dict[str, Any]], factory: Factory) -> None:
    known = conn.execute("select count(*) as n from app.time_zone_names").fetchone()
    listed = conn.execute("select count(distinct name) as n from pg_timezone_names").fetchone()
    assert known == listed and known is not None and known["n"] > 300
    assert conn.execute("select app.is_time_zone('Europe/Sofia') as a, app.is_time_zone('Mars/Olympus') as b").fetchone() == {"a": True, "b": False}
    conn.execute("delete from app.time_zone_names where name = 'Asia/Kathmandu'")  # a zone newer than the copy is still valid
    assert conn.execute("select app.is_time_zone('Asia/Kathmandu') as ok").fetchone() == {"ok": True}
    b = factory.business()
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute("insert into public.venues (business_id, name, slug, time_zone) values (%s, 'X', 'x-tz', 'Europe/Nowhere')", (b,))
