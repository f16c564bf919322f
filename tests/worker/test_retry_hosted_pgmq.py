"""The worker's retry path (retry_event_later) against hosted pgmq (issue 21): it resolves against the
functions 1.4.4 and 1.5.1 have, where the timestamptz form it used before does not, and it moves the
event's visibility by the backoff rounded up to whole seconds."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from brigade import pgmq_hosted, queries
from tests.worker.conftest import emit

OLD_RETRY = ("select msg_id from pgmq.set_vt('brigade_events', %(msg_id)s::bigint,\n"
             "  clock_timestamp() + make_interval(secs => %(delay)s::double precision))")


@pytest.mark.parametrize("version", pgmq_hosted.SUPPORTED_VERSIONS)
def test_retry_query_resolves_against_hosted_pgmq_and_the_old_one_does_not(
    conn: psycopg.Connection[dict[str, Any]], version: str
) -> None:
    texts = {"retry_event_later": queries.get("retry_event_later"), "old_retry": OLD_RETRY}
    failures = pgmq_hosted.check_named_queries(conn, version, texts)
    assert list(failures) == ["old_retry"] and failures["old_retry"].startswith("42883"), failures
    # The stand-in's own pgmq (newer SQL) accepts the old call: alone it would have hidden the break.
    conn.execute("prepare old_retry as " + OLD_RETRY.replace("%(msg_id)s", "$1").replace("%(delay)s", "$2"))
    conn.execute("deallocate old_retry")


def test_every_named_query_resolves_against_both_hosted_versions(conn: psycopg.Connection[dict[str, Any]]) -> None:
    assert any("pgmq." in q for q in queries.load().values())
    for version in pgmq_hosted.SUPPORTED_VERSIONS:
        assert pgmq_hosted.check_named_queries(conn, version) == {}


def test_retry_pushes_visibility_out_by_whole_seconds(conn: psycopg.Connection[dict[str, Any]]) -> None:
    msg_id = emit(conn, "test.retry")
    leased = conn.execute(queries.get("read_events"), {"vt": 30, "qty": 10}).fetchall()
    assert [r["msg_id"] for r in leased] == [msg_id]

    # Bounds taken outside the retry's transaction: 1.4.4 counts from now(), 1.5.1 from clock_timestamp().
    before = conn.execute("select clock_timestamp() as t").fetchone()
    row = conn.execute(queries.get("retry_event_later"), {"msg_id": msg_id, "delay": 40.2}).fetchone()
    after = conn.execute("select clock_timestamp() as t").fetchone()
    assert row == {"msg_id": msg_id} and before and after
    vt = conn.execute("select vt, read_ct from pgmq.q_brigade_events where msg_id = %s", (msg_id,)).fetchone()
    assert vt is not None and vt["read_ct"] == 1
    # 40.2 s of backoff becomes 41 s from the call (pgmq counts in seconds; rounding up never retries early).
    seconds_from = [(vt["vt"] - t["t"]).total_seconds() for t in (before, after)]
    assert seconds_from[1] <= 41 <= seconds_from[0], seconds_from
    assert conn.execute(queries.get("read_events"), {"vt": 30, "qty": 10}).fetchall() == [], "not visible before its backoff"

    conn.execute(queries.get("retry_event_later"), {"msg_id": msg_id, "delay": 0})
    again = conn.execute(queries.get("read_events"), {"vt": 30, "qty": 10}).fetchall()
    assert [(r["msg_id"], r["read_ct"]) for r in again] == [(msg_id, 2)]
    assert conn.execute(queries.get("retry_event_later"), {"msg_id": msg_id + 1000, "delay": 1}).fetchall() == []
