"""Shared by the order-flow tests: a menu with stock and recipes, order payloads, fakes of Stripe,
Twilio and Resend that answer in their documented shapes, and signed Stripe events."""

from __future__ import annotations

import base64
import itertools
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import psycopg
import stripe

from brigade.settings import Settings
from tests.conftest import Tenant
from tests.fakes.http import FakeServer, Recorded, Reply


@dataclass
class Menu:
    """The catalog of one tenant: ids by name."""

    tenant: Tenant
    venue_id: uuid.UUID
    products: dict[str, uuid.UUID] = field(default_factory=dict)
    variants: dict[str, uuid.UUID] = field(default_factory=dict)
    modifiers: dict[str, uuid.UUID] = field(default_factory=dict)
    stock: dict[str, uuid.UUID] = field(default_factory=dict)


def one(conn: psycopg.Connection[dict[str, Any]], sql: str, params: Any = None) -> Any:
    row = conn.execute(sql, params).fetchone()
    assert row is not None
    return next(iter(row.values()))


def build_menu(conn: psycopg.Connection[dict[str, Any]], tenant: Tenant, *, loyalty: bool = True) -> Menu:
    """Latte (Small/Large, optional oat milk, extra shots up to 2), Croissant; milk, oat, beans and
    butter stock at the published venue with recipes; delivery and dine-in offered; 8% tax."""
    b, venue = tenant.business_id, tenant.venues[0]
    menu = Menu(tenant, venue)
    if loyalty:
        conn.execute("update public.businesses set modules_json = modules_json || '{\"loyalty\": true, \"crm\": true}' where id = %s", (b,))
    conn.execute("update public.venues set accepts_delivery = true, accepts_dine_in = true, delivery_fee_cents = 299, "
                 "delivery_radius_km = 5, tax_rate_bps = 800, latitude = 40.7128, longitude = -74.0060 "
                 "where business_id = %s and id = %s", (b, venue))
    cat = one(conn, "insert into public.product_categories (business_id, name) values (%s, 'Coffee') returning id", (b,))
    menu.products["latte"] = one(conn, "insert into public.products (business_id, category_id, name, price_cents, cost_cents) "
                                       "values (%s, %s, 'Latte', 450, 120) returning id", (b, cat))
    menu.products["croissant"] = one(conn, "insert into public.products (business_id, name, price_cents, cost_cents) "
                                           "values (%s, 'Croissant', 350, 90) returning id", (b,))
    for name, adj, cost, default in (("small", 0, 0, True), ("large", 100, 30, False)):
        menu.variants[name] = one(conn, "insert into public.product_variants (business_id, product_id, name, price_adjustment_cents, "
                                        "cost_adjustment_cents, is_default) values (%s, %s, %s, %s, %s, %s) returning id",
                                  (b, menu.products["latte"], name.title(), adj, cost, default))
    milk = one(conn, "insert into public.modifier_groups (business_id, name, min_choices, max_choices) values (%s, 'Milk', 0, 1) returning id", (b,))
    shots = one(conn, "insert into public.modifier_groups (business_id, name, min_choices, max_choices) values (%s, 'Extra shots', 0, 2) returning id", (b,))
    for group, name, price, cost in ((milk, "oat", 60, 20), (shots, "shot", 80, 15), (shots, "decaf shot", 80, 15)):
        menu.modifiers[name] = one(conn, "insert into public.modifiers (business_id, group_id, name, price_cents, cost_cents) "
                                         "values (%s, %s, %s, %s, %s) returning id", (b, group, name.title(), price, cost))
    for group in (milk, shots):
        conn.execute("insert into public.product_modifier_groups (business_id, product_id, group_id) values (%s, %s, %s)",
                     (b, menu.products["latte"], group))
    for sku, name, qty, critical in (("milk", "Whole milk (L)", 10, 2), ("oat", "Oat milk (L)", 1, 0.5),
                                     ("beans", "Espresso beans (kg)", 5, 1), ("butter", "Butter (kg)", 2, 0.5)):
        menu.stock[sku] = one(conn, "insert into public.stock_items (business_id, venue_id, sku, name, critical_level) "
                                    "values (%s, %s, %s, %s, %s) returning id", (b, venue, sku, name, critical))
        conn.execute("insert into public.stock_movements (business_id, venue_id, stock_item_id, delta, reason) values (%s, %s, %s, %s, 'count')",
                     (b, venue, menu.stock[sku], qty))
    for column, ref, sku, qty in (("product_id", menu.products["latte"], "milk", 0.25), ("product_id", menu.products["latte"], "beans", 0.018),
                                  ("variant_id", menu.variants["large"], "milk", 0.1), ("modifier_id", menu.modifiers["oat"], "oat", 0.25),
                                  ("modifier_id", menu.modifiers["shot"], "beans", 0.009), ("product_id", menu.products["croissant"], "butter", 0.02)):
        conn.execute(f"insert into public.recipe_lines (business_id, {column}, stock_sku, quantity) values (%s, %s, %s, %s)", (b, ref, sku, qty))
    return menu


