"""The test clock reaches everything a test talks to: Python, the cluster's backends and spawned processes."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest

from tests.clock import Instant, clock_env
from tests.conftest import Factory


@pytest.mark.clock
def test_python_the_database_and_a_child_process_share_the_test_clock(pinned_clock: Instant | None, conn: psycopg.Connection[dict[str, Any]],
                                                                       factory: Factory) -> None:
    python_now = datetime.now(timezone.utc)
    row = conn.execute("select now() as db_now").fetchone()
    assert row is not None and abs(row["db_now"] - python_now) < timedelta(seconds=5)
    child = subprocess.run([sys.executable, "-c", "import time; print(time.time())"], env={**clock_env()}, capture_output=True, text=True,
                           check=True)
    assert abs(datetime.fromtimestamp(float(child.stdout), timezone.utc) - python_now) < timedelta(seconds=5)
    if pinned_clock is not None:  # the run shifts the clock: the test started at its instant, in its zone
        assert timedelta(0) <= python_now - pinned_clock.at < timedelta(minutes=2)
        venue = factory.venue(factory.business())
        zone = conn.execute("select time_zone from public.venues where id = %s", (venue,)).fetchone()
        assert zone == {"time_zone": pinned_clock.zone}
