"""The test clock's instants (tests/clock.py): how they are written and what they mean."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from tests.clock import HARD_INSTANTS, parse_instant


def test_an_instant_in_a_zone_is_its_local_time_there() -> None:
    spring = parse_instant("2027-03-28T01:59:30 Europe/Paris")
    assert (spring.at, spring.zone) == (datetime(2027, 3, 28, 0, 59, 30, tzinfo=timezone.utc), "Europe/Paris")
    summer = parse_instant("2027-06-15T23:59:30 Europe/Paris")
    assert summer.at == datetime(2027, 6, 15, 21, 59, 30, tzinfo=timezone.utc)
    assert parse_instant("2027-01-04T00:00:00Z").at == datetime(2027, 1, 4, tzinfo=timezone.utc)
    assert parse_instant("2027-01-04T00:00:00+05:45").at == datetime(2027, 1, 3, 18, 15, tzinfo=timezone.utc)


@pytest.mark.parametrize("text", ["", "tomorrow", "2027-01-04T00:00:00", "2027-01-04T00:00:00Z Europe/Paris"])
def test_an_instant_without_a_zone_or_a_date_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_instant(text)


def test_the_hard_instants_are_the_ones_promised() -> None:
    local = [parse_instant(t) for t in HARD_INSTANTS]
    times = {i.at.astimezone(__import__("zoneinfo").ZoneInfo(i.zone)).strftime("%m-%d %H:%M:%S %a") for i in local}
    assert "03-28 01:59:30 Sun" in times and "10-31 02:59:30 Sun" in times  # both DST changes in Paris
    assert {"02-28 23:59:30 Mon", "02-29 23:59:30 Tue", "12-31 23:59:30 Fri"} <= times  # 2028 is a leap year
    assert sum(t.startswith("01-04 00:00:00 Mon") for t in times) == 1 and len(local) == len(set(HARD_INSTANTS))
    assert any(i.zone == "UTC" for i in local) and any(i.zone == "Europe/Paris" for i in local)
