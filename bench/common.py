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
def bench_cluster(*, seed: bool = False, rate_limits: bool = False) -> Iterator[Cluster]:
    """A migrated cluster with production-like durability (fsync and synchronous_commit on). The rate
    limits (app.rate_limits) are removed unless asked for: a benchmark is thousands of guests at one
    business within seconds, which they exist to refuse; bench/edge.py measures what they cost."""
    base = Path(tempfile.mkdtemp(prefix="brigade-bench-"))
    if os.geteuid() == 0:
        entry = pwd.getpwnam(CLUSTER_USER)
        os.chown(base, entry.pw_uid, entry.pw_gid)
    cluster = Cluster(base / "pg", free_port(), {"max_connections": "200"})
    try:
        cluster.start()
        migrate(cluster.dsn, compat=True, seed=seed)
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
