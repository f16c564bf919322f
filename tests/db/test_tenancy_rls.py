"""Tenant isolation, walked over every table in `public`, the way PostgREST runs queries.

Adding a table to `public` automatically adds it to these walks: it must either carry business_id
(or be `businesses`) or be listed as a platform catalogue, and the two-tenant fixture must put rows
for both tenants in it, or test_every_public_table_is_covered fails.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.rows import dict_row

from brigade.auth import Claims
from brigade.localdb import Cluster
from tests.conftest import Api, DatabaseSupply, Factory, Tenant, _dsn
from tests.db.tenant_rows import TenantRows, declared, modules
from tests.ordering_kit import build_menu, order_payload, session_completed

# Platform-wide reference tables: readable by everyone, writable by no API role.
CATALOGUE_TABLES = {"plans", "modules"} | declared("CATALOGUE")
# Tables only the service role touches (no API role has any privilege on them).
SERVICE_ONLY_TABLES = {"stripe_events", "consent_tokens"} | declared("SERVICE_ONLY")
# What anon may read, and which rows: a filter that must hold for every row anon sees.
ANON_READABLE: dict[str, str] = {
    "plans": "true",
    "modules": "true",
    "venues": "is_published",
    "rewards": "is_active and app.module_enabled(business_id, 'loyalty')",
    **declared("ANON_READABLE"),
}
MEMBER_ROLES = ("owner", "manager", "staff", "driver")


def public_tables(conn: psycopg.Connection[dict[str, Any]]) -> list[str]:
    rows = conn.execute("select tablename from pg_tables where schemaname = 'public' order by 1").fetchall()
    return [r["tablename"] for r in rows]


def columns(conn: psycopg.Connection[dict[str, Any]], table: str) -> list[dict[str, Any]]:
    return conn.execute(
        "select column_name, is_identity, identity_generation, is_generated from information_schema.columns "
        "where table_schema = 'public' and table_name = %s order by ordinal_position", (table,)).fetchall()


def tenant_column(conn: psycopg.Connection[dict[str, Any]], table: str) -> str | None:
    if table == "businesses":
        return "id"
    names = {c["column_name"] for c in columns(conn, table)}
    return "business_id" if "business_id" in names else None


def venue_column(conn: psycopg.Connection[dict[str, Any]], table: str) -> str | None:
    if table == "venues":
        return "id"
    names = {c["column_name"] for c in columns(conn, table)}
    return "venue_id" if "venue_id" in names else None


@dataclass
class World:
    """The two tenants, built once into a template of their own; each test gets a fresh copy of it."""

    supply: DatabaseSupply
    tenants: tuple[Tenant, Tenant]


@pytest.fixture(scope="session")
def rls_world(pg_cluster: Cluster, template_db: str) -> Iterator[World]:
    name = "brigade_template_rls"
    with psycopg.connect(_dsn(pg_cluster, "postgres"), autocommit=True) as admin:
        admin.execute(sql.SQL("create database {} template {} strategy = file_copy").format(sql.Identifier(name), sql.Identifier(template_db)))
    with psycopg.connect(_dsn(pg_cluster, name), row_factory=dict_row, autocommit=True) as conn:
        api = Api(_dsn(pg_cluster, name))
        try:
            tenants = build_tenants(Factory(conn), conn, api)
        finally:
            api.close()
    with psycopg.connect(_dsn(pg_cluster, "postgres"), autocommit=True) as admin:
        admin.execute("update pg_database set datistemplate = true where datname = %s", (name,))
    supply = DatabaseSupply(pg_cluster, name)
    yield World(supply, tenants)
    supply.close()


@pytest.fixture
def db_dsn(pg_cluster: Cluster, rls_world: World) -> Iterator[str]:
    """This module's tests start from a copy of the two-tenant template (the walks only read, or are refused)."""
    name = rls_world.supply.take()
    yield _dsn(pg_cluster, name)
    rls_world.supply.give_back(name)


@pytest.fixture
def tenants(rls_world: World) -> tuple[Tenant, Tenant]:
    return rls_world.tenants


