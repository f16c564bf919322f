"""Shared by the benchmarks: a throwaway cluster, pgbench's tpcb-like TPS on it, and RESULTS.md."""

from __future__ import annotations

import os
import platform
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import psycopg

from brigade.localdb import CLUSTER_USER, Cluster, pg_bindir
from brigade.migrate import migrate

RESULTS = Path(os.environ.get("BRIGADE_BENCH_RESULTS") or Path(__file__).with_name("RESULTS.md"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def bench_cluster(*, seed: bool = False, rate_limits: bool = False, profile: bool = False) -> Iterator[Cluster]:
    """A migrated cluster with production-like durability (fsync and synchronous_commit on). The rate
    limits (app.rate_limits) are removed unless asked for: a benchmark is thousands of guests at one
    business within seconds, which they exist to refuse; bench/edge.py measures what they cost. With
    profile, pg_stat_statements records every statement, nested ones (inside functions) included."""
    base = Path(tempfile.mkdtemp(prefix="brigade-bench-"))
    if os.geteuid() == 0:
        entry = pwd.getpwnam(CLUSTER_USER)
        os.chown(base, entry.pw_uid, entry.pw_gid)
    settings = {"max_connections": "200"}
    if profile:
        settings |= {"shared_preload_libraries": "'pg_stat_statements'", "pg_stat_statements.track": "all",
                     "track_functions": "'all'"}
    cluster = Cluster(base / "pg", free_port(), settings)
    try:
        cluster.start()
        migrate(cluster.dsn, compat=True, seed=seed)
        if profile:
            with psycopg.connect(cluster.dsn, autocommit=True) as conn:
                conn.execute("create extension if not exists pg_stat_statements")
        if not rate_limits:
            with psycopg.connect(cluster.dsn, autocommit=True) as conn:
                conn.execute("delete from app.rate_limits")
        yield cluster
    finally:
        cluster.destroy()
        shutil.rmtree(base, ignore_errors=True)


def pgbench_tps(cluster: Cluster, *, clients: int = 4, seconds: int = 10, scale: int = 10) -> float:
    """pgbench's built-in tpcb-like TPS on the same cluster (its own database)."""
    conn = ["-h", "127.0.0.1", "-p", str(cluster.port), "-U", "postgres"]
    subprocess.run([str(pg_bindir() / "createdb"), *conn, "pgbench"], check=True, capture_output=True)
    subprocess.run([str(pg_bindir() / "pgbench"), *conn, "-i", "-q", "-s", str(scale), "pgbench"], check=True, capture_output=True)
    out = subprocess.run([str(pg_bindir() / "pgbench"), *conn, "-n", "-c", str(clients), "-j", str(min(clients, 2)),
                          "-T", str(seconds), "pgbench"], check=True, capture_output=True, text=True).stdout
    match = re.search(r"tps = ([\d.]+) \(without initial connection time\)", out)
    assert match, out
    return float(match.group(1))


def reset_profile(dsn: str) -> None:
    """Forget what pg_stat_statements and the function counters recorded so far (the setup)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("select pg_stat_statements_reset(), pg_stat_reset()")


def print_profile(dsn: str, per: int, label: str, limit: int = 25) -> None:
    """The statements and functions that took the most time since reset_profile, in ms per `label`
    (of `per`). Nested statements are counted inside their callers too, so the rows overlap."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute("select total_exec_time, calls, total_plan_time, shared_blks_hit + shared_blks_read, "
                            "regexp_replace(query, '\\s+', ' ', 'g') from pg_stat_statements "
                            "where dbid = (select oid from pg_database where datname = current_database()) "
                            "order by total_exec_time desc limit %s", (limit,)).fetchall()
        funcs = conn.execute("select schemaname || '.' || funcname, calls, total_time, self_time from pg_stat_user_functions "
                             "order by self_time desc limit %s", (limit,)).fetchall()
    print(f"\n-- statements, ms per {label} (exec; calls per {label}; buffers per call)")
    for total, calls, _plan, blocks, query in rows:
        print(f"{total / per:8.3f} {calls / per:6.2f}x {blocks / max(calls, 1):7.1f}  {query[:150]}")
    print(f"\n-- functions by self time, ms per {label} (self; total; calls per {label})")
    for name, calls, total, self_time in funcs:
        print(f"{self_time / per:8.3f} {total / per:8.3f} {calls / per:6.2f}x  {name}")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]


def write_section(name: str, body: str) -> None:
    """Replace this benchmark's section of RESULTS.md (kept between markers), leaving the others."""
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    section = f"<!-- {name} -->\n## {name}\n\n_{stamp} — {machine}_\n\n{body.strip()}\n<!-- /{name} -->"
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n\nEach section is rewritten by its script; numbers are measured side by side in one run.\n"
    pattern = re.compile(rf"<!-- {re.escape(name)} -->.*?<!-- /{re.escape(name)} -->", re.S)
    text = pattern.sub(section, text) if pattern.search(text) else text.rstrip() + "\n\n" + section + "\n"
    RESULTS.write_text(text)
