"""Gift-card benchmark: rate-limited balance checks per second as anon (each from its own IP, so every
limit is looked up and counted, none refused), and what paying an order wholly by gift card costs
next to paying it by card (the Stripe webhook's checkout.session.completed): the same paid fan-out,
measured side by side with pgbench's tpcb-like TPS on the same cluster.

    .venv/bin/python bench/gift_cards.py [--checks 2000] [--orders 400]
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import bench_cluster, pgbench_tps, write_section  # noqa: E402

BUSINESS = "00000000-0000-4000-8000-000000000001"
DOWNTOWN = "00000000-0000-4000-8000-000000000101"
LATTE, OAT, CROISSANT = ("00000000-0000-4000-8000-0000000d0001", "00000000-0000-4000-8000-0000000f1001",
                         "00000000-0000-4000-8000-0000000d0003")
ANON = json.dumps({"role": "anon"})


def as_anon(conn: psycopg.Connection[Any], ip: str) -> None:
    conn.execute("select set_config('role', 'anon', true), set_config('request.jwt.claims', %s, true), "
                 "set_config('request.headers', %s, true)", (ANON, json.dumps({"x-forwarded-for": ip})))


def issue_cards(dsn: str, n: int, cents: int) -> list[str]:
    """n paid cards (as the Checkout webhook issues them); their codes, from the gift_card.issued events."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        for _ in range(n):
            card = conn.execute("select app.buy_gift_card(%s) as r", (json.dumps(
                {"business_id": BUSINESS, "amount_cents": cents, "purchaser": {"email": "bench@gift.test"}}),)).fetchone()[0]
            conn.execute("select app.issue_gift_card(%s, %s, null, null, %s)", (BUSINESS, card["gift_card_id"], cents))
        rows = conn.execute("select message -> 'payload' ->> 'code' from pgmq.q_brigade_events "
                            "where message ->> 'topic' = 'gift_card.issued' order by msg_id desc limit %s", (n,)).fetchall()
        return [r[0] for r in rows]