def build_tenants(factory: Factory, conn: psycopg.Connection[dict[str, Any]], api: Api) -> tuple[Tenant, Tenant]:
    """Two businesses with rows in every tenant table (extend this when a module adds tables)."""
    a = factory.tenant("Alpha Diner", {"ordering": True})
    b = factory.tenant("Bravo Bakery", {"ordering": True})
    for t in (a, b):
        conn.execute("select app.set_business_module(%s, 'crm', true)", (t.business_id,))  # audit_log rows
        menu = build_menu(conn, t)
        main, back = t.venues
        conn.execute("insert into public.loyalty_programs (business_id, points_per_currency_unit) values (%s, 2)", (t.business_id,))
        for venue in (main, back):
            conn.execute("insert into public.venue_opening_hours (business_id, venue_id, weekday, opens_at, closes_at) "
                         "select %s, %s, d, '00:00', '00:00' from generate_series(0, 6) d", (t.business_id, venue))
            conn.execute("insert into public.venue_hours_exceptions (business_id, venue_id, on_date, is_closed) "
                         "values (%s, %s, '2030-12-25', true)", (t.business_id, venue))
            conn.execute("insert into public.venue_products (business_id, venue_id, product_id, is_available, unavailable_reason) "
                         "values (%s, %s, %s, true, null)", (t.business_id, venue, menu.products["croissant"]))
        back_stock = conn.execute("insert into public.stock_items (business_id, venue_id, sku, name) values (%s, %s, 'milk', 'Milk') "
                                  "returning id", (t.business_id, back)).fetchone()
        conn.execute("insert into public.stock_movements (business_id, venue_id, stock_item_id, delta, reason) values (%s, %s, %s, 3, 'count')",
                     (t.business_id, back, back_stock["id"]))  # type: ignore[index]
        conn.execute("update public.venues set is_published = true where id = %s", (back,))
        orders = [api.run(Claims.anon(), "select public.place_order(%s) as r",
                          (json.dumps(order_payload(menu, venue_id=str(v))),))[0]["r"] for v in (main, back)]
        conn.execute("update public.venues set is_published = false where id = %s", (back,))
        for n, order in enumerate(orders):
            conn.execute("select app.apply_stripe_event(%s)", (json.dumps(session_completed(order, f"cs_{t.business_id}_{n}", f"pi_{t.business_id}_{n}")),))
        refund = api.run(t.claims("owner"), "select public.request_refund(%s, 100) as r", (orders[0]["order_id"],))[0]["r"]
        conn.execute("select app.record_refund(%s, %s, %s, %s, 'succeeded', 100, null)",
                     (t.business_id, orders[0]["order_id"], refund["refund_id"], f"re_{t.business_id}"))
        # the CRM dossier
        customer = conn.execute("select customer_id from public.orders where id = %s", (orders[0]["order_id"],)).fetchone()["customer_id"]  # type: ignore[index]
        staff = t.claims("staff")
        api.run(staff, "insert into public.customer_tags (business_id, customer_id, tag) values (%s, %s, 'VIP')", (t.business_id, customer))
        api.run(staff, "insert into public.customer_notes (business_id, customer_id, venue_id, body, author_id) values (%s, %s, %s, 'window seat', %s)",
                (t.business_id, customer, main, t.users["staff"]))
        api.run(staff, "insert into public.customer_preferences (business_id, customer_id, kind, value) values (%s, %s, 'allergen', 'Peanuts')",
                (t.business_id, customer))
        api.run(staff, "select public.set_consent(%s, 'EMAIL_MARKETING', true)", (customer,))
        conn.execute("update public.venues set require_double_opt_in = true where id = %s", (main,))
        api.run(staff, "select public.set_consent(%s, 'SMS_MARKETING', true, %s)", (customer, main))  # a consent token
        conn.execute("insert into public.customer_delete_requests (business_id, customer_id) values (%s, %s)", (t.business_id, customer))
        conn.execute("insert into public.crm_venue_cutoffs (business_id, venue_id, cohort_size, recency_days, frequency, monetary) "
                     "values (%s, %s, 30, '{1,2,3,4}', '{1,2,3,4}', '{1,2,3,4}')", (t.business_id, back))
        conn.execute("select app.recompute_segment(business_id, id) from public.segments where business_id = %s", (t.business_id,))
        # rewards: a tier, a reward and a voucher
        conn.execute("insert into public.loyalty_tiers (business_id, name, min_spend_cents, multiplier) values (%s, 'Gold', 1000, 1.5)", (t.business_id,))
        conn.execute("select app.recompute_tiers(%s)", (t.business_id,))
        reward = conn.execute("insert into public.rewards (business_id, name, kind, points_cost, product_id) values (%s, 'Free croissant', "
                              "'free_product', 5, %s) returning id", (t.business_id, menu.products["croissant"])).fetchone()["id"]  # type: ignore[index]
        conn.execute("select app.redeem_reward(%s, %s)", (reward, customer))
        # every other module's tables (tests/db/tenant_rows/)
        for mod in modules():
            mod.seed(TenantRows(conn=conn, api=api, factory=factory, tenant=t, menu=menu, orders=orders, customer=customer))
    return a, b