def order_payload(menu: Menu, **overrides: Any) -> dict[str, Any]:
    """A pickup order: a large oat latte with a shot, and two croissants (4.50+1.00+0.60+0.80 + 2*3.50)."""
    payload: dict[str, Any] = {
        "venue_id": str(menu.venue_id), "channel": "web", "fulfilment": "pickup",
        "customer": {"name": "Ada Guest", "phone": "+1 212 555 0199", "email": "ada@example.test"},
        "items": [
            {"product_id": str(menu.products["latte"]), "variant_id": str(menu.variants["large"]),
             "modifier_ids": [str(menu.modifiers["oat"]), str(menu.modifiers["shot"])], "quantity": 1},
            {"product_id": str(menu.products["croissant"]), "quantity": 2},
        ],
        "tip_cents": 100,
    }
    payload.update(overrides)
    return payload


EXPECTED_SUBTOTAL = 450 + 100 + 60 + 80 + 2 * 350  # 1390
EXPECTED_TAX = round(EXPECTED_SUBTOTAL * 0.08)  # 111
EXPECTED_TOTAL = EXPECTED_SUBTOTAL + EXPECTED_TAX + 100  # 1601


class FakeStripe:
    """Checkout Sessions, Refunds, Customers and Connect Transfers as Stripe's API answers them, idempotency keys honoured.

    `refuse_destinations` are connected accounts a transfer to is refused (400, as for a closed account);
    `on_transfer(transfer)` runs before the answer is sent (e.g. to deliver Stripe's webhook first)."""

    def __init__(self, server: FakeServer) -> None:
        self.server = server
        self.by_key: dict[str, Reply] = {}
        self.counter = itertools.count(1)
        self.refund_status = "succeeded"
        server.route("POST", r"/v1/checkout/sessions", self._idempotent(self._session))
        server.route("POST", r"/v1/refunds", self._idempotent(self._refund))
        server.route("GET", r"/v1/checkout/sessions/(?P<id>cs_[A-Za-z0-9_]+)", self._retrieve)
        self.stored: dict[str, dict[str, Any]] = {}
        server.route("POST", r"/v1/transfers", self._idempotent(self._transfer))
        server.route("POST", r"/v1/customers", self._idempotent(self._customer))
        server.route("GET", r"/v1/transfers", self._list_transfers)
        self.transfers_made: list[dict[str, Any]] = []
        self.refuse_destinations: set[str] = set()
        self.on_transfer: Any = None

    def _idempotent(self, handler: Any) -> Any:
        def route(req: Recorded, match: Any) -> Reply:
            key = req.headers.get("idempotency-key", "")
            if key and key in self.by_key:
                return self.by_key[key]
            reply = handler(req)
            if key:
                self.by_key[key] = reply
            return reply
        return route

    def _session(self, req: Recorded) -> Reply:
        form = {k: v[0] for k, v in req.form.items()}
        n = next(self.counter)
        lines = {k.split("]")[0][len("line_items["):] for k in form if k.startswith("line_items[")}
        amount = sum(int(form[f"line_items[{i}][quantity]"]) * int(form[f"line_items[{i}][price_data][unit_amount]"]) for i in lines)
        session = {"id": f"cs_test_{n:04d}", "object": "checkout.session", "mode": "payment", "status": "open",
                   "payment_status": "unpaid", "url": f"https://checkout.stripe.test/c/pay/cs_test_{n:04d}",
                   "expires_at": int(form["expires_at"]), "client_reference_id": form.get("client_reference_id"),
                   "amount_total": amount, "currency": form["line_items[0][price_data][currency]"].lower(), "payment_intent": None,
                   "metadata": {k[len("metadata["):-1]: v for k, v in form.items() if k.startswith("metadata[")}}
        self.stored[session["id"]] = session
        return Reply(200, session)

    def _retrieve(self, req: Recorded, match: Any) -> Reply:
        session = self.stored.get(match["id"])
        if session is None:
            return Reply(404, {"error": {"type": "invalid_request_error", "code": "resource_missing",
                                         "message": f"No such checkout.session: '{match['id']}'"}})
        return Reply(200, session)

    def pay(self, session_id: str, payment_intent: str) -> dict[str, Any]:
        """The customer pays on Stripe's page: the session completes (what the webhook will then carry)."""
        session = self.stored[session_id]
        session.update(status="complete", payment_status="paid", payment_intent=payment_intent, url=None)
        return session

    def retrieved(self) -> list[Recorded]:
        return self.server.calls("GET", r"/v1/checkout/sessions/.+")

    def _refund(self, req: Recorded) -> Reply:
        form = {k: v[0] for k, v in req.form.items()}
        n = next(self.counter)
        if self.refund_status == "error":
            return Reply(400, {"error": {"type": "invalid_request_error", "code": "charge_already_refunded",
                                         "message": "Charge has already been refunded."}})
        return Reply(200, {"id": f"re_test_{n:04d}", "object": "refund", "amount": int(form["amount"]),
                           "payment_intent": form["payment_intent"], "status": self.refund_status, "currency": "usd",
                           "metadata": {k[len("metadata["):-1]: v for k, v in form.items() if k.startswith("metadata[")}})

    def _transfer(self, req: Recorded) -> Reply:
        form = {k: v[0] for k, v in req.form.items()}
        if form["destination"] in self.refuse_destinations:
            return Reply(400, {"error": {"type": "invalid_request_error", "code": "account_invalid", "param": "destination",
                                         "message": f"The destination account {form['destination']} cannot receive transfers."}})
        n = next(self.counter)
        transfer = {"id": f"tr_test_{n:04d}", "object": "transfer", "amount": int(form["amount"]), "amount_reversed": 0,
                    "currency": form["currency"], "destination": form["destination"], "reversed": False,
                    "transfer_group": form.get("transfer_group"), "description": form.get("description"),
                    "created": int(time.time()), "livemode": False, "reversals": {"object": "list", "data": [], "has_more": False},
                    "metadata": {k[len("metadata["):-1]: v for k, v in form.items() if k.startswith("metadata[")}}
        self.transfers_made.append(transfer)
        if self.on_transfer:
            self.on_transfer(transfer)
        return Reply(200, transfer)

    def _list_transfers(self, req: Recorded, _: Any) -> Reply:
        group = req.query.get("transfer_group", [None])[0]
        found = [t for t in reversed(self.transfers_made) if group is None or t["transfer_group"] == group]
        limit = int(req.query.get("limit", ["10"])[0])
        return Reply(200, {"object": "list", "url": "/v1/transfers", "has_more": len(found) > limit, "data": found[:limit]})

    def _customer(self, req: Recorded) -> Reply:
        form = {k: v[0] for k, v in req.form.items()}
        n = next(self.counter)
        return Reply(200, {"id": f"cus_test{n:04d}", "object": "customer", "email": form.get("email"), "name": form.get("name"),
                           "created": int(time.time()), "livemode": False,
                           "metadata": {k[len("metadata["):-1]: v for k, v in form.items() if k.startswith("metadata[")}})

    def customers(self) -> list[Recorded]:
        return self.server.calls("POST", r"/v1/customers")

    def transfers(self) -> list[Recorded]:
        return self.server.calls("POST", r"/v1/transfers")

    def sessions(self) -> list[Recorded]:
        return self.server.calls("POST", r"/v1/checkout/sessions")


