"""Applies sql/compat (plain PostgreSQL only), pgmq, supabase/migrations and supabase/seed.sql.

Each migration runs in its own transaction and is recorded in supabase_migrations.schema_migrations,
the table the Supabase CLI uses, so a database migrated here looks migrated to `supabase db push`.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import psycopg
from pgmq.install import install_pgmq_from_sql

from brigade.settings import PROJECT_ROOT

log = logging.getLogger("brigade.migrate")

MIGRATIONS_DIR = PROJECT_ROOT / "supabase" / "migrations"
COMPAT_DIR = PROJECT_ROOT / "sql" / "compat"
SEED_FILE = PROJECT_ROOT / "supabase" / "seed.sql"
MIGRATION_NAME = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9]+(?:_[a-z0-9]+)+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    path: Path


def list_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Migrations in order; raises ValueError on a badly named file or a duplicate version."""
    found: dict[str, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = MIGRATION_NAME.match(path.name)
        if not match:
            raise ValueError(f"migration {path.name!r} is not named NNNN_<module>_<what>.sql in lowercase")
        version = match["version"]
        if version in found:
            raise ValueError(f"migration version {version} is used twice: {found[version].path.name}, {path.name}")
        found[version] = Migration(version, match["name"], path)
    return list(found.values())


def _is_hosted_supabase(conn: psycopg.Connection) -> bool:
    return conn.execute("select exists (select 1 from pg_available_extensions where name = 'pgmq')").fetchone()[0]  # type: ignore[index]


def apply_compat(conn: psycopg.Connection) -> None:
    """What Supabase provides, for a plain PostgreSQL: roles, auth schema, realtime publication, pgmq."""
    for path in sorted(COMPAT_DIR.glob("*.sql")):
        with conn.transaction():
            conn.execute(path.read_text())
    has_pgmq = conn.execute("select exists (select 1 from pg_namespace where nspname = 'pgmq')").fetchone()[0]  # type: ignore[index]
    if not has_pgmq and not _is_hosted_supabase(conn):
        install_pgmq_from_sql(conn=conn)


def apply_migrations(conn: psycopg.Connection, migrations: list[Migration] | None = None) -> list[str]:
    """Apply the pending migrations, each in its own transaction; returns the versions applied."""
    with conn.transaction():
        conn.execute("create schema if not exists supabase_migrations")
        conn.execute(
            "create table if not exists supabase_migrations.schema_migrations "
            "(version text primary key, statements text[], name text)"
        )
    applied = {row[0] for row in conn.execute("select version from supabase_migrations.schema_migrations")}
    done: list[str] = []
    for migration in migrations if migrations is not None else list_migrations():
        if migration.version in applied:
            continue
        text = migration.path.read_text()
        with conn.transaction():
            conn.execute(text)
            conn.execute(
                "insert into supabase_migrations.schema_migrations (version, statements, name) values (%s, %s, %s)",
                (migration.version, [text], migration.name),
            )
        log.info("migration applied", extra={"action": "migrate", "version": migration.version, "migration": migration.name})
        done.append(migration.version)
    return done


def apply_seed(conn: psycopg.Connection, path: Path = SEED_FILE) -> None:
    """Load the demo business (idempotent)."""
    with conn.transaction():
        conn.execute(path.read_text())


def migrate(dsn: str, *, compat: bool, seed: bool) -> list[str]:
    """Bring the database at dsn up to date."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        if compat:
            apply_compat(conn)
        done = apply_migrations(conn)
        if seed:
            apply_seed(conn)
    return done
