"""The conversational admin's seeded dataset and a fake OpenAI-compatible endpoint.

The dataset is a two-venue business (Harbour, Hill) with eleven customers, their orders on days
counted back from the venues' local today (day 0 orders fall between local midnight and now, older
ones at local noon), a refund, stock, bookings, deliveries and campaigns. It is defined here as data, so the
corpus's numbers can be checked by hand and the calendar periods (this week, this month) computed
from the same definition for whatever day the test runs on.
"""

from __future__ import annotations

import itertools
import json
import uuid
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import psycopg

from brigade.ask.tools import Context
from brigade.ask.understand import RuleAsker
from tests.conftest import Factory, Tenant
from tests.fakes.http import FakeServer, Recorded, Reply

PRODUCTS = {"Latte": (450, 120), "Croissant": (350, 90), "Flat White": (400, 110), "Bagel": (500, 150), "Brownie": (300, 80)}
H, L = "Harbour", "Hill"

# customer -> orders as (venue, days ago, [(product, quantity)])
ORDERS: dict[str, list[tuple[str, int, list[tuple[str, int]]]]] = {
    "Ada Lovelace": [(H, 0, [("Latte", 2), ("Croissant", 1)]), (H, 3, [("Flat White", 1), ("Bagel", 1)]), (H, 10, [("Latte", 1)]),
                     (L, 20, [("Bagel", 2)])],
    "Grace Hopper": [(H, 1, [("Latte", 3)]), (H, 5, [("Brownie", 2)]), (H, 40, [("Latte", 1), ("Croissant", 1)])],
    "Alan Turing": [(L, 0, [("Bagel", 1), ("Flat White", 2)]), (L, 2, [("Latte", 2)]), (L, 50, [("Croissant", 2)]),
                    (L, 75, [("Latte", 1)]), (L, 120, [("Bagel", 1)])],
    "Edsger Dijkstra": [(H, 2, [("Brownie", 1)])],
    "Barbara Liskov": [(L, 10, [("Latte", 4), ("Croissant", 4)]), (L, 20, [("Flat White", 3)])],
    "Donald Knuth": [(H, 40, [("Bagel", 2), ("Latte", 2)]), (H, 50, [("Latte", 1)])],
    "Frances Allen": [(L, 75, [("Croissant", 1)]), (L, 120, [("Latte", 1)])],
    "Ken Thompson": [(H, 200, [("Latte", 2)])],
    "Margaret Hamilton": [(H, 400, [("Bagel", 3)])],
    "John Backus": [(L, 1, [("Latte", 1)]), (H, 5, [("Croissant", 2)]), (L, 3, [("Flat White", 1)])],
    "Linus Torvalds": [(H, d, [("Latte", 5), ("Bagel", 2), ("Brownie", 1)]) for d in (0, 1, 2, 3, 4, 6)],
}
# (customer, order index) -> (refunded cents, {product: refunded units})
REFUNDS = {("Grace Hopper", 0): (450, {"Latte": 1})}
# (venue, sku, name, unit, quantity, critical level)
STOCK = [(H, "milk", "Whole milk", "l", 1.5, 2), (H, "oat", "Oat milk", "l", 0, 1), (H, "beans", "Espresso beans", "kg", 3, 2),
         (H, "butter", "Butter", "kg", 10, 1), (L, "milk", "Whole milk", "l", 2.5, 1), (L, "flour", "Flour", "kg", 0.5, 1),
         (L, "sugar", "Sugar", "kg", 5, 3)]
# (venue, provider, status, days ago, minutes to drop-off, rating, (customer, order index))
DELIVERIES = [(H, "uber", "delivered", 1, 30, 5, ("Linus Torvalds", 1)), (H, "uber", "delivered", 3, 40, 4, ("Linus Torvalds", 3)),
              (L, "doordash", "cancelled", 2, None, None, ("Alan Turing", 1)), (L, "doordash", "delivered", 5, 25, 3, ("Liskov", 0)),
              (H, "uber", "failed", 10, None, None, ("Ada Lovelace", 2)), (H, "doordash", "delivered", 20, 50, None, ("Knuth", 0))]