def test_every_public_table_is_covered(conn: psycopg.Connection[dict[str, Any]], tenants: tuple[Tenant, Tenant]) -> None:
    a, b = tenants
    for table in public_tables(conn):
        rls = conn.execute("select relrowsecurity from pg_class where oid = %s::regclass", (f"public.{table}",)).fetchone()
        assert rls and rls["relrowsecurity"], f"{table}: row level security is not enabled"
        if table in CATALOGUE_TABLES:
            continue
        if table in SERVICE_ONLY_TABLES:
            grants = conn.execute("select count(*) as n from information_schema.role_table_grants where table_schema = 'public' "
                                  "and table_name = %s and grantee in ('anon', 'authenticated')", (table,)).fetchone()
            assert grants == {"n": 0}, f"{table} is service-only but an API role holds a privilege on it"
            continue
        col = tenant_column(conn, table)
        assert col, f"{table}: a tenant table needs business_id (or belongs in CATALOGUE_TABLES)"
        for tenant in (a, b):
            n = conn.execute(sql.SQL("select count(*) as n from public.{} where {} = %s").format(
                sql.Identifier(table), sql.Identifier(col)), (tenant.business_id,)).fetchone()
            assert n and n["n"] > 0, f"{table}: the fixture has no rows for a tenant, so the walk would prove nothing"


def selectable(conn: psycopg.Connection[dict[str, Any]], table: str, role: str) -> list[str]:
    rows = conn.execute("select column_name from information_schema.column_privileges where table_schema = 'public' "
                        "and table_name = %s and grantee = %s and privilege_type = 'SELECT' order by column_name", (table, role)).fetchall()
    return [r["column_name"] for r in rows]


def primary_key(conn: psycopg.Connection[dict[str, Any]], table: str) -> list[str]:
    rows = conn.execute("select a.attname from pg_index i join pg_attribute a on a.attrelid = i.indrelid and a.attnum = any(i.indkey) "
                        "where i.indrelid = %s::regclass and i.indisprimary order by a.attname", (f"public.{table}",)).fetchall()
    return [r["attname"] for r in rows]


def visible(api: Api, claims: Claims, table: str, where: sql.Composable, params: Any = None) -> list[dict[str, Any]] | None:
    """Rows the caller sees, projected on the columns its role may select; None when it may select none."""
    with api.pool.connection() as c:
        cols = selectable(c, table, claims.role)
    if not cols:
        return None
    query = (sql.SQL("select to_jsonb(t) as row from (select {} from public.{} where ").format(
        sql.SQL(", ").join(map(sql.Identifier, cols)), sql.Identifier(table)) + where + sql.SQL(") t"))
    return [r["row"] for r in api.run(claims, query, params)]


def keys(rows: list[dict[str, Any]] | None, pk: list[str]) -> set[tuple[Any, ...]]:
    return {tuple(r[c] for c in pk) for r in rows or []}


@pytest.mark.parametrize("role", MEMBER_ROLES)
def test_members_read_nothing_of_another_business_beyond_the_public(
    api: Api, conn: psycopg.Connection[dict[str, Any]], tenants: tuple[Tenant, Tenant], role: str
) -> None:
    a, b = tenants
    for table in public_tables(conn):
        col = tenant_column(conn, table)
        if col is None:
            continue
        where = sql.SQL("{} = %s").format(sql.Identifier(col))
        pk = primary_key(conn, table)
        seen = keys(visible(api, a.claims(role), table, where, (b.business_id,)), pk)
        public = keys(visible(api, Claims.anon(), table, where, (b.business_id,)), pk)
        assert not seen - public, f"{role} of A reads {len(seen - public)} private row(s) of B in {table}"


