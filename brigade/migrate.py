"""Applies sql/compat (plain PostgreSQL only), pgmq, supabase/migrations and supabase/seed.sql.

Each migration runs in its own transaction and is recorded in supabase_migrations.schema_migrations,
the table the Supabase CLI uses, so a database migrated here looks migrated to `supabase db push`.

On plain PostgreSQL (compat) the work is split the way a hosted project splits it: the superuser
connection given applies sql/compat and plays supabase_admin for pgmq (what Supabase's supautils does
when a migration says `create extension pgmq`), and every migration and the seed run on a second
connection as MIGRATION_ROLE, which has the attributes hosted `postgres` has and is no superuser.
Against a hosted project (no compat) the connection given is used as it is.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg
from pgmq.install import get_embedded_install_sql, get_embedded_sql_version
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from brigade import pgmq_hosted, queries
from brigade.errors import BrigadeError
from brigade.settings import PROJECT_ROOT, get_settings

log = logging.getLogger("brigade.migrate")

MIGRATIONS_DIR = PROJECT_ROOT / "supabase" / "migrations"
COMPAT_DIR = PROJECT_ROOT / "sql" / "compat"
SEED_FILE = PROJECT_ROOT / "supabase" / "seed.sql"
# Plays hosted Supabase's `postgres` on plain PostgreSQL (sql/compat/0002_hosted_roles.sql).
MIGRATION_ROLE = "brigade_migrator"
# Plays hosted Supabase's superuser, which privileged extensions are created by.
EXTENSION_ADMIN_ROLE = "supabase_admin"
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


class MigrationError(BrigadeError):
    code = "migration"


def apply_compat(conn: psycopg.Connection) -> None:
    """What Supabase provides, for a plain PostgreSQL: roles (hosted postgres included), auth schema,
    realtime publication. Runs as a superuser."""
    for path in sorted(COMPAT_DIR.glob("*.sql")):
        with conn.transaction():
            conn.execute(path.read_text())


def install_pgmq(conn: psycopg.Connection, version: str) -> bool:
    """Once a migration has created the schema pgmq (0000), install pgmq into it the way a hosted
    project gets it; True when it installed. Runs as a superuser; no-op when pgmq is there already or
    is a real extension here (then 0000 created it).

    Hosted, supabase_admin creates the extension inside the schema the migrating role made, and an
    after-create hook hands every pgmq object to postgres. Here supabase_admin runs the SQL the pgmq
    package bundles and the same hand-over follows (brigade/queries/migrate.sql).
    """
    state = conn.execute(queries.get("pgmq_installed")).fetchone()
    assert state is not None
    installed, schema_exists, available = state
    if installed or not schema_exists or available:
        return False
    with conn.transaction():
        conn.execute(sql.SQL("set local role {}").format(sql.Identifier(EXTENSION_ADMIN_ROLE)))
        conn.execute(get_embedded_install_sql())  # type: ignore[arg-type]
        conn.execute("reset role")
        conn.execute(queries.get("pgmq_after_create"))  # type: ignore[arg-type]
        conn.execute(sql.SQL("comment on schema pgmq is {}").format(sql.Literal(
            f"local stand-in for hosted pgmq {version}: the SQL of pgmq {get_embedded_sql_version()}, "
            f"which Brigade's code may only use as far as {version} goes (brigade.pgmq_hosted)")))
    log.info("pgmq installed", extra={"action": "pgmq_install", "pgmq_version": version})
    return True


def migration_dsn(dsn: str) -> str:
    """The same database, connected to as the migrating role."""
    params = conninfo_to_dict(dsn)
    params.pop("password", None)
    return make_conninfo(**{**params, "user": MIGRATION_ROLE})


def apply_migrations(conn: psycopg.Connection, migrations: list[Migration] | None = None,
                     before_each: Callable[[], object] | None = None) -> list[str]:
    """Apply the pending migrations, each in its own transaction; returns the versions applied.
    before_each runs ahead of every pending migration (the compat path installs pgmq there)."""
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
        if before_each is not None:
            before_each()
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


def migrate(dsn: str, *, compat: bool, seed: bool, pgmq_version: str | None = None) -> list[str]:
    """Bring the database at dsn up to date. With compat, dsn must reach a superuser; migrations and
    the seed still run as MIGRATION_ROLE, and the named queries are checked against the hosted pgmq
    version chosen (setting pgmq_version)."""
    if not compat:
        with psycopg.connect(dsn, autocommit=True) as conn:
            done = apply_migrations(conn)
            if seed:
                apply_seed(conn)
        return done
    version = pgmq_version or get_settings().pgmq_version
    pgmq_hosted.surface(version)
    with psycopg.connect(dsn, autocommit=True) as admin:
        apply_compat(admin)
        with psycopg.connect(migration_dsn(dsn), autocommit=True) as conn:
            done = apply_migrations(conn, before_each=lambda: install_pgmq(admin, version))
            install_pgmq(admin, version)
            if seed:
                apply_seed(conn)
        failures = pgmq_hosted.check_named_queries(admin, version)
    if failures:
        raise MigrationError(f"named queries call pgmq functions hosted pgmq {version} lacks: {failures}")
    return done
