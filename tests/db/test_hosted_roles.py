"""Migrations run as hosted Supabase runs them (issue 21): as a NOSUPERUSER `postgres`-like role,
with pgmq created by a supabase_admin-like superuser and handed to that role."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import psycopg.rows
import pytest
from psycopg import sql
from psycopg.rows import dict_row

from brigade import pgmq_hosted
from brigade.localdb import Cluster
from brigade.migrate import (MIGRATION_ROLE, apply_compat, apply_migrations, install_pgmq, list_migrations, migrate,
                             migration_dsn)
from pgmq.install import install_pgmq_from_sql
from tests.conftest import _dsn

# Every kind of object a migration can own, with its owner, in the schemas the migrations write to.
OWNERS = """
select 'schema ' || nspname as object, nspowner::regrole::text as owner from pg_namespace
 where nspname in ('app', 'pgmq', 'supabase_migrations')
union all
select 'relation ' || c.relnamespace::regnamespace || '.' || c.relname, c.relowner::regrole::text from pg_class c
 where c.relnamespace in ('public'::regnamespace, 'app'::regnamespace, 'pgmq'::regnamespace,
                          'supabase_migrations'::regnamespace) and c.relkind in ('r', 'p', 'v', 'm', 'S', 'c')
union all
select 'function ' || p.oid::regprocedure, p.proowner::regrole::text from pg_proc p
 where p.pronamespace in ('public'::regnamespace, 'app'::regnamespace, 'pgmq'::regnamespace)
union all
select 'type ' || t.oid::regtype, t.typowner::regrole::text from pg_type t
 where t.typnamespace in ('public'::regnamespace, 'app'::regnamespace, 'pgmq'::regnamespace)
   and t.typrelid = 0 and t.typcategory <> 'A'
