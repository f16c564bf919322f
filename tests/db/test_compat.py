"""sql/compat gives plain PostgreSQL what Supabase has, and migrations are recorded for its CLI."""

from __future__ import annotations

from typing import Any

import psycopg

from brigade.migrate import apply_migrations, list_migrations
from tests.conftest import Api
from brigade.auth import Claims


def test_roles_and_auth_helpers_read_postgrest_claims(api: Api) -> None:
    claims = Claims.user("00000000-0000-4000-8000-000000000042", email="x@y.test")
    row = api.run(claims, "select auth.uid() as uid, auth.role() as role, auth.jwt() ->> 'email' as email, "
                          "current_user as current_user")[0]
    assert str(row["uid"]) == claims.sub
    assert row["role"] == "authenticated" and row["email"] == "x@y.test"
    assert row["current_user"] == "authenticated"
    anon = api.run(Claims.anon(), "select auth.uid() as uid, auth.role() as role")[0]
    assert anon == {"uid": None, "role": "anon"}


def test_service_role_bypasses_rls_and_api_roles_do_not(conn: psycopg.Connection[dict[str, Any]]) -> None:
    rows = conn.execute("select rolname, rolbypassrls, rolcanlogin from pg_roles "
                        "where rolname in ('anon', 'authenticated', 'service_role', 'authenticator') order by 1").fetchall()
    assert {r["rolname"]: (r["rolbypassrls"], r["rolcanlogin"]) for r in rows} == {
        "anon": (False, False), "authenticated": (False, False),
        "authenticator": (False, True), "service_role": (True, False)}


def test_extensions_publication_and_pgmq(conn: psycopg.Connection[dict[str, Any]]) -> None:
    assert conn.execute("select extensions.gen_random_uuid() is not null as ok").fetchone() == {"ok": True}
    assert conn.execute("select count(*) as n from pg_publication where pubname = 'supabase_realtime'").fetchone() == {"n": 1}
    queues = {r["queue_name"] for r in conn.execute("select queue_name from pgmq.list_queues()").fetchall()}
    assert {"brigade_events", "brigade_events_dead"} <= queues


def test_migrations_recorded_for_the_supabase_cli(conn: psycopg.Connection[dict[str, Any]]) -> None:
    rows = conn.execute("select version, name, statements from supabase_migrations.schema_migrations order by version").fetchall()
    migrations = list_migrations()
    assert [r["version"] for r in rows] == [m.version for m in migrations]
    assert [r["name"] for r in rows] == [m.name for m in migrations]
    assert rows[0]["statements"] == [migrations[0].path.read_text()]


def test_applying_again_changes_nothing(db_dsn: str) -> None:
    with psycopg.connect(db_dsn, autocommit=True) as c:
        assert apply_migrations(c) == []


def test_api_roles_cannot_reach_private_schemas(api: Api) -> None:
    for claims in (Claims.anon(), Claims.user("00000000-0000-4000-8000-000000000042")):
        for sql in ("select * from pgmq.q_brigade_events", "select * from app.workers",
                    "select * from supabase_migrations.schema_migrations"):
            try:
                api.run(claims, sql)
            except psycopg.errors.InsufficientPrivilege:
                continue
            raise AssertionError(f"{claims.role} could run {sql!r}")


def test_security_definer_functions_stay_private(conn: psycopg.Connection[dict[str, Any]]) -> None:
    """DESIGN §3: definers live in `app` with an empty search_path; `public` holds only invoker wrappers."""
    exposed = conn.execute("select proname from pg_proc where pronamespace = 'public'::regnamespace and prosecdef").fetchall()
    assert exposed == []
    unpinned = conn.execute("select proname from pg_proc where pronamespace = 'app'::regnamespace and prosecdef "
                            "and not coalesce(proconfig, '{}') @> array['search_path=\"\"']").fetchall()
    assert unpinned == []