class FakeTwilio:
    """Messages and Calls of the 2010-04-01 API."""

    def __init__(self, server: FakeServer, account_sid: str) -> None:
        self.server = server
        self.counter = itertools.count(1)
        self.fail_calls = False
        base = rf"/2010-04-01/Accounts/{account_sid}"
        server.route("POST", base + r"/Messages\.json", self._message)
        server.route("POST", base + r"/Calls\.json", self._call)

    def _message(self, req: Recorded, _: Any) -> Reply:
        form = {k: v[0] for k, v in req.form.items()}
        return Reply(201, {"sid": f"SM{next(self.counter):032d}", "status": "queued", "to": form["To"],
                           "from": form.get("From") or form.get("MessagingServiceSid"), "body": form["Body"], "num_segments": "1", "price": None, "price_unit": "USD"})

    def _call(self, req: Recorded, _: Any) -> Reply:
        if self.fail_calls:
            return Reply(400, {"code": 21215, "message": "Geo permission configuration is not permitting call", "status": 400})
        form = {k: v[0] for k, v in req.form.items()}
        return Reply(201, {"sid": f"CA{next(self.counter):032d}", "status": "queued", "to": form["To"], "from": form["From"]})

    def messages(self) -> list[dict[str, str]]:
        return [{k: v[0] for k, v in r.form.items()} for r in self.server.calls("POST", r".*/Messages\.json")]

    def calls(self) -> list[dict[str, str]]:
        return [{k: v[0] for k, v in r.form.items()} for r in self.server.calls("POST", r".*/Calls\.json")]