def test_members_see_their_own_business(api: Api, tenants: tuple[Tenant, Tenant]) -> None:
    a, _ = tenants
    for role in MEMBER_ROLES:
        rows = api.run(a.claims(role), "select id from public.businesses")
        assert [r["id"] for r in rows] == [a.business_id]
    owner_tables = {"venues", "memberships", "business_subscriptions", "business_subscription_lines", "audit_log"}
    for table in owner_tables:
        rows = api.run(a.claims("owner"), sql.SQL("select count(*) as n from public.{} where business_id = %s").format(
            sql.Identifier(table)), (a.business_id,))
        assert rows[0]["n"] > 0, f"the owner of A cannot read their own {table}"


def insertable_columns(conn: psycopg.Connection[dict[str, Any]], table: str) -> list[str]:
    return [c["column_name"] for c in columns(conn, table)
            if c["is_generated"] == "NEVER" and c["identity_generation"] != "ALWAYS"]


def assert_refused(api: Api, claims: Claims, query: sql.Composable, params: Any, what: str) -> None:
    """The write either raises 42501 (no privilege / RLS) or touches no row."""
    try:
        n = api.rowcount(claims, query, params)
    except psycopg.errors.InsufficientPrivilege:
        return
    assert n == 0, f"{what}: {n} row(s) changed"


@pytest.mark.parametrize("role", ["anon", *MEMBER_ROLES])
def test_nobody_writes_into_another_business(
    api: Api, conn: psycopg.Connection[dict[str, Any]], tenants: tuple[Tenant, Tenant], role: str
) -> None:
    a, b = tenants
    claims = Claims.anon() if role == "anon" else a.claims(role)
    for table in public_tables(conn):
        col = tenant_column(conn, table)
        if col is None:
            continue
        ident = sql.Identifier(table)
        where = sql.SQL("{} = %s").format(sql.Identifier(col))
        before = conn.execute(sql.SQL("select md5(string_agg(t::text, ',' order by t::text)) as h from public.{} t where ").format(ident) + where,
                              (b.business_id,)).fetchone()

        # UPDATE: every column the role may update, set to itself, on B's rows.
        updatable = [r["column_name"] for r in conn.execute(
            "select column_name from information_schema.column_privileges where table_schema = 'public' "
            "and table_name = %s and grantee = %s and privilege_type = 'UPDATE'",
            (table, claims.role)).fetchall()]
        for column in updatable or [col]:
            assert_refused(api, claims, sql.SQL("update public.{} set {} = {} where ").format(
                ident, sql.Identifier(column), sql.Identifier(column)) + where, (b.business_id,), f"{role} updates {table}.{column} of B")

        assert_refused(api, claims, sql.SQL("delete from public.{} where ").format(ident) + where, (b.business_id,),
                       f"{role} deletes {table} of B")

        # INSERT: a copy of one of B's rows must be refused with 42501, whatever its other columns.
        sample = conn.execute(sql.SQL("select to_jsonb(t) as row from public.{} t where ").format(ident) + where + sql.SQL(" limit 1"),
                              (b.business_id,)).fetchone()
        assert sample is not None
        cols = insertable_columns(conn, table)
        insert = sql.SQL("insert into public.{} ({}) select {} from jsonb_populate_record(null::public.{}, %s) r").format(
            ident, sql.SQL(", ").join(map(sql.Identifier, cols)),
            sql.SQL(", ").join(sql.SQL("r.{}").format(sql.Identifier(c)) for c in cols), ident)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            api.rowcount(claims, insert, (json.dumps(sample["row"]),))

        after = conn.execute(sql.SQL("select md5(string_agg(t::text, ',' order by t::text)) as h from public.{} t where ").format(ident) + where,
                             (b.business_id,)).fetchone()
        assert before == after, f"{role} changed {table} of B"