union all
select 'publication ' || pubname, pubowner::regrole::text from pg_publication where pubname = 'supabase_realtime'
"""


@pytest.fixture
def fresh_dsn(pg_cluster: Cluster) -> Iterator[str]:
    """An empty database (no template): what a new project starts from."""
    name = f"h_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_dsn(pg_cluster, "postgres"), autocommit=True) as admin:
        admin.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    yield _dsn(pg_cluster, name)
    with psycopg.connect(_dsn(pg_cluster, "postgres"), autocommit=True) as admin:
        admin.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))


def owners(conn: psycopg.Connection[Any]) -> dict[str, str]:
    with conn.cursor(row_factory=psycopg.rows.tuple_row) as cur:
        return {r[0]: r[1] for r in cur.execute(OWNERS).fetchall()}


def test_the_migrating_role_is_hosted_postgres(conn: psycopg.Connection[dict[str, Any]]) -> None:
    role = conn.execute("select rolsuper, rolcreatedb, rolcreaterole, rolcanlogin, rolreplication, rolbypassrls, "
                        "rolinherit from pg_roles where rolname = %s", (MIGRATION_ROLE,)).fetchone()
    assert role == {"rolsuper": False, "rolcreatedb": True, "rolcreaterole": True, "rolcanlogin": True,
                    "rolreplication": True, "rolbypassrls": True, "rolinherit": True}
    granted = conn.execute("select r.rolname, m.admin_option from pg_auth_members m join pg_roles r on r.oid = m.roleid "
                           "where m.member = %s::regrole order by 1", (MIGRATION_ROLE,)).fetchall()
    assert granted == [{"rolname": n, "admin_option": True} for n in ("anon", "authenticated", "service_role")]
    api = conn.execute("select rolname, rolinherit from pg_roles where rolname in "
                       "('anon', 'authenticated', 'service_role', 'authenticator') order by 1").fetchall()
    assert {r["rolname"]: r["rolinherit"] for r in api} == {
        "anon": True, "authenticated": True, "authenticator": False, "service_role": True}
    admin = conn.execute("select rolsuper from pg_roles where rolname = 'supabase_admin'").fetchone()
    assert admin == {"rolsuper": True}


def test_no_migration_ran_as_a_superuser(conn: psycopg.Connection[dict[str, Any]]) -> None:
    """The template was built by migrate(): everything the migrations made belongs to the migrating role,
    and pgmq is owned the way hosted Supabase leaves it after 0000 (schema and objects: postgres)."""
    found = owners(conn)
    assert len(found) > 300 and "relation pgmq.q_brigade_events" in found and "function app.emit(text,uuid,jsonb,integer)" in found
    assert {o: who for o, who in found.items() if who != MIGRATION_ROLE} == {}
    recorded = conn.execute("select count(*) as n from supabase_migrations.schema_migrations").fetchone()
    assert recorded == {"n": len(list_migrations())}


def test_whole_schema_applies_with_no_superuser_anywhere(fresh_dsn: str) -> None:
    """The superuser path removed: a database that already has Queues (pgmq in a schema postgres owns,
    like a project whose dashboard enabled them) migrates on a connection that is the migrating role
    alone, and its named queries resolve against both hosted pgmq versions."""
    with psycopg.connect(fresh_dsn, autocommit=True) as admin:
        apply_compat(admin)
        admin.execute(sql.SQL("create schema pgmq authorization {}").format(sql.Identifier(MIGRATION_ROLE)))
        assert install_pgmq(admin, "1.4.4")
    with psycopg.connect(migration_dsn(fresh_dsn), autocommit=True) as conn:
        assert conn.execute("select current_user, current_setting('is_superuser')").fetchone() == (MIGRATION_ROLE, "off")
        done = apply_migrations(conn)
        assert done == [m.version for m in list_migrations()]
        for version in pgmq_hosted.SUPPORTED_VERSIONS:
            assert pgmq_hosted.check_named_queries(conn, version) == {}
        assert {o: who for o, who in owners(conn).items() if who != MIGRATION_ROLE} == {}
        queues = {r[0] for r in conn.execute("select queue_name from pgmq.list_queues()")}
        assert queues == {"brigade_events", "brigade_events_dead"}


def test_pgmq_schema_owned_by_supabase_admin_stops_0002_as_hosted_does(fresh_dsn: str) -> None:
    """The issue's blocker, reproduced locally: pgmq created by supabase_admin into a schema it owns
    (what a bare `create extension pgmq` gives on hosted) leaves postgres unable to create a queue."""
    with psycopg.connect(fresh_dsn, autocommit=True) as admin:
        apply_compat(admin)
        admin.execute("create schema pgmq authorization supabase_admin")
        assert install_pgmq(admin, "1.5.1")
    with psycopg.connect(migration_dsn(fresh_dsn), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="schema pgmq"):
            apply_migrations(conn)
        recorded = [r[0] for r in conn.execute("select version from supabase_migrations.schema_migrations order by 1")]
    assert recorded == ["0000", "0001"], "0002 rolled back whole, the ones before it stay"


def test_a_database_migrated_as_superuser_is_adopted(fresh_dsn: str) -> None:
    """Already migrated the old way (pgmq and every migration as the superuser): the next migrate()
    hands the project's objects to the migrating role, applies 0000 as a no-op, and seeds as it."""
    with psycopg.connect(fresh_dsn, autocommit=True) as admin:
        apply_compat(admin)
        with admin.transaction():
            install_pgmq_from_sql(conn=admin)
        admin.autocommit = True
        apply_migrations(admin, [m for m in list_migrations() if m.version != "0000"])
        before = owners(admin)
        assert before["relation public.businesses"] == "postgres" and before["schema pgmq"] == "postgres"
    assert migrate(fresh_dsn, compat=True, seed=True, pgmq_version="1.5.1") == ["0000"]
    with psycopg.connect(fresh_dsn, autocommit=True, row_factory=dict_row) as conn:
        assert {o: who for o, who in owners(conn).items() if who != MIGRATION_ROLE} == {}
        assert conn.execute("select count(*) > 0 as seeded from public.businesses").fetchone() == {"seeded": True}
