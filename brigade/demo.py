"""`brigade demo`: one order on the demo business, driven through the running local stack the way
the storefront, Stripe and the staff would — so a newcomer watches the kitchen ticket, the stock,
the points and the messages appear. Start the stack first (`make run`), then run this elsewhere.
"""

from __future__ import annotations

import json
import re
import sys
import time
import uuid
from contextlib import contextmanager
from typing import Any, Iterator

import httpx
import psycopg
import stripe
from psycopg.rows import dict_row

from brigade import printing
from brigade.auth import Claims
from brigade.settings import Settings
from brigade.stripe_events import session_completed

BUSINESS = "00000000-0000-4000-8000-000000000001"
DOWNTOWN = "00000000-0000-4000-8000-000000000101"
LATTE, LARGE, OAT, CROISSANT = (
    "00000000-0000-4000-8000-0000000d0001", "00000000-0000-4000-8000-0000000e0002",
    "00000000-0000-4000-8000-0000000f1001", "00000000-0000-4000-8000-0000000d0003")
STAFF = "00000000-0000-4000-8000-00000000a003"
MANAGER = "00000000-0000-4000-8000-00000000a002"
GUEST_PHONE = "+15555550100"
DANA_PHONE = "+15555550142"
WIN_BACK = "00000000-0000-4000-8000-0000000c0001"


@contextmanager
def as_caller(dsn: str, claims: Claims) -> Iterator[psycopg.Connection[dict[str, Any]]]:
    """One transaction as PostgREST would run it for these claims."""
    with psycopg.connect(dsn, row_factory=dict_row) as conn:
        with conn.transaction():
            conn.execute("select set_config('role', %s, true), set_config('request.jwt.claims', %s, true)",
                         (claims.role, json.dumps(claims.as_dict())))
            yield conn


def step(text: str) -> None:
    print(f"\n== {text}", flush=True)