def test_anon_reaches_only_what_is_public(api: Api, conn: psycopg.Connection[dict[str, Any]], tenants: tuple[Tenant, Tenant]) -> None:
    for table in public_tables(conn):
        rows = visible(api, Claims.anon(), table, sql.SQL("true"))
        if table not in ANON_READABLE:
            assert not rows, f"anon reads {len(rows or [])} row(s) of {table}"
            continue
        assert rows, f"anon should read {table}"
        allowed = conn.execute(sql.SQL("select count(*) as n from public.{} where ").format(sql.Identifier(table))
                               + sql.SQL(ANON_READABLE[table])).fetchone()  # type: ignore[arg-type]
        assert allowed is not None and len(rows) == allowed["n"], f"anon reads {table} rows beyond {ANON_READABLE[table]}"


def test_venue_limited_staff_see_only_their_venues(
    api: Api, conn: psycopg.Connection[dict[str, Any]], tenants: tuple[Tenant, Tenant]
) -> None:
    a, _ = tenants
    mine, other = a.venues  # staff are limited to `mine`; `other` is unpublished
    walked = 0
    for table in public_tables(conn):
        vcol = venue_column(conn, table)
        if vcol is None:
            continue
        walked += 1
        where = sql.SQL("business_id = %s")
        for row in visible(api, a.claims("staff"), table, where, (a.business_id,)) or []:
            assert str(row[vcol]) != str(other), f"staff limited to one venue read {table} of another venue"
        # The unlimited manager does see the other venue, so the check above is not vacuous.
    assert walked >= 10
    back_orders = visible(api, a.claims("manager"), "orders", sql.SQL("venue_id = %s"), (other,)) or []
    assert len(back_orders) == 1, "the manager sees the other venue's order, so the staff check is not vacuous"
    managers = visible(api, a.claims("manager"), "venues", sql.SQL("business_id = %s"), (a.business_id,)) or []
    assert {r["id"] for r in managers} == {str(mine), str(other)}
    staff = visible(api, a.claims("staff"), "venues", sql.SQL("business_id = %s"), (a.business_id,)) or []
    assert {r["id"] for r in staff} == {str(mine)}
    assert api.run(a.claims("staff"), "select app.has_venue_access(%s, %s) as ok", (a.business_id, other)) == [{"ok": False}]
    assert api.run(a.claims("staff"), "select app.has_venue_access(%s, %s) as ok", (a.business_id, mine)) == [{"ok": True}]


# ---- exports (issue 14 item 2): the `export` function over HTTP, as each caller ------------------------------

EXPORT_TYPES = ("orders", "payments", "customers", "bookings", "payouts", "driver_earnings", "campaign_performance")


def export_csv(server: Any, claims: Claims, secret: str, **params: Any) -> tuple[int, list[dict[str, str]]]:
    import csv
    import io

    import httpx

    from brigade import auth

    with httpx.stream("GET", f"{server.url}/functions/v1/export", params=params, timeout=60,
                      headers={"authorization": f"Bearer {auth.sign(claims, secret)}"}) as r:
        body = r.read().decode()
        if r.status_code != 200:
            return r.status_code, []
        assert r.headers["content-type"].startswith("text/csv")
    return 200, list(csv.DictReader(io.StringIO(body)))


