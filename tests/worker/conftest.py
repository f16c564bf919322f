"""Worker test helpers: the plugin tables, emitting events, running copies in-process or as processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from brigade.settings import PROJECT_ROOT, Settings
from tests.clock import clock_env
from tests.worker.plugin import TABLES

PLUGIN = "tests.worker.plugin"


@pytest.fixture
def wsettings(settings: Settings, conn: psycopg.Connection[dict[str, Any]]) -> Settings:
    """Settings for a worker with the test plugin, its tables created."""
    conn.execute(TABLES)
    return settings.model_copy(update={"worker_plugins": PLUGIN, "worker_max_attempts": 3})


def emit(conn: psycopg.Connection[dict[str, Any]], topic: str, payload: dict[str, Any] | None = None,
         *, delay: int = 0, business_id: Any = None) -> int:
    row = conn.execute("select app.emit(%s, %s, %s, %s) as id", (topic, business_id, json.dumps(payload or {}), delay)).fetchone()
    assert row is not None
    return row["id"]


def handled(conn: psycopg.Connection[dict[str, Any]]) -> list[dict[str, Any]]:
    return conn.execute("select msg_id, attempt, worker_id, payload, handled_at, emitted_at from public.test_handled order by msg_id").fetchall()


def queue_depth(conn: psycopg.Connection[dict[str, Any]], queue: str = "brigade_events") -> int:
    row = conn.execute(f"select count(*) as n from pgmq.q_{queue}").fetchone()
    assert row is not None
    return row["n"]


class WorkerProcess:
    """`python -m brigade worker` as its own OS process, against the test database."""

    def __init__(self, settings: Settings, *args: str, env: dict[str, str] | None = None) -> None:
        full_env = {
            **os.environ,
            "BRIGADE_DATABASE_URL": settings.dsn,
            "BRIGADE_WORKER_PLUGINS": PLUGIN,
            "BRIGADE_WORKER_POLL_INTERVAL": str(settings.worker_poll_interval),
            "BRIGADE_WORKER_BACKOFF_BASE": str(settings.worker_backoff_base),
            "BRIGADE_WORKER_VISIBILITY_TIMEOUT": str(settings.worker_visibility_timeout),
            "BRIGADE_WORKER_HEARTBEAT_INTERVAL": str(settings.worker_heartbeat_interval),
            "BRIGADE_LOG_FORMAT": "json",
            "PYTHONPATH": str(PROJECT_ROOT),
            **clock_env(),
            **(env or {}),
        }
        self.proc = subprocess.Popen([sys.executable, "-m", "brigade", "worker", *args], cwd=PROJECT_ROOT, env=full_env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def wait(self, timeout: float = 60) -> tuple[str, str]:
        out, err = self.proc.communicate(timeout=timeout)
        assert self.proc.returncode == 0, f"worker exited {self.proc.returncode}:\n{err[-3000:]}"
        return out, err

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def kill(self) -> None:
        """Kill it if it still runs, and reap it (closing its pipes)."""
        if self.proc.poll() is None:
            self.proc.kill()
        if self.proc.stdout is not None and not self.proc.stdout.closed:
            self.proc.communicate(timeout=10)


@pytest.fixture
def spawn(wsettings: Settings) -> Iterator[Any]:
    """Start worker processes; any still running at the end is killed."""
    started: list[WorkerProcess] = []

    def start(*args: str, env: dict[str, str] | None = None, settings: Settings | None = None) -> WorkerProcess:
        proc = WorkerProcess(settings or wsettings, *args, env=env)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.kill()


def wait_for_notifies(dsn: str, channel: str, count: int, timeout: float, before: Any = None) -> list[str]:
    """Block until `count` notifications arrive on channel (LISTEN first, then run `before`)."""
    payloads: list[str] = []
    with psycopg.connect(dsn, autocommit=True) as listener:
        listener.execute(f"listen {channel}")
        if before is not None:
            before()
        for note in listener.notifies(timeout=timeout):
            payloads.append(note.payload)
            if len(payloads) >= count:
                break
    assert len(payloads) >= count, f"only {len(payloads)} of {count} notifications on {channel} within {timeout}s"
    return payloads