def wait_for(conn: psycopg.Connection[dict[str, Any]], sql: str, params: Any, timeout: float = 30) -> Any:
    """Poll until the query returns a row (the worker runs in the other process)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = conn.execute(sql, params).fetchone()
        if row:
            return row
        time.sleep(0.2)
    raise SystemExit(f"timed out waiting for the worker ({timeout:.0f}s): is `brigade up` running?")


def last_code(settings: Settings) -> str:
    """The pickup code the `log` SMS provider wrote to the outbox file (the guest's "phone"), in
    whatever language the message is: the one 6-digit number of the paid-order text."""
    for line in reversed(settings.outbox_file.read_text().splitlines()):
        entry = json.loads(line)
        code = re.search(r"(?<![\d#°№])(\d{6})(?!\d)", entry.get("body", "")) if entry.get("kind") == "sms" else None
        if entry.get("to") == GUEST_PHONE and code:
            return code.group(1)
    raise SystemExit("no pickup code in the outbox file: are the log providers configured?")


def outbox_lines(settings: Settings) -> int:
    return len(settings.outbox_file.read_text().splitlines()) if settings.outbox_file.exists() else 0


def outbox_to(settings: Settings, since: int, *addresses: str) -> list[dict[str, Any]]:
    """What the log providers delivered to these phones and inboxes after line `since`, oldest first."""
    entries = [json.loads(line) for line in settings.outbox_file.read_text().splitlines()[since:]]
    return [e for e in entries if e.get("to") in addresses]


def speak(db: psycopg.Connection[dict[str, Any]], locale: str | None, **phones: str) -> None:
    """The demo customers choose a language: their customer records (found by phone when they pay) carry it."""
    if not locale:
        return
    for name, phone in phones.items():
        db.execute("insert into public.customers (business_id, full_name, phone, locale) values (%s, %s, %s, %s) "
                   "on conflict (business_id, phone) where phone is not null do update set locale = excluded.locale",
                   (BUSINESS, name, phone, locale))
    print(f"(the demo customers' language: {locale})")


def pay(settings: Settings, order: dict[str, Any]) -> str:
    """Checkout through the function, then Stripe's signed checkout.session.completed; the outcome."""
    base = settings.functions_url
    session = httpx.post(f"{base}/checkout", json={"order_id": order["order_id"], "access_token": order["access_token"]}, timeout=30).json()
    event = session_completed(session_id=session["session_id"], payment_intent=f"pi_demo_{uuid.uuid4().hex[:16]}",
                              order_id=order["order_id"], business_id=order["business_id"], amount_cents=order["total_cents"],
                              event_id=f"evt_demo_{uuid.uuid4().hex[:16]}")
    body = json.dumps(event)
    header = stripe.WebhookSignature.generate_signature_header(body, settings.stripe_webhook_secret)
    return httpx.post(f"{base}/stripe-webhook", content=body, headers={"stripe-signature": header}, timeout=30).json()["outcome"]


def win_back(settings: Settings, db: psycopg.Connection[dict[str, Any]]) -> None:
    """A regular lapses, the win-back automation texts her, she comes back: revenue against the rule."""
    step("A regular who stopped coming: Dana orders, agrees to texts at the counter, then 40 days pass")
    dana = {"venue_id": DOWNTOWN, "channel": "web", "fulfilment": "pickup", "customer": {"name": "Dana Regular", "phone": DANA_PHONE},
            "items": [{"product_id": LATTE, "variant_id": LARGE, "quantity": 1}]}
    with as_caller(settings.dsn, Claims.anon()) as conn:
        first = conn.execute("select public.place_order(%s) as r", (json.dumps(dana),)).fetchone()["r"]  # type: ignore[index]
    print(f"order #{first['order_number']}: {pay(settings, first)}")
    customer = db.execute("select customer_id from public.orders where id = %s", (first["order_id"],)).fetchone()["customer_id"]  # type: ignore[index]
    with as_caller(settings.dsn, Claims.user(MANAGER, email="manager@demo-cafe.test")) as conn:
        conn.execute("select public.set_consent(%s, 'SMS_MARKETING', true, null, 'admin')", (customer,))
    db.execute("update public.customer_venue_stats set last_order_at = now() - interval '40 days' where customer_id = %s", (customer,))
    print("consent log:", [r["action"] + " " + r["source"] for r in db.execute(
        "select action, source from public.customer_consent_log where customer_id = %s and channel = 'SMS_MARKETING' order by id", (customer,))])

    step("The nightly dormancy run (03:45 UTC in the worker; run now): the win-back rule matches her")
    started = db.execute("select clock_timestamp() as t").fetchone()["t"]  # type: ignore[index]
    print("sends enqueued:", db.execute("select app.evaluate_dormant_automations(%s) as n", (BUSINESS,)).fetchone()["n"])  # type: ignore[index]
    send = wait_for(db, "select id, status, recipient, attribution_ends_at from public.campaign_sends where automation_id = %s "
                        "and customer_id = %s and status not in ('scheduled', 'sending') and created_at >= %s order by created_at desc limit 1",
                    (WIN_BACK, customer, started))
    print(f"send {send['status']} to {send['recipient']}; attribution window open until {send['attribution_ends_at']:%Y-%m-%d %H:%M} UTC")
    for line in reversed(settings.outbox_file.read_text().splitlines()):
        entry = json.loads(line)
        if entry.get("kind") == "sms" and entry.get("to") == DANA_PHONE and not re.search(r"\d{6}", entry["body"]):  # not a pickup code
            print("Dana's phone shows:", entry["body"])
            break

    step("Dana comes back and orders again")
    dana["items"] = [{"product_id": LATTE, "variant_id": LARGE, "quantity": 1}, {"product_id": CROISSANT, "quantity": 1}]
    with as_caller(settings.dsn, Claims.anon()) as conn:
        again = conn.execute("select public.place_order(%s) as r", (json.dumps(dana),)).fetchone()["r"]  # type: ignore[index]
    print(f"order #{again['order_number']}: {again['total_cents'] / 100:.2f} {again['currency']} -> {pay(settings, again)}")
    perf = db.execute("select name, sends, delivered, orders, revenue_cents, message_cost_cents from public.campaign_performance "
                      "where id = %s", (WIN_BACK,)).fetchone()
    print(f"'{perf['name']}': {perf['sends']} sent, {perf['orders']} orders, revenue recovered "  # type: ignore[index]
          f"{perf['revenue_cents'] / 100:.2f} USD, messages cost {float(perf['message_cost_cents']) / 100:.4f} USD")  # type: ignore[index]


def run(settings: Settings, locale: str | None = None) -> int:
    base = settings.functions_url
    try:
        httpx.get(f"{base}/health", timeout=3).raise_for_status()
    except httpx.HTTPError:
        print(f"Brigade is not answering at {base}: start it with `make run` first.", file=sys.stderr)
        return 2
    with psycopg.connect(settings.dsn, row_factory=dict_row, autocommit=True) as db:
        speak(db, locale, **{"Demo Guest": GUEST_PHONE, "Dana Regular": DANA_PHONE})
        since = outbox_lines(settings)
        stock_before = {r["sku"]: float(r["quantity"]) for r in db.execute(
            "select sku, quantity from public.stock_items where venue_id = %s", (DOWNTOWN,))}

        step("A guest orders on the storefront (anon, through place_order)")
        payload = {"venue_id": DOWNTOWN, "channel": "web", "fulfilment": "pickup",
                   "customer": {"name": "Demo Guest", "phone": GUEST_PHONE, "email": "guest@demo-cafe.test"},
                   "items": [{"product_id": LATTE, "variant_id": LARGE, "modifier_ids": [OAT], "quantity": 1},
                             {"product_id": CROISSANT, "quantity": 2}], "tip_cents": 150}
        with as_caller(settings.dsn, Claims.anon()) as conn:
            order = conn.execute("select public.place_order(%s) as r", (json.dumps(payload),)).fetchone()["r"]  # type: ignore[index]
        print(f"order #{order['order_number']}: total {order['total_cents'] / 100:.2f} {order['currency']} "
              f"(subtotal {order['subtotal_cents']}, tax {order['tax_cents']}, tip {order['tip_cents']})")

        step("Checkout (POST /functions/v1/checkout)")
        session = httpx.post(f"{base}/checkout", json={"order_id": order["order_id"], "access_token": order["access_token"]},
                             timeout=30).json()
        print(f"session {session['session_id']} -> {session['url']}")

        step("Stripe calls back: checkout.session.completed, signed (POST /functions/v1/stripe-webhook)")
        event = session_completed(session_id=session["session_id"], payment_intent=f"pi_demo_{uuid.uuid4().hex[:16]}",
                                  order_id=order["order_id"], business_id=order["business_id"], amount_cents=order["total_cents"],
                                  event_id=f"evt_demo_{uuid.uuid4().hex[:16]}")
        body = json.dumps(event)
        header = stripe.WebhookSignature.generate_signature_header(body, settings.stripe_webhook_secret)
        for attempt in ("first delivery", "Stripe retries it"):
            r = httpx.post(f"{base}/stripe-webhook", content=body, headers={"stripe-signature": header}, timeout=30)
            print(f"{attempt}: {r.status_code} {r.json()['outcome']}")

        step("The fan-out, written in the same transaction")
        ticket = db.execute("select items, allergens, status from public.kitchen_tickets where order_id = %s", (order["order_id"],)).fetchone()
        print("kitchen ticket:", json.dumps(ticket["items"]), "| allergens:", ticket["allergens"], "|", ticket["status"])  # type: ignore[index]
        for job in db.execute("select p.name, p.protocol, j.document from public.print_jobs j join public.printers p "
                              "on p.business_id = j.business_id and p.id = j.printer_id where j.order_id = %s order by j.seq",
                              (order["order_id"],)):
            print(f"\nprint job for {job['name']} ({job['protocol']}), as the printer prints it:")
            print(printing.render_text(job["document"]), end="")
        after = {r["sku"]: float(r["quantity"]) for r in db.execute("select sku, quantity from public.stock_items where venue_id = %s", (DOWNTOWN,))}
        print("stock used:", {k: round(stock_before[k] - v, 3) for k, v in after.items() if stock_before[k] != v})
        pts = db.execute("select a.balance from public.loyalty_accounts a join public.orders o on o.customer_id = a.customer_id "
                         "where o.id = %s", (order["order_id"],)).fetchone()
        print("loyalty balance:", pts["balance"] if pts else 0)

        step("The worker sends the pickup code and the receipt (log providers: see the other terminal)")
        wait_for(db, "select 1 from public.notification_log where order_id = %s and channel = 'sms' and status = 'sent'", (order["order_id"],))
        wait_for(db, "select 1 from public.notification_log where order_id = %s and channel = 'email' and status <> 'pending'", (order["order_id"],))
        code = last_code(settings)
        for n in db.execute("select channel, template, recipient, status, provider from public.notification_log where order_id = %s "
                            "order by created_at", (order["order_id"],)):
            print(f"{n['channel']:<6} {n['template']:<12} -> {n['recipient']} [{n['status']} via {n['provider']}]")
        print(f"the guest's phone shows code {code}")
        for entry in outbox_to(settings, since, GUEST_PHONE, "guest@demo-cafe.test"):
            print(f"the guest's {'phone' if entry['kind'] == 'sms' else 'inbox'} shows:",
                  entry.get("body") or (entry["subject"] + " | " + entry["text"].replace("\n", " | ")))

        step("Staff move it along; 'ready' makes the worker call the guest")
        staff = Claims.user(STAFF, email="staff@demo-cafe.test")
        for status in ("accepted", "preparing", "ready"):
            with as_caller(settings.dsn, staff) as conn:
                conn.execute("select public.set_order_status(%s, %s)", (order["order_id"], status))
            print("->", status)
        wait_for(db, "select 1 from public.notification_log where order_id = %s and channel = 'voice' and status = 'sent'", (order["order_id"],))
        print("call placed to", GUEST_PHONE)

        step("The guest shows the code at the counter")
        with as_caller(settings.dsn, staff) as conn:
            wrong = conn.execute("select public.verify_pickup_code(%s, '000000') as r", (order["order_id"],)).fetchone()["r"]  # type: ignore[index]
        print("a wrong code:", wrong)
        with as_caller(settings.dsn, staff) as conn:
            right = conn.execute("select public.verify_pickup_code(%s, %s) as r", (order["order_id"], code)).fetchone()["r"]  # type: ignore[index]
        print("the right code:", right)
        final = db.execute("select o.status, p.revenue_cents, p.cost_of_goods_cents, p.stripe_fee_cents, p.messaging_cost_cents, p.margin_cents "
                           "from public.orders o join public.order_profit p on p.order_id = o.id where o.id = %s", (order["order_id"],)).fetchone()
        print(f"order #{order['order_number']} is {final['status']}; profit: {json.dumps({k: float(v) for k, v in final.items() if k != 'status'})}")  # type: ignore[index, union-attr]
        win_back(settings, db)

        step("The receipt (GET /functions/v1/receipt with the order's access token)")
        r = httpx.get(f"{base}/receipt", params={"order_id": order["order_id"], "token": order["access_token"]}, timeout=30)
        r.raise_for_status()
        path = settings.data_dir / "receipts" / f"receipt-{order['order_number']}.pdf"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(r.content)
        print(f"the receipt emailed to the guest (HTML, with the PDF attached) is also at {base}/receipt?order_id={order['order_id']}"
              f"&token={order['access_token']}&format=html")
        print(f"receipt PDF of order #{order['order_number']}: {path.resolve()}")
    return 0
