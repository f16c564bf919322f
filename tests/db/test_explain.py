"""Hot queries use their indexes (EXPLAIN), so they stay fast as tables grow."""

from __future__ import annotations

import json
from typing import Any

import psycopg

from brigade import queries


def plan(conn: psycopg.Connection[dict[str, Any]], query: str, params: Any = None) -> str:
    row = conn.execute("explain (format json) " + query, params).fetchone()
    assert row is not None
    return json.dumps(row["QUERY PLAN"])


def test_membership_lookup_of_every_policy_uses_the_user_index(conn: psycopg.Connection[dict[str, Any]]) -> None:
    conn.execute("""
        with b as (insert into public.businesses (name, slug) select 'B' || g, 'b-' || g from generate_series(1, 300) g returning id),
             u as (insert into auth.users (email) select 'u' || g || '@x.test' from generate_series(1, 3000) g returning id)
        insert into public.memberships (business_id, user_id, role)
        select (select array_agg(id) from b)[1 + (row_number() over () % 300)::int], u.id, 'staff' from u
    """)
    conn.execute("analyze public.memberships")
    user = conn.execute("select user_id from public.memberships limit 1").fetchone()
    assert user is not None
    text = plan(conn, "select m.business_id from public.memberships m where m.user_id = %s and m.role = any('{owner,staff}')",
                (user["user_id"],))
    assert "memberships_user_id_idx" in text, text


def test_outbox_next_visible_uses_the_vt_index(conn: psycopg.Connection[dict[str, Any]]) -> None:
    conn.execute("select app.emit('bench.noop', null, '{}'::jsonb, g % 60) from generate_series(1, 5000) g")
    conn.execute("analyze pgmq.q_brigade_events")
    text = plan(conn, queries.get("next_event_in"))
    assert "q_brigade_events_vt_idx" in text and "Seq Scan" not in text, text
