"""Export benchmark: the `export` function streaming the orders CSV (one row per line) of a business
with N orders (default 1,000,000, two lines each) over HTTP as the owner (RLS on), side by side with a
bare `COPY (the same query) TO STDOUT` of the same rows on a direct connection in the same run, and the
functions process's peak memory (VmHWM) before and after the export.

    .venv/bin/python bench/exports.py [--orders 1000000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import bench_cluster, free_port, write_section  # noqa: E402
from brigade import auth, queries  # noqa: E402
from brigade.auth import Claims  # noqa: E402
from brigade.settings import LOCAL_JWT_SECRET  # noqa: E402

PROJECT_ROOT = Path(__file__).resolve().parent.parent
BUSINESS = "00000000-0000-4000-8000-00000000e0e0"
OWNER = "00000000-0000-4000-8000-00000000e0e1"

LOAD = """
set session_replication_role = replica;  -- bulk load: no triggers, no FK checks
insert into auth.users (id, email) values ({owner}, 'owner@bench.test');
insert into public.businesses (id, name, slug, modules_json) values ({b}, 'Bench Exports', 'bench-exports', '{{"ordering": true}}');
insert into public.memberships (business_id, user_id, role) values ({b}, {owner}, 'owner');
insert into public.venues (business_id, id, name, slug)
select {b}, ('00000000-0000-4000-8000-' || lpad(to_hex(v), 12, '0'))::uuid, 'Venue ' || v, 'venue-' || v from generate_series(1, 4) v;
insert into public.orders (business_id, id, venue_id, order_number, channel, fulfilment, status, payment_status, guest_name, currency,
                           subtotal_cents, tax_cents, tip_cents, total_cents, placed_at, paid_at)
select {b}, ('00000000-0000-4000-a000-' || lpad(to_hex(g), 12, '0'))::uuid,
       ('00000000-0000-4000-8000-' || lpad(to_hex(1 + g % 4), 12, '0'))::uuid, g, 'web', 'pickup', 'completed', 'paid', 'Guest ' || g,
       'USD', 1390, 111, 100, 1601, now() - make_interval(secs => g * 20), now() - make_interval(secs => g * 20)
from generate_series(1, {orders}) g;
insert into public.order_items (business_id, order_id, venue_id, line_number, product_id, name, variant_name, modifiers, quantity,
                                unit_price_cents, unit_cost_cents, line_total_cents)
select {b}, ('00000000-0000-4000-a000-' || lpad(to_hex(g), 12, '0'))::uuid,
       ('00000000-0000-4000-8000-' || lpad(to_hex(1 + g % 4), 12, '0'))::uuid, l, extensions.gen_random_uuid(),
       case l when 1 then 'Latte' else 'Croissant' end, case l when 1 then 'Large' end,
       case l when 1 then '[{{"name": "Oat", "price_cents": 60}}, {{"name": "Shot", "price_cents": 80}}]'::jsonb else '[]'::jsonb end,
       l, case l when 1 then 690 else 350 end, 100, case l when 1 then 690 else 700 end
