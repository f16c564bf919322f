"""The test clock: shifts the database cluster's and Python's notion of now to chosen instants.

`BRIGADE_TEST_NOW` lists instants separated by `;`, each ISO 8601 with a UTC offset (`2028-02-29T23:59:30+01:00`,
`…Z`) or a local time followed by an IANA zone (`2027-03-28T01:59:30 Europe/Paris`). When it is set, every
collected test runs once per instant, and each run *starts* at its instant: Python through time-machine (ticking),
PostgreSQL through libfaketime preloaded into the cluster, whose offset file the test rewrites before it starts
(`FAKETIME_NO_CACHE`, so every backend sees the new offset at once), and worker or `brigade up` processes a test
spawns through the same preload (`clock_env()`). `BRIGADE_TEST_TZ` is the time zone the factory gives new
businesses and venues (default: the zone the running instant was written in), so "23:59:30 in the venue's zone"
is real.

Without `BRIGADE_TEST_NOW` nothing is preloaded or patched: the suite runs on the wall clock.
Tests whose expectations depend on the date, weekday, time of day, month length, DST or the zone carry the
`clock` marker; `make test` runs those again at HARD_INSTANTS (`BRIGADE_TEST_NOW=hard`).
"""

from __future__ import annotations

import glob
import os
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

ENV_NOW = "BRIGADE_TEST_NOW"
ENV_TZ = "BRIGADE_TEST_TZ"

# `BRIGADE_TEST_NOW=hard`: the instants the clock-sensitive tests must pass at, each written in the zone the
# test venues get for it.
HARD_INSTANTS = (
    "2027-06-15T23:59:30 Europe/Paris",  # 23:59:30 in the venue's zone, when UTC is still two hours before midnight
    "2027-03-28T01:59:30 Europe/Paris",  # DST starts: 02:00 becomes 03:00, a 23-hour day
    "2027-10-31T02:59:30 Europe/Paris",  # DST ends: 03:00 becomes 02:00 again, a 25-hour day
    "2028-02-28T23:59:30 Europe/Paris",  # the eve of a leap day
    "2028-02-29T23:59:30 Europe/Paris",  # a leap day, about to become 1 March
    "2027-12-31T23:59:30 Europe/Paris",  # the last seconds of a year (and of a month, a quarter, a week's Friday)
    "2027-01-04T00:00:00 Europe/Paris",  # a Monday 00:00 (Sunday 23:00 in UTC)
    "2027-01-04T00:00:00Z",              # a Monday 00:00 in UTC, venues on UTC
)


@dataclass(frozen=True)
class Instant:
    """An instant to start a test at, with the zone it was written in (the venues' zone for that run)."""

    at: datetime
    zone: str
    label: str


def parse_instant(text: str) -> Instant:
    """`2028-02-29T23:59:30+01:00`, `2028-02-29T23:59:30Z` or `2027-03-28T01:59:30 Europe/Paris`."""
    raw = text.strip()
    if not raw:
        raise ValueError("empty instant")
    stamp, _, zone = raw.partition(" ")
    try:
        local = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"{ENV_NOW}: {raw!r} is not an ISO 8601 date-time") from exc
    if zone:
        if local.tzinfo is not None:
            raise ValueError(f"{ENV_NOW}: {raw!r} has both a UTC offset and a zone")
        at = local.replace(tzinfo=ZoneInfo(zone))
    elif local.tzinfo is None:
        raise ValueError(f"{ENV_NOW}: {raw!r} needs a UTC offset or a zone name")
    else:
        at, zone = local, "UTC"
    return Instant(at.astimezone(timezone.utc), zone, raw.replace(" ", "@"))


def instants() -> list[Instant]:
    value = os.environ.get(ENV_NOW, "")
    if value.strip() == "hard":
        value = ";".join(HARD_INSTANTS)
    return [parse_instant(part) for part in value.split(";") if part.strip()]


current: Instant | None = None  # the instant the running test started at (set by the pinned_clock fixture)


def venue_zone() -> str | None:
    """The zone new test businesses and venues get: BRIGADE_TEST_TZ, else the running instant's, else the schema's."""
    return os.environ.get(ENV_TZ) or (current.zone if current else None)


def faketime_library() -> str:
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1")) + sorted(glob.glob("/usr/lib/faketime/libfaketime.so.1"))
    if not found:
        raise RuntimeError(f"{ENV_NOW} needs libfaketime (Debian: apt-get install libfaketime)")
    return found[0]


class ShiftedClock:
    """The offset file every preloaded process reads on each clock call."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="brigade-clock-"))
        self.dir.chmod(0o755)
        self.file = self.dir / "offset"
        self.set_offset(0.0)

    def set_offset(self, seconds: float) -> None:
        tmp = self.dir / "offset.tmp"
        tmp.write_text(f"{seconds:+.6f}\n")
        tmp.chmod(0o644)
        tmp.replace(self.file)  # atomic: a backend reading mid-write never sees half a number

    def env(self, *, long_lived: bool = False) -> dict[str, str]:
        """The preload for a process. A long-lived one (the test cluster, which outlives each test's offset)
        keeps the real monotonic clock, so a changed offset never makes its timers jump; a process a test
        starts lives under one offset and gets the monotonic clock shifted too, since libfaketime refuses an
        absolute monotonic sleep (Python's time.sleep) with EINVAL otherwise."""
        env = {"LD_PRELOAD": faketime_library(), "FAKETIME_TIMESTAMP_FILE": str(self.file), "FAKETIME_NO_CACHE": "1"}
        if long_lived:
            env["FAKETIME_DONT_FAKE_MONOTONIC"] = "1"
        return env


_clock: ShiftedClock | None = None


def shifted_clock() -> ShiftedClock | None:
    """The run's shifted clock (created on first use), or None when the suite runs on the wall clock."""
    global _clock
    if _clock is None and instants():
        _clock = ShiftedClock()
    return _clock


def clock_env() -> dict[str, str]:
    """Environment for processes a test starts (postgres, workers, `brigade up`) so they share the test's clock."""
    clock = shifted_clock()
    return clock.env() if clock else {}


def real_now() -> datetime:
    return datetime.now(timezone.utc)
