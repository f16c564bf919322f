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


def test_a_printers_next_job_uses_the_pending_index(conn: psycopg.Connection[dict[str, Any]]) -> None:
    """Every printer asks every few seconds (app.printer_poll / printer_take_job): its next job must
    come from the partial index of waiting jobs, not a scan of the printed history."""
    b = conn.execute("insert into public.businesses (name, slug) values ('Print', 'print-explain') returning id").fetchone()["id"]  # type: ignore[index]
    v = conn.execute("insert into public.venues (business_id, name, slug) values (%s, 'V', 'v') returning id", (b,)).fetchone()["id"]  # type: ignore[index]
    printers = [conn.execute("insert into public.printers (business_id, venue_id, name, kind, protocol, device_token_hash) "
                             "values (%s, %s, %s, 'kitchen', 'epson_sdp', %s) returning id", (b, v, f"P{n}", f"h{n}")).fetchone()["id"]  # type: ignore[index]
                for n in range(20)]
    conn.execute("insert into public.print_jobs (business_id, venue_id, printer_id, kind, status, document) "
                 "select %s, %s, (%s::uuid[])[1 + g %% 20], 'ticket', case when g %% 100 = 0 then 'queued' else 'printed' end, '{}' "
                 "from generate_series(1, 20000) g", (b, v, printers))
    conn.execute("analyze public.print_jobs")
    text = plan(conn, "select j.* from public.print_jobs j where j.printer_id = %s and j.business_id = %s "
                      "and j.status in ('queued', 'sent') order by j.seq limit 1", (printers[3], b))
    assert "print_jobs_pending_idx" in text and "Seq Scan" not in text, text


def test_the_customer_list_page_is_read_in_index_order(conn: psycopg.Connection[dict[str, Any]]) -> None:
    """The list page (one venue, one segment, lifetime value first, ties by customer): the next 50 entries of
    the page index, no sort of the segment's rows."""
    b = conn.execute("insert into public.businesses (name, slug, modules_json) values ('Crm', 'crm-explain', '{\"crm\": true}') "
                     "returning id").fetchone()["id"]  # type: ignore[index]
    v = conn.execute("insert into public.venues (business_id, name, slug) values (%s, 'V', 'v') returning id", (b,)).fetchone()["id"]  # type: ignore[index]
    conn.execute("insert into public.customers (business_id, full_name) select %s, 'C' || g from generate_series(1, 20000) g", (b,))
    conn.execute("insert into public.customer_venue_stats (business_id, venue_id, customer_id, total_orders, total_spent_cents, "
                 "first_order_at, last_order_at) select c.business_id, %s, c.id, 2 + (hashint4(row_number() over ()::int) & 7), "
                 "100 * (hashint4(row_number() over ()::int) & 255), now() - interval '200 days', "
                 "now() - make_interval(days => (hashint4(row_number() over ()::int) & 127)) from public.customers c where c.business_id = %s",
                 (v, b))
    conn.execute("analyze public.customer_venue_stats")
    for query in ("select s.customer_id from public.customer_venue_stats s where s.business_id = %(b)s and s.venue_id = %(v)s "
                  "and s.segment = 'LOYAL' order by s.total_spent_cents desc, s.customer_id limit 50 offset 500",
                  "select s.customer_id from public.customer_venue_stats s where s.business_id = %(b)s and s.venue_id = %(v)s "
                  "order by s.total_spent_cents desc, s.customer_id limit 50 offset 500"):
        text = plan(conn, query, {"b": b, "v": v})
        assert "_ltv_page_idx" in text and "Sort" not in text, text