from generate_series(1, {orders}) g cross join generate_series(1, 2) l;
set session_replication_role = origin;
analyze;
"""


def peak_rss_kib(pid: int) -> int:
    """The process's peak resident set (VmHWM), KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def bare_copy(dsn: str, claims: Claims | None = None) -> tuple[int, int, float]:
    """COPY (the export's query) TO STDOUT on a direct connection, as the superuser or (claims) as PostgREST
    would run it for a caller: (rows, bytes, seconds)."""
    statement = sql.SQL("copy ({}) to stdout with (format csv, header)").format(sql.SQL(queries.get("export_orders")))  # type: ignore[arg-type]
    params = {"business_id": BUSINESS, "from": "-infinity", "to": "infinity"}
    size = lines = 0
    start = time.perf_counter()
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        if claims is not None:
            cur.execute("select set_config('role', %s, true), set_config('request.jwt.claims', %s, true)",
                        (claims.role, json.dumps(claims.as_dict())))
        with cur.copy(statement, params) as copy:
            for chunk in copy:
                size += len(chunk)
                lines += bytes(chunk).count(b"\n")
    return lines - 1, size, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=1_000_000)
    args = parser.parse_args()

    with bench_cluster() as cluster:
        started = time.perf_counter()
        with psycopg.connect(cluster.dsn, autocommit=True) as conn:
            conn.execute(sql.SQL(LOAD).format(b=sql.Literal(BUSINESS), owner=sql.Literal(OWNER), orders=sql.Literal(args.orders)))
        load_seconds = time.perf_counter() - started
        copy_rows, copy_bytes, copy_seconds = bare_copy(cluster.dsn)
        owner_rows, _, owner_seconds = bare_copy(cluster.dsn, Claims.user(OWNER, email="owner@bench.test"))

        port = free_port()
        env = {**os.environ, "BRIGADE_DATABASE_URL": cluster.dsn, "BRIGADE_JWT_SECRET": LOCAL_JWT_SECRET, "BRIGADE_LOG_FORMAT": "json"}
        server = subprocess.Popen([sys.executable, "-m", "brigade", "serve", "--port", str(port)], cwd=PROJECT_ROOT, env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            base = f"http://127.0.0.1:{port}/functions/v1"
            for _ in range(300):
                try:
                    if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            token = auth.sign(Claims.user(OWNER, email="owner@bench.test"), LOCAL_JWT_SECRET)
            before_rss, before_peak = rss_kib(server.pid), peak_rss_kib(server.pid)
            size = lines = 0
            start = time.perf_counter()
            with httpx.stream("GET", f"{base}/export", params={"type": "orders", "business_id": BUSINESS},
                              headers={"authorization": f"Bearer {token}"}, timeout=None) as r:
                assert r.status_code == 200, r.read()
                for chunk in r.iter_bytes():
                    size += len(chunk)
                    lines += chunk.count(b"\n")
            http_seconds = time.perf_counter() - start
            after_peak = peak_rss_kib(server.pid)
        finally:
            server.terminate()
            server.wait(timeout=30)

    http_rows = lines - 1
    assert http_rows == copy_rows == owner_rows == 2 * args.orders, (http_rows, copy_rows, owner_rows)
    copy_rate, owner_rate, http_rate = copy_rows / copy_seconds, owner_rows / owner_seconds, http_rows / http_seconds
    rows = [
        ("COPY (same query) TO STDOUT, direct connection, superuser", f"{copy_rate:,.0f} rows/s", "1.00", f"{copy_bytes / 2**20:,.0f} MiB"),
        ("the same COPY as the owner (role + JWT claims, RLS on), direct connection", f"{owner_rate:,.0f} rows/s",
         f"{owner_rate / copy_rate:.2f}", ""),
        ("GET /functions/v1/export?type=orders as the owner (RLS), HTTP streamed", f"{http_rate:,.0f} rows/s", f"{http_rate / copy_rate:.2f}",
         f"{size / 2**20:,.0f} MiB"),
    ]
    body = "| measure | result | ratio to COPY | CSV size |\n|---|---|---|---|\n" + "\n".join(f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows)
    body += (f"\n\n{args.orders:,} orders, {http_rows:,} CSV rows (one per line), loaded in {load_seconds:.0f} s. "
             f"The functions process (one uvicorn worker): resident {before_rss / 1024:.0f} MiB before the export, peak "
             f"{before_peak / 1024:.0f} MiB before and {after_peak / 1024:.0f} MiB after it — the export added "
             f"{(after_peak - before_peak) / 1024:.0f} MiB for a {size / 2**20:,.0f} MiB file "
             f"({(after_peak - before_peak) / max(1, size / 1024):.3f} of its size).")
    print(body)
    write_section("exports", body)


if __name__ == "__main__":
    main()