# (kind, name, channel, [sent to], skipped, [(customer, order index) attributed])
CAMPAIGNS = [("automation", "Winback 30", "sms", ["Donald Knuth", "Frances Allen", "Ken Thompson"], 1,
              [("Donald Knuth", 0), ("Frances Allen", 0)]),
             ("automation", "Birthday treat", "email", ["Ada Lovelace", "Grace Hopper"], 0, []),
             ("campaign", "Spring menu", "email", ["Ada Lovelace", "Alan Turing", "Barbara Liskov", "John Backus"], 0,
              [("Alan Turing", 1)])]

# (venue, days ago of the session, status, payment status, total, refunded): bookings of one activity per venue
BOOKINGS = [(H, 0, "confirmed", "paid", 3000, 0), (H, 0, "checked_in", "paid", 2000, 0), (L, 0, "pending_payment", "unpaid", 1500, 0),
            (H, 1, "completed", "partially_refunded", 2500, 500), (L, 10, "cancelled", "refunded", 1800, 1800)]


def full_name(short: str) -> str:
    return next(n for n in ORDERS if short in n)


@dataclass
class Dataset:
    tenant: Tenant
    venues: dict[str, uuid.UUID]
    manager_hill: uuid.UUID           # a manager limited to Hill
    time_zone: str
    customers: dict[str, uuid.UUID] = field(default_factory=dict)
    orders: dict[tuple[str, int], uuid.UUID] = field(default_factory=dict)

    @property
    def business_id(self) -> uuid.UUID:
        return self.tenant.business_id

    def venue_of(self, name: str) -> str:
        return str(self.venues[name])


def order_total(items: list[tuple[str, int]]) -> int:
    return sum(PRODUCTS[p][0] * q for p, q in items)


def net_orders(today: date) -> list[dict[str, Any]]:
    """Every order of the definition with its local date, venue, net total and net units (the oracle's input)."""
    out = []
    for customer, orders in ORDERS.items():
        for i, (venue, days, items) in enumerate(orders):
            refunded, units = REFUNDS.get((customer, i), (0, {}))
            out.append({"customer": customer, "venue": venue, "day": today - timedelta(days=days), "days": days,
                        "net": order_total(items) - refunded,
                        "items": [(p, q - units.get(p, 0), PRODUCTS[p][0] * q) for p, q in items]})
    return out


def period_range(period: str, today: date) -> tuple[date, date]:
    """[from, to) in local dates, computed independently of the SQL (the oracle for calendar periods)."""
    week = today - timedelta(days=today.weekday())
    month = today.replace(day=1)
    prev_month = (month - timedelta(days=1)).replace(day=1)
    return {"today": (today, today + timedelta(1)), "yesterday": (today - timedelta(1), today),
            "this_week": (week, today + timedelta(1)), "last_week": (week - timedelta(7), week),
            "this_month": (month, today + timedelta(1)), "last_month": (prev_month, month),
            "last_7_days": (today - timedelta(6), today + timedelta(1)), "last_30_days": (today - timedelta(29), today + timedelta(1)),
            "all_time": (date.min, date.max)}[period]