class FakeResend:
    def __init__(self, server: FakeServer) -> None:
        self.server = server
        server.route("POST", r"/emails", lambda req, _: Reply(200, {"id": f"em_{uuid.uuid4().hex[:12]}"}))

    def emails(self) -> list[dict[str, Any]]:
        return [r.json for r in self.server.calls("POST", r"/emails")]


def provider_settings(settings: Settings, stripe_url: str, twilio_url: str, resend_url: str) -> Settings:
    return settings.model_copy(update={
        "payments_provider": "stripe", "stripe_secret_key": "sk_test_brigade", "stripe_api_base": stripe_url,
        "stripe_webhook_secret": "whsec_test_secret",
        "sms_provider": "twilio", "twilio_account_sid": "AC" + "1" * 32, "twilio_auth_token": "tok", "twilio_from_number": "+15005550006",
        "twilio_api_base": twilio_url, "email_provider": "resend", "resend_api_key": "re_test", "resend_api_url": resend_url,
        "resend_webhook_secret": "whsec_" + base64.b64encode(b"brigade-test-svix-secret").decode(),
    })


def stripe_event(event_type: str, obj: dict[str, Any], event_id: str | None = None) -> dict[str, Any]:
    return {"id": event_id or f"evt_{uuid.uuid4().hex[:24]}", "object": "event", "api_version": "2025-10-29",
            "created": int(time.time()), "livemode": False, "type": event_type, "data": {"object": obj}}


def session_completed(order: dict[str, Any], session_id: str, payment_intent: str = "pi_test_1",
                      payment_status: str = "paid", event_type: str = "checkout.session.completed") -> dict[str, Any]:
    return stripe_event(event_type, {
        "id": session_id, "object": "checkout.session", "payment_status": payment_status, "status": "complete",
        "amount_total": order["total_cents"], "currency": "usd", "payment_intent": payment_intent,
        "metadata": {"order_id": order["order_id"], "business_id": order["business_id"]}})


def payment_intent(order: dict[str, Any], event_type: str, pi: str = "pi_test_1") -> dict[str, Any]:
    return stripe_event(event_type, {
        "id": pi, "object": "payment_intent", "amount": order["total_cents"], "amount_received":
        order["total_cents"] if event_type.endswith("succeeded") else 0, "status": "succeeded" if event_type.endswith("succeeded") else "requires_payment_method",
        "metadata": {"order_id": order["order_id"], "business_id": order["business_id"]}})


def signed(event: dict[str, Any], secret: str) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(event)
    header = stripe.WebhookSignature.generate_signature_header(body, secret)
    return body.encode(), {"stripe-signature": header, "content-type": "application/json"}
