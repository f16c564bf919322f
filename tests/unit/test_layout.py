"""Project layout rules that keep the codebase deployable: migration names, layers, named queries."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from brigade import queries
from brigade.migrate import MIGRATIONS_DIR, list_migrations
from brigade.settings import PROJECT_ROOT


def test_migrations_are_named_and_numbered_in_order() -> None:
    migrations = list_migrations()
    assert migrations, "no migrations found"
    versions = [int(m.version) for m in migrations]
    # Each module owns a block of numbers (0050–0059 platform billing/operator, …), so gaps are expected.
    # 0000 holds only what must precede every landed migration on a fresh hosted project (the schema
    # pgmq, issue 21); modules start at 0001.
    assert versions[:2] == [0, 1] and versions == sorted(set(versions)), f"versions must be unique and increasing, 0000 then 0001: {versions}"
    assert migrations[0].name == "platform_queues", "0000 is reserved for the hosted prerequisites"
    for migration in migrations:
        module = migration.name.split("_")[0]
        assert module in {"platform", "catalog", "ordering", "crm", "loyalty", "campaigns", "voice", "dispatch",
                          "bookings", "billing"}, f"{migration.path.name}: unknown module prefix {module!r}"


def test_migration_lint_rejects_bad_names(tmp_path: Path) -> None:
    (tmp_path / "0001_platform_ok.sql").write_text("select 1;")
    (tmp_path / "0002_Platform-Bad.sql").write_text("select 1;")
    with pytest.raises(ValueError, match="0002_Platform-Bad.sql"):
        list_migrations(tmp_path)


def test_migration_lint_rejects_duplicate_versions(tmp_path: Path) -> None:
    (tmp_path / "0001_platform_one.sql").write_text("select 1;")
    (tmp_path / "0001_platform_two.sql").write_text("select 1;")
    with pytest.raises(ValueError, match="used twice"):
        list_migrations(tmp_path)


def test_supabase_dir_is_not_a_python_package() -> None:
    # A supabase/__init__.py would shadow the supabase client library.
    assert not (MIGRATIONS_DIR.parent / "__init__.py").exists()


def test_layers_hold() -> None:
    """functions and worker never import each other; brigade imports neither (import-linter)."""
    result = subprocess.run([str(Path(sys.executable).with_name("lint-imports")), "--no-cache"],
                            cwd=PROJECT_ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


def test_named_queries_parse() -> None:
    parsed = queries.parse("-- one --\n-- the first\nselect 1\n\n-- two --\n-- the second\nselect %(x)s\n")
    assert parsed == {"one": "select 1", "two": "select %(x)s"}
    assert "read_events" in queries.load()
    assert "pgmq.read" in queries.get("read_events")