def oracle(tool: str, args: dict[str, Any], today: date, venue_names: dict[str, str]) -> dict[str, Any]:
    """Expected numbers for the period tools from the definition: sales_summary and best_sellers."""
    lo, hi = period_range(args["period"], today)
    venue = venue_names.get(str(args.get("venue_id"))) if args.get("venue_id") else None
    rows = [o for o in net_orders(today) if lo <= o["day"] < hi and (venue is None or o["venue"] == venue)]
    if tool == "sales_summary":
        return {"orders": [len(rows)], "revenue_cents": [sum(o["net"] for o in rows)]}
    units: dict[str, list[int]] = {}
    for o in rows:
        for product, qty, line_total in o["items"]:
            u = units.setdefault(product, [0, 0])
            u[0] += qty
            u[1] += round(line_total * qty / (line_total // PRODUCTS[product][0]))  # the units not refunded
    ranked = sorted(((p, q, r) for p, (q, r) in units.items() if q > 0), key=lambda x: (-x[1], -x[2]))[: args["n"]]
    return {"product_name": [p for p, _, _ in ranked], "quantity": [q for _, q, _ in ranked]}


_numbers = itertools.count(1)


def build(conn: psycopg.Connection[dict[str, Any]], factory: Factory) -> Dataset:
    """Seeds the dataset into this test's database (one business, both venues, all modules on)."""
    modules = {"ordering": True, "crm": True, "campaigns": True, "dispatch": True, "bookings": True}
    b = factory.business("Harbour & Hill", modules)
    venues = {H: factory.venue(b, H), L: factory.venue(b, L)}
    users = {role: factory.user(f"{role}-{uuid.uuid4().hex[:6]}@harbour.test") for role in ("owner", "manager", "staff", "driver")}
    for role, user in users.items():
        factory.member(b, user, role, [venues[H]] if role == "staff" else None)
    hill = factory.user(f"hill-{uuid.uuid4().hex[:6]}@harbour.test")
    factory.member(b, hill, "manager", [venues[L]])
    tz = conn.execute("select time_zone from public.venues where id = %s", (venues[H],)).fetchone()["time_zone"]  # type: ignore[index]
    ds = Dataset(Tenant(b, [venues[H], venues[L]], users), venues, hill, tz)
    products = {name: conn.execute("insert into public.products (business_id, name, price_cents, cost_cents) values (%s, %s, %s, %s) "
                                   "returning id", (b, name, price, cost)).fetchone()["id"]  # type: ignore[index]
                for name, (price, cost) in PRODUCTS.items()}
    conn.execute("set session_replication_role = replica")  # bulk history: no triggers (stats are built below)
    try:
        number = itertools.count(1)
        for name, orders in ORDERS.items():
            cid = conn.execute("insert into public.customers (business_id, full_name, email) values (%s, %s, %s) returning id",
                               (b, name, f"{name.split()[0].lower()}@example.test")).fetchone()["id"]  # type: ignore[index]
            ds.customers[name] = cid
            for i, (venue, days, items) in enumerate(orders):
                refunded, units = REFUNDS.get((name, i), (0, {}))
                total = order_total(items)
                oid = conn.execute(
                    "insert into public.orders (business_id, venue_id, order_number, channel, fulfilment, status, payment_status, "
                    "customer_id, currency, subtotal_cents, total_cents, refunded_cents, placed_at, paid_at, completed_at) "
                    "select %(b)s, %(v)s, %(n)s, 'web', 'pickup', 'completed', "
                    "case when %(refunded)s > 0 then 'partially_refunded' else 'paid' end::public.payment_status, %(c)s, 'USD', "
                    "%(total)s, %(total)s, %(refunded)s, t.at, t.at, t.at from ("
                    "  select case when %(days)s = 0"
                    "    then t0 + (now() - t0) * %(frac)s"
                    "    else (((now() at time zone %(tz)s)::date - %(days)s) + time '12:00') at time zone %(tz)s end as at"
                    "  from (select ((now() at time zone %(tz)s)::date)::timestamp at time zone %(tz)s as t0) x) t returning id",
                    {"b": b, "v": venues[venue], "n": next(number), "refunded": refunded, "c": cid, "total": total, "days": days,
                     "frac": (next(_numbers) % 9 + 1) / 10, "tz": tz}).fetchone()["id"]  # type: ignore[index]
                ds.orders[(name, i)] = oid
                for line, (product, qty) in enumerate(items, 1):
                    price, cost = PRODUCTS[product]
                    conn.execute("insert into public.order_items (business_id, order_id, venue_id, line_number, product_id, name, quantity, "
                                 "unit_price_cents, unit_cost_cents, line_total_cents, refunded_quantity) "
                                 "values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                                 (b, oid, venues[venue], line, products[product], product, qty, price, cost, price * qty,
                                  units.get(product, 0)))
        for venue, sku, name, unit, qty, critical in STOCK:
            conn.execute("insert into public.stock_items (business_id, venue_id, sku, name, unit, quantity, critical_level) "
                         "values (%s, %s, %s, %s, %s, %s, %s)", (b, venues[venue], sku, name, unit, qty, critical))
        for n, (venue, provider, status, days, minutes, rating, (who, idx)) in enumerate(DELIVERIES):
            conn.execute(
                "insert into public.deliveries (business_id, venue_id, order_id, status, provider, external_delivery_id, pickup, dropoff, "
                "currency, dropoff_pin, rating, created_at, delivered_at, cancelled_at) "
                "select %(b)s, %(v)s, %(o)s, %(status)s::public.delivery_status, %(provider)s, %(ext)s, '{}', '{}', 'USD', '1234', %(rating)s, t.at, "
                "case when %(status)s::text = 'delivered' then t.at + make_interval(mins => %(minutes)s) end, "
                "case when %(status)s::text = 'cancelled' then t.at end "
                "from (select (((now() at time zone %(tz)s)::date - %(days)s) + time '12:00') at time zone %(tz)s as at) t",
                {"b": b, "v": venues[venue], "o": ds.orders[(full_name(who), idx)], "status": status, "provider": provider,
                 "ext": f"ask-{n}", "rating": rating, "minutes": minutes or 0, "days": days, "tz": tz})
        activities = {venue: conn.execute("insert into public.activities (business_id, venue_id, name, duration_minutes, is_published) "
                                          "values (%s, %s, %s, 60, true) returning id", (b, venues[venue], f"Class at {venue}")).fetchone()["id"]  # type: ignore[index]
                      for venue in (H, L)}
        for n, (venue, days, status, paid, total, refunded) in enumerate(BOOKINGS):
            session = conn.execute(
                "insert into public.activity_sessions (business_id, activity_id, venue_id, starts_at, ends_at, capacity) "
                "select %(b)s, %(a)s, %(v)s, t.at, t.at + interval '1 hour', 10 from (select case when %(days)s = 0 "
                "  then t0 + (now() - t0) / 2 else (((now() at time zone %(tz)s)::date - %(days)s) + time '12:00') at time zone %(tz)s end as at "
                "  from (select ((now() at time zone %(tz)s)::date)::timestamp at time zone %(tz)s as t0) x) t returning id",
                {"b": b, "a": activities[venue], "v": venues[venue], "days": days, "tz": tz}).fetchone()["id"]  # type: ignore[index]
            conn.execute("insert into public.bookings (business_id, booking_number, venue_id, activity_id, session_id, status, payment_status, "
                         "party, party_size, currency, subtotal_cents, total_cents, refunded_cents, hold_expires_at, confirmed_at, cancel_reason) "
                         "values (%s, %s, %s, %s, %s, %s, %s, '{\"adult\": 2}', 2, 'USD', %s, %s, %s, now() + interval '10 minutes', "
                         "case when %s <> 'unpaid' then now() end, case when %s = 'cancelled' then 'guest cancelled' end)",
                         (b, f"BK-ASKBKG-{n:04d}", venues[venue], activities[venue], session, status, paid, total, total, refunded, paid,
                          status))
        segment = conn.execute("select id from public.segments where business_id = %s limit 1", (b,)).fetchone()["id"]  # type: ignore[index]
        for kind, name, channel, sent, skipped, attributed in CAMPAIGNS:
            if kind == "automation":
                source = conn.execute("insert into public.automations (business_id, name, trigger, channel, subject, body) values "
                                      "(%s, %s, %s, %s, %s, 'Hello') returning id",
                                      (b, name, "customer.dormant" if "Winback" in name else "customer.birthday", channel,
                                       "Hi" if channel == "email" else None)).fetchone()["id"]  # type: ignore[index]
            else:
                source = conn.execute("insert into public.campaigns (business_id, name, segment_id, channel, subject, body, status, "
                                      "scheduled_at, launched_at) values (%s, %s, %s, %s, 'Spring', 'Hello', 'sent', now(), now()) "
                                      "returning id", (b, name, segment, channel)).fetchone()["id"]  # type: ignore[index]
            column = "automation_id" if kind == "automation" else "campaign_id"
            sends: dict[str, uuid.UUID] = {}
            for who, status in [(w, "sent") for w in sent] + [("Ken Thompson", "skipped")] * skipped:
                send = conn.execute(
                    f"insert into public.campaign_sends (business_id, {column}, customer_id, channel, trigger_key, status, sent_at) "
                    "values (%s, %s, %s, %s, %s, %s, now()) returning id",
                    (b, source, ds.customers[who], channel, f"{who}:{status}", status)).fetchone()["id"]  # type: ignore[index]
                if status == "sent":
                    sends[who] = send
            for who, idx in attributed:
                conn.execute(f"insert into public.campaign_attributions (business_id, order_id, send_id, {column}, customer_id) "
                             "values (%s, %s, %s, %s, %s)", (b, ds.orders[(who, idx)], sends[who], source, ds.customers[who]))
    finally:
        conn.execute("set session_replication_role = origin")
    # the materialized stats the CRM keeps, from the orders (scored by their trigger), then the nightly pass
    conn.execute("insert into public.customer_venue_stats (business_id, venue_id, customer_id, total_orders, total_spent_cents, "
                 "first_order_at, last_order_at) select business_id, venue_id, customer_id, count(*), sum(total_cents - refunded_cents), "
                 "min(paid_at), max(paid_at) from public.orders where business_id = %s group by 1, 2, 3", (b,))
    conn.execute("select app.crm_rebucket(%s)", (b,))
    return ds


class FakeLlm:
    """An OpenAI-compatible /v1/chat/completions with tool calling. By default it 'understands' the
    user's question with the offline rules (standing in for a model) and answers the first round with
    those tool calls, the next with a short text; `script` replaces the first round's calls (the
    malicious ones), `broken` makes it fail."""

    def __init__(self, server: FakeServer) -> None:
        self.server = server
        self.counter = itertools.count(1)
        self.broken = False
        self.script: list[dict[str, Any]] | None = None
        server.route("POST", r"/v1/chat/completions", self._complete)

    def _complete(self, req: Recorded, _: Any) -> Reply:
        if self.broken:
            return Reply(500, {"error": {"message": "upstream overloaded", "type": "server_error"}})
        body = req.json
        n = next(self.counter)
        if any(m["role"] == "tool" for m in body["messages"]):
            return Reply(200, {"id": f"chatcmpl-{n}", "object": "chat.completion", "model": body["model"], "choices": [{
                "index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "Here you are."}}]})
        if self.script is not None:
            calls = self.script
        else:
            context = json.loads(body["messages"][0]["content"].split("CONTEXT_JSON: ", 1)[1])
            ctx = Context(uuid.UUID(int=0), context["business"], context["role"], context["currency"], "UTC",
                          {v["id"]: v["name"] for v in context["venues"]}, {})
            plan = RuleAsker().plan(body["messages"][-1]["content"], ctx)
            calls = [{"name": name, "arguments": args} for name, args in plan.calls]
        if not calls:
            return Reply(200, {"id": f"chatcmpl-{n}", "object": "chat.completion", "model": body["model"], "choices": [{
                "index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "I cannot answer that."}}]})
        return Reply(200, {"id": f"chatcmpl-{n}", "object": "chat.completion", "model": body["model"], "choices": [{
            "index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": None, "tool_calls": [
                {"id": f"call_{n}_{i}", "type": "function",
                 "function": {"name": c["name"], "arguments": c["arguments"] if isinstance(c["arguments"], str) else json.dumps(c["arguments"])}}
                for i, c in enumerate(calls)]}}]})

    def requests(self) -> list[dict[str, Any]]:
        return [r.json for r in self.server.calls("POST", r"/v1/chat/completions")]
