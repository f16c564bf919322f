"""The code calls only pgmq functions both hosted versions (1.4.4 and 1.5.1) have (issue 21)."""

from __future__ import annotations

from pathlib import Path

import pytest

from brigade import pgmq_hosted
from brigade.settings import PROJECT_ROOT, Settings

PRODUCT_SQL = ["supabase/migrations/*.sql", "supabase/seed.sql", "sql/**/*.sql", "brigade/**/*.sql"]
PRODUCT_PY = ["brigade/**/*.py", "worker/**/*.py", "functions/**/*.py"]


def product_files() -> list[Path]:
    return sorted({p for pattern in PRODUCT_SQL + PRODUCT_PY for p in PROJECT_ROOT.glob(pattern)})


def test_code_calls_only_what_both_hosted_versions_have() -> None:
    files = product_files()
    found = {call for path in files for call in pgmq_hosted.calls(path.read_text())}
    # The scan sees the calls that matter: emit, bury and replay, batch sends, the worker's queries.
    assert {("create", 1), ("send", 2), ("send", 3), ("send_batch", 3), ("read", 3), ("delete", 2),
            ("set_vt", 3)} <= found, found
    assert pgmq_hosted.calls_outside(files) == {}


def test_the_scan_flags_calls_a_hosted_version_lacks(tmp_path: Path) -> None:
    sql = tmp_path / "x.sql"
    sql.write_text("select pgmq.enable_notify_insert('q');\n"
                   "select pgmq.send('q', '{}', '{\"h\": 1}', 0);\n"       # headers: 1.5.1 has no such send
                   "select * from pgmq.read('q', 30, 1, '{\"a\": 1}');\n"  # conditional read: 1.5.1 only
                   "select pgmq.send('q', jsonb_build_object('a', (1)), 5);\n"
                   "select * from pgmq.q_q where msg_id = 1;  -- a table, not a call\n")
    assert pgmq_hosted.calls_outside([sql]) == {str(sql): [("enable_notify_insert", 1), ("send", 4), ("read", 4)]}


def test_declared_surfaces() -> None:
    by_version = {v: {(f.name, f.args) for f in fns} for v, fns in pgmq_hosted.HOSTED.items()}
    for version in pgmq_hosted.SUPPORTED_VERSIONS:
        set_vt = [args for name, args in by_version[version] if name == "set_vt"]
        assert set_vt == [("text", "bigint", "integer")], "only the seconds form, in both versions"
    assert ("read", ("text", "integer", "integer")) in by_version["1.4.4"]
    assert ("read", ("text", "integer", "integer", "jsonb")) in by_version["1.5.1"]
    assert ("read", 3) in pgmq_hosted.common_call_forms() and ("read", 4) not in pgmq_hosted.common_call_forms()
    assert ("drop_queue", 1) in pgmq_hosted.common_call_forms()


def test_the_setting_chooses_a_supported_version() -> None:
    assert Settings().pgmq_version in pgmq_hosted.SUPPORTED_VERSIONS
    assert Settings(pgmq_version="1.4.4").pgmq_version == "1.4.4"
    with pytest.raises(pgmq_hosted.PgmqSurfaceError, match="1.13.0"):
        pgmq_hosted.surface("1.13.0")
