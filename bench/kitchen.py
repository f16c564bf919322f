"""Kitchen costs, measured side by side on one migrated cluster with the demo seed:

- paying an order (app.apply_stripe_event: the whole fan-out) with no printer at the venue, against
  the same with three printers (bar, kitchen, receipt), whose print jobs and station parts are
  written in the paying transaction (the overhead as a ratio);
- a printer's idle poll (app.printer_poll: token lookup, last-seen update, next-job lookup), against
  a `select 1` round trip;
- verify_pin (bcrypt, cost 10), against the same round trip: the slow hash is the point, this says
  how slow.

    .venv/bin/python bench/kitchen.py [--orders 150]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import bench_cluster, write_section  # noqa: E402
from brigade.stripe_events import session_completed  # noqa: E402

BUSINESS = "00000000-0000-4000-8000-000000000001"
DOWNTOWN = "00000000-0000-4000-8000-000000000101"
STAFF = "00000000-0000-4000-8000-00000000a003"
LATTE, OAT, CROISSANT = ("00000000-0000-4000-8000-0000000d0001", "00000000-0000-4000-8000-0000000f1001",
                         "00000000-0000-4000-8000-0000000d0003")


def as_role(conn: psycopg.Connection[Any], role: str, sub: str | None = None) -> None:
    claims = {"role": role, **({"sub": sub, "aud": "authenticated"} if sub else {})}
    conn.execute("select set_config('role', %s, true), set_config('request.jwt.claims', %s, true)", (role, json.dumps(claims)))


def pay_ms(conn: psycopg.Connection[Any], n: int) -> list[float]:
    """Place n orders as anon (stock topped up first), then time paying each (ms per payment)."""
    conn.execute("insert into public.stock_movements (business_id, venue_id, stock_item_id, delta, reason) "
                 "select business_id, venue_id, id, 10000, 'delivery' from public.stock_items where venue_id = %s", (DOWNTOWN,))
    orders = []
    for i in range(n):
        body = {"venue_id": DOWNTOWN, "fulfilment": "pickup", "customer": {"name": "Bench", "phone": f"+1555{uuid.uuid4().int % 10**7:07d}"},
                "items": [{"product_id": LATTE, "modifier_ids": [OAT], "quantity": 1}, {"product_id": CROISSANT, "quantity": 2}]}
        with conn.transaction():
            as_role(conn, "anon")
            orders.append(conn.execute("select public.place_order(%s)", (json.dumps(body),)).fetchone()[0])  # type: ignore[index]
    times = []
    for o in orders:
        event = session_completed(session_id=f"cs_{uuid.uuid4().hex}", payment_intent=f"pi_{uuid.uuid4().hex}",
                                  order_id=o["order_id"], business_id=o["business_id"], amount_cents=o["total_cents"])
        t0 = time.perf_counter()
        with conn.transaction():
            as_role(conn, "service_role")
            conn.execute("select app.apply_stripe_event(%s)", (json.dumps(event),))
        times.append((time.perf_counter() - t0) * 1000)
    return times


def each_ms(conn: psycopg.Connection[Any], n: int, sql: str, params: Any = None, role: str = "service_role",
            sub: str | None = None) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        with conn.transaction():
            as_role(conn, role, sub)
            conn.execute(sql, params)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--orders", type=int, default=150)
    args = parser.parse_args()
    with bench_cluster(seed=True) as cluster, psycopg.connect(cluster.dsn, autocommit=True) as conn:
        seeded = conn.execute("select count(*) from public.printers where venue_id = %s", (DOWNTOWN,)).fetchone()[0]  # type: ignore[index]
        conn.execute("update public.printers set is_active = false where venue_id = %s", (DOWNTOWN,))
        without = statistics.median(pay_ms(conn, args.orders))
        conn.execute("update public.printers set is_active = true where venue_id = %s", (DOWNTOWN,))
        conn.execute("insert into public.printers (business_id, venue_id, name, kind, protocol, device_token_hash) "
                     "values (%s, %s, 'Front', 'receipt', 'star_cloudprnt', 'bench-receipt')", (BUSINESS, DOWNTOWN))
        with_printers = statistics.median(pay_ms(conn, args.orders))
        jobs = conn.execute("select count(*) from public.print_jobs").fetchone()[0]  # type: ignore[index]
        conn.execute("update public.print_jobs set status = 'printed'")  # an idle printer: nothing waiting
        roundtrip = each_ms(conn, 500, "select 1")
        poll = each_ms(conn, 500, "select app.printer_poll('prt_demo_bar_star', '200 OK', null)")
        with conn.transaction():
            as_role(conn, "authenticated", STAFF)
            conn.execute("select public.set_my_pin(%s, '583920')", (BUSINESS,))
        pin = each_ms(conn, 20, "select public.verify_pin(%s, '583920', 'bench')", (BUSINESS,), "authenticated", STAFF)
        pin_roundtrip = each_ms(conn, 20, "select 1", None, "authenticated", STAFF)
    body = f"""
| measure | median | ratio |
|---|---|---|
| pay an order, no active printer at the venue | {without:.1f} ms | 1.00 |
| pay an order, {seeded + 1} printers (print jobs + station parts in the same transaction) | {with_printers:.1f} ms | {with_printers / without:.2f} |
| `select 1` round trip (one transaction, role + claims set) | {roundtrip:.2f} ms | 1.00 |
| a printer's idle poll (`app.printer_poll`) | {poll:.2f} ms | {poll / roundtrip:.2f} |
| `verify_pin`, right PIN (bcrypt cost 10, grant written) | {pin:.1f} ms | {pin / pin_roundtrip:.0f} × a round trip |

{args.orders} orders each way ({jobs} print jobs written); 500 polls; 20 PIN checks; one connection, sequential.
"""
    write_section("kitchen", body)
    print(body)


if __name__ == "__main__":
    main()