def test_every_export_type_under_rls(conn: psycopg.Connection[dict[str, Any]], tenants: tuple[Tenant, Tenant], settings: Any,
                                     functions_server: Any, operator: Claims) -> None:
    a, b = tenants
    mine, back = a.venues
    # two more customers of A, one per venue, so the venue-limited view of the CRM is not vacuous
    kept: dict[Any, str] = {}
    for venue, name in ((mine, "Main regular"), (back, "Back regular")):
        row = conn.execute("insert into public.customers (business_id, full_name, phone) values (%s, %s, %s) returning id",
                           (a.business_id, name, f"+1212555{len(kept):04d}")).fetchone()
        conn.execute("insert into public.customer_venue_stats (business_id, venue_id, customer_id, total_orders, total_spent_cents, "
                     "first_order_at, last_order_at) values (%s, %s, %s, 3, 4500, now() - interval '9 days', now() - interval '1 day')",
                     (a.business_id, venue, row["id"]))  # type: ignore[index]
        kept[venue] = name
    erased = conn.execute("select customer_id from public.customer_delete_requests where business_id = %s and status = 'pending'",
                          (a.business_id,)).fetchone()["customer_id"]  # type: ignore[index]
    secret = settings.jwt_secret
    venue_names = {r["id"]: r["name"] for r in conn.execute("select id, name from public.venues where business_id = %s", (a.business_id,))}

    for export_type in EXPORT_TYPES:
        status, owner_rows = export_csv(functions_server, a.claims("owner"), secret, type=export_type, business_id=a.business_id)
        assert status == 200 and owner_rows, f"{export_type}: the owner exports rows"
        status, staff_rows = export_csv(functions_server, a.claims("staff"), secret, type=export_type, business_id=a.business_id)
        assert status == 200, export_type
        assert len(staff_rows) <= len(owner_rows)
        if "venue" in owner_rows[0]:
            assert {r["venue"] for r in staff_rows} <= {venue_names[mine]}, f"{export_type}: staff read another venue's rows"
        # the owner's export is exactly the platform's export of A (nothing of B in it); B's owner gets
        # nothing of A, and their own export is exactly the platform's export of B
        assert export_csv(functions_server, operator, secret, type=export_type, business_id=a.business_id) == (200, owner_rows)
        assert export_csv(functions_server, b.claims("owner"), secret, type=export_type, business_id=a.business_id) == (404, [])
        status, theirs = export_csv(functions_server, b.claims("owner"), secret, type=export_type, business_id=b.business_id)
        assert status == 200 and theirs and \
            export_csv(functions_server, operator, secret, type=export_type, business_id=b.business_id) == (200, theirs)

    # orders: one row per line, both venues for the owner, the staff's venue only for them; the exact lines
    lines = conn.execute("select o.order_number, i.name, i.quantity, i.line_total_cents, o.venue_id from public.orders o "
                         "join public.order_items i on i.business_id = o.business_id and i.order_id = o.id "
                         "where o.business_id = %s order by o.placed_at, o.order_number, i.line_number", (a.business_id,)).fetchall()
    _, owner_orders = export_csv(functions_server, a.claims("owner"), secret, type="orders", business_id=a.business_id)
    assert [(int(r["order_number"]), r["item"], int(r["quantity"]), int(r["line_total_cents"])) for r in owner_orders] == \
        [(x["order_number"], x["name"], x["quantity"], x["line_total_cents"]) for x in lines]
    _, staff_orders = export_csv(functions_server, a.claims("staff"), secret, type="orders", business_id=a.business_id)
    assert len(staff_orders) == sum(1 for x in lines if x["venue_id"] == mine) > 0
    assert {r["venue"] for r in owner_orders} == {venue_names[mine], venue_names[back]}

    # customers: never one whose erasure is pending; venue-limited staff see their venue's
    _, owner_customers = export_csv(functions_server, a.claims("owner"), secret, type="customers", business_id=a.business_id)
    assert str(erased) not in {r["customer_id"] for r in owner_customers}
    assert {kept[mine], kept[back]} <= {r["full_name"] for r in owner_customers}
    _, staff_customers = export_csv(functions_server, a.claims("staff"), secret, type="customers", business_id=a.business_id)
    assert kept[mine] in {r["full_name"] for r in staff_customers} and kept[back] not in {r["full_name"] for r in staff_customers}
    regular = next(r for r in owner_customers if r["full_name"] == kept[mine])
    assert (regular["total_orders"], regular["total_spent_cents"]) == ("3", "4500")

    # the range: nothing placed before the window
    assert export_csv(functions_server, a.claims("owner"), secret, type="orders", business_id=a.business_id,
                      **{"from": "2001-01-01", "to": "2001-02-01"}) == (200, [])
    # the operator exports the whole platform; bad input is a 400
    _, everything = export_csv(functions_server, operator, secret, type="orders")
    assert len(everything) == conn.execute("select count(*) as n from public.order_items").fetchone()["n"]  # type: ignore[index]
    for bad in ({"type": "orders"}, {"type": "nope", "business_id": a.business_id},
                {"type": "orders", "business_id": a.business_id, "from": "yesterday-ish"},
                {"type": "orders", "business_id": a.business_id, "from": "2026-02-01", "to": "2026-01-01"}):
        assert export_csv(functions_server, a.claims("owner"), secret, **bad)[0] == 400, bad