def threaded(clients: int, work: Any) -> float:
    threads = [threading.Thread(target=work, args=(k,)) for k in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - started


def checks(dsn: str, n: int, codes: list[str], clients: int) -> float:
    """n check_gift_card_balance calls as anon, half with a wrong code; checks/s."""
    def run(k: int) -> None:
        with psycopg.connect(dsn) as conn:
            for i in range(n // clients):
                with conn.transaction():
                    as_anon(conn, f"10.{k}.{i // 250}.{i % 250}")
                    code = codes[i % len(codes)] if i % 2 else "WRONG-CODE-XXXX-XXXX"
                    conn.execute("select public.check_gift_card_balance(%s, %s)", (BUSINESS, code))
    return (n // clients * clients) / threaded(clients, run)


def orders(dsn: str, n: int, clients: int, codes: list[str] | None, tag: str) -> float:
    """n guest orders placed and paid, each in two requests (place, then pay): by gift card
    (apply_gift_card) or by card (the paid webhook); orders/s."""
    payload = {"venue_id": DOWNTOWN, "fulfilment": "pickup", "customer": {"name": "Bench"},
               "items": [{"product_id": LATTE, "modifier_ids": [OAT], "quantity": 1}, {"product_id": CROISSANT, "quantity": 2}]}

    def run(k: int) -> None:
        with psycopg.connect(dsn) as conn:
            for i in range(n // clients):
                ip = f"10.{tag}{k}.{i // 250}.{i % 250}"
                body = dict(payload, customer={"name": "Bench", "phone": f"+1{tag}{k:02d}{i:06d}"})
                with conn.transaction():
                    as_anon(conn, ip)
                    order = conn.execute("select public.place_order(%s)", (json.dumps(body),)).fetchone()[0]
                with conn.transaction():
                    if codes is not None:
                        as_anon(conn, ip)
                        conn.execute("select public.apply_gift_card(%s, %s, %s)",
                                     (order["order_id"], order["access_token"], codes[(k * n // clients + i) % len(codes)]))
                    else:
                        event = {"id": f"evt_{uuid.uuid4().hex}", "type": "checkout.session.completed", "created": 1, "data": {"object": {
                            "id": f"cs_{uuid.uuid4().hex}", "object": "checkout.session", "payment_status": "paid",
                            "amount_total": order["total_cents"], "payment_intent": f"pi_{uuid.uuid4().hex}",
                            "metadata": {"order_id": order["order_id"], "business_id": BUSINESS}}}}
                        conn.execute("select app.apply_stripe_event(%s)", (json.dumps(event),))
    return (n // clients * clients) / threaded(clients, run)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checks", type=int, default=2000)
    parser.add_argument("--orders", type=int, default=400)
    parser.add_argument("--pgbench-seconds", type=int, default=10)
    args = parser.parse_args()

    with bench_cluster(seed=True, rate_limits=True) as cluster:
        with psycopg.connect(cluster.dsn, autocommit=True) as conn:
            conn.execute("insert into public.stock_movements (business_id, venue_id, stock_item_id, delta, reason) "
                         "select business_id, venue_id, id, 1000000, 'delivery' from public.stock_items")
            # per-IP limits stay (each request has its own IP); the business-wide windows must not refuse the run
            conn.execute("select app.define_rate_limit('gift_card_code', 'business', 3600, %s)", (args.checks + args.orders + 10,))
            conn.execute("select app.define_rate_limit('place_order', 'business', 60, %s)", (args.orders * 4,))
        codes = issue_cards(cluster.dsn, args.orders, 5000)
        tps = pgbench_tps(cluster, seconds=args.pgbench_seconds)
        checked = checks(cluster.dsn, args.checks, codes, 4)
        with psycopg.connect(cluster.dsn, autocommit=True) as conn:
            rows = conn.execute("select action, scope, max_hits, window_seconds from app.rate_limits where action = 'gift_card_code'").fetchall()
            conn.execute("delete from app.rate_limits where action = 'gift_card_code'")
        unlimited = checks(cluster.dsn, args.checks, codes, 4)
        with psycopg.connect(cluster.dsn, autocommit=True) as conn:
            for action, scope, max_hits, window in rows:
                conn.execute("select app.define_rate_limit(%s, %s, %s, %s)", (action, scope, window, max_hits))
        by_gift = orders(cluster.dsn, args.orders, 4, codes, "2")
        by_card = orders(cluster.dsn, args.orders, 4, None, "3")
        with psycopg.connect(cluster.dsn, autocommit=True) as conn:
            refused = conn.execute("select coalesce(sum(refused), 0) from app.rate_limit_metrics() "
                                   "where action in ('gift_card_code', 'place_order')").fetchone()
            assert refused is not None and refused[0] == 0, "the run was refused: raise the limits"
            unpaid = conn.execute("select count(*) from public.orders where payment_status <> 'paid'").fetchone()
            assert unpaid is not None and unpaid[0] == 0, "every order must end paid"
            drift = conn.execute("select count(*) from public.gift_cards g where g.balance_cents <> (select coalesce(sum(l.amount_cents), 0) "
                                 "from public.gift_card_ledger l where l.business_id = g.business_id and l.gift_card_id = g.id)").fetchone()
            assert drift is not None and drift[0] == 0, "a balance differs from its ledger"

    rows = [
        ("pgbench tpcb-like, 4 clients", f"{tps:,.0f} TPS", f"{1:.2f}"),
        ("check_gift_card_balance as anon (limits counted, half wrong codes), 4 clients", f"{checked:,.0f} checks/s", f"{checked / tps:.2f}"),
        ("check_gift_card_balance as anon without the limits, 4 clients", f"{unlimited:,.0f} checks/s", f"{unlimited / tps:.2f}"),
        ("guest order placed + paid wholly by gift card (apply_gift_card), 4 clients", f"{by_gift:,.0f} orders/s", f"{by_gift / tps:.2f}"),
        ("guest order placed + paid by card (checkout.session.completed), 4 clients", f"{by_card:,.0f} orders/s", f"{by_card / tps:.2f}"),
    ]
    body = "| measure | result | ratio to pgbench TPS |\n|---|---|---|\n" + "\n".join(f"| {a} | {b} | {c} |" for a, b, c in rows)
    body += (f"\n\nChecks with limits / without = {checked / unlimited:.2f}: the limiter's share of a balance check (two "
             "counted hits, the per-IP one under an advisory lock, and the business window's lookup back over its hits)."
             f"\nGift card / card payment = {by_gift / by_card:.2f} (both run the same paid fan-out; the gift card adds the code "
             "lookup, its rate-limit hits and the ledger row). Every balance equals its ledger's sum at the end; none refused.\n")
    print(body)
    write_section("gift_cards", body)


if __name__ == "__main__":
    main()
