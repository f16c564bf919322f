"""Shared by the dispatch tests: fakes of Uber Direct and DoorDash Drive speaking their documented
shapes, a tenant with drivers, ready delivery orders, the worker run over visible events only, and
moving time by shifting rows (offer expiries, delayed events) rather than sleeping."""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import jwt
import psycopg

from brigade.auth import Claims
from brigade.db import open_pool
from brigade.settings import Settings
from tests.conftest import Api, Factory, Tenant
from tests.fakes.http import FakeServer, Recorded, Reply
from tests.ordering_kit import Menu, build_menu, order_payload, session_completed
from worker.consumer import Consumer
from worker.registry import Resources, load_plugins, registry

UBER_CUSTOMER = "cus_brigade_test"
UBER_SIGNING_KEY = "uber_test_signing_key"
DOORDASH_SECRET = base64.urlsafe_b64encode(b"d" * 32).decode().rstrip("=")
DOORDASH_AUTH = "Bearer dd_test_webhook_token"
VENUE = (40.7128, -74.0060)
DROPOFF = (40.7306, -73.9866)  # about 2.4 km away


def iso(at: datetime) -> str:
    return at.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


class FakeUber:
    """Uber Direct: OAuth token, delivery_quotes, deliveries (idempotency_key honoured), cancel."""

    def __init__(self, server: FakeServer) -> None:
        self.server = server
        self.n = itertools.count(1)
        self.quotes: dict[str, dict[str, Any]] = {}
        self.deliveries: dict[str, dict[str, Any]] = {}
        self.by_key: dict[str, dict[str, Any]] = {}
        self.refuse_quotes = False
        self.down = False
        self.cancel_refused = False
        base = rf"/v1/customers/{UBER_CUSTOMER}"
        server.route("POST", r"/oauth/v2/token", self._token)
        server.route("POST", base + r"/delivery_quotes", self._quote)
        server.route("POST", base + r"/deliveries", self._create)
        server.route("POST", base + r"/deliveries/(?P<id>[^/]+)/cancel", self._cancel)

    def _token(self, req: Recorded, _: Any) -> Reply:
        form = {k: v[0] for k, v in req.form.items()}
        if form.get("grant_type") != "client_credentials" or form.get("scope") != "eats.deliveries":
            return Reply(400, {"error": "invalid_request"})
        return Reply(200, {"access_token": "uber-token-1", "token_type": "Bearer", "expires_in": 2592000, "scope": "eats.deliveries"})

    def _authorised(self, req: Recorded) -> bool:
        return req.headers.get("authorization") == "Bearer uber-token-1"

    def _quote(self, req: Recorded, _: Any) -> Reply:
        if not self._authorised(req):
            return Reply(401, {"code": "unauthorized", "message": "invalid token"})
        if self.down:
            return Reply(503, {"code": "service_unavailable", "message": "try later"})
        if self.refuse_quotes:
            return Reply(400, {"code": "address_undeliverable", "message": "The specified location is not in a deliverable area."})
        body = req.json
        json.loads(body["pickup_address"]), json.loads(body["dropoff_address"])  # structured addresses as JSON strings
        now = datetime.now(timezone.utc)
        quote = {"kind": "delivery_quote", "id": f"dqt_{next(self.n):06d}", "created": iso(now), "expires": iso(now + timedelta(minutes=15)),
                 "fee": 725, "currency": "usd", "currency_type": "USD", "dropoff_eta": iso(now + timedelta(minutes=31)),
                 "duration": 31, "pickup_duration": 9}
        self.quotes[quote["id"]] = quote
        return Reply(200, quote)

    def _create(self, req: Recorded, _: Any) -> Reply:
        if not self._authorised(req):
            return Reply(401, {"code": "unauthorized", "message": "invalid token"})
        body = req.json
        key = body.get("idempotency_key")
        if key and key in self.by_key:
            return Reply(200, self.by_key[key])
        quote = self.quotes.get(body.get("quote_id", ""))
        if quote is None:
            return Reply(400, {"code": "invalid_params", "message": "quote_id is invalid"})
        now = datetime.now(timezone.utc)
        delivery_id = f"del_{uuid.uuid4().hex[:22]}"
        delivery = {"id": delivery_id, "quote_id": quote["id"], "status": "pending", "complete": False, "kind": "delivery",
                    "fee": quote["fee"], "currency": "usd", "tracking_url": f"https://delivery.uber.com/orders/{delivery_id}",
                    "external_id": body.get("external_id"), "pickup_eta": iso(now + timedelta(minutes=9)),
                    "dropoff_eta": quote["dropoff_eta"], "courier": None, "live_mode": False}
        self.deliveries[delivery_id] = delivery
        if key:
            self.by_key[key] = delivery
        return Reply(200, delivery)

    def _cancel(self, req: Recorded, match: Any) -> Reply:
        delivery = self.deliveries.get(match["id"])
        if delivery is None:
            return Reply(404, {"code": "delivery_not_found", "message": "The requested delivery does not exist."})
        if self.cancel_refused:
            return Reply(400, {"code": "noncancelable_delivery", "message": "Delivery cannot be cancelled."})
        delivery = {**delivery, "status": "canceled"}
        self.deliveries[match["id"]] = delivery
        return Reply(200, delivery)

    def created(self) -> list[Recorded]:
        return self.server.calls("POST", r".*/deliveries")


class FakeDoorDash:
    """DoorDash Drive v2: every call must carry a valid DD-JWT-V1 token; quotes, accept, get, cancel."""

    def __init__(self, server: FakeServer) -> None:
        self.server = server
        self.quotes: dict[str, dict[str, Any]] = {}
        self.deliveries: dict[str, dict[str, Any]] = {}
        self.refuse_quotes = False
        self.cancel_refused = False
        self.bad_tokens = 0
        server.route("POST", r"/drive/v2/quotes", self._auth(self._quote))
        server.route("POST", r"/drive/v2/quotes/(?P<id>[^/]+)/accept", self._auth(self._accept))
        server.route("GET", r"/drive/v2/deliveries/(?P<id>[^/]+)", self._auth(self._get))
        server.route("PUT", r"/drive/v2/deliveries/(?P<id>[^/]+)/cancel", self._auth(self._cancel))

    def _auth(self, handler: Any) -> Any:
        key = base64.urlsafe_b64decode(DOORDASH_SECRET + "=" * (-len(DOORDASH_SECRET) % 4))

        def route(req: Recorded, match: Any) -> Reply:
            token = req.headers.get("authorization", "").removeprefix("Bearer ")
            try:
                header = jwt.get_unverified_header(token)
                claims = jwt.decode(token, key, algorithms=["HS256"], audience="doordash")
                assert header.get("dd-ver") == "DD-JWT-V1" and claims["iss"] == "dev-1" and claims["kid"] == "key-1"
            except (jwt.PyJWTError, AssertionError):
                self.bad_tokens += 1
                return Reply(401, {"code": "authentication_error", "message": "The provided JWT is invalid."})
            return handler(req, match)
        return route

    def _quote(self, req: Recorded, _: Any) -> Reply:
        if self.refuse_quotes:
            return Reply(400, {"code": "validation_error", "message": "Dropoff address is outside the serviceable area."})
        body = req.json
        now = datetime.now(timezone.utc)
        quote = {"external_delivery_id": body["external_delivery_id"], "currency": "USD", "delivery_status": "quote", "fee": 975,
                 "pickup_time_estimated": iso(now + timedelta(minutes=10)), "dropoff_time_estimated": iso(now + timedelta(minutes=34)),
                 "order_value": body["order_value"], "tip": body.get("tip", 0)}
        self.quotes[body["external_delivery_id"]] = quote
        return Reply(200, quote)

    def _accept(self, req: Recorded, match: Any) -> Reply:
        ext = match["id"]
        if ext in self.deliveries:
            return Reply(409, {"code": "duplicate_delivery_id", "message": "Delivery already exists."})
        if ext not in self.quotes:
            return Reply(404, {"code": "not_found", "message": "Quote not found."})
        delivery = {**self.quotes[ext], "delivery_status": "created", "tracking_url": f"https://doordash.com/drive/portal/track/{ext}",
                    "support_reference": "1234567"}
        self.deliveries[ext] = delivery
        return Reply(200, delivery)

    def _get(self, req: Recorded, match: Any) -> Reply:
        delivery = self.deliveries.get(match["id"])
        return Reply(200, delivery) if delivery else Reply(404, {"code": "not_found", "message": "Delivery not found."})

    def _cancel(self, req: Recorded, match: Any) -> Reply:
        if match["id"] not in self.deliveries:
            return Reply(404, {"code": "not_found", "message": "Delivery not found."})
        if self.cancel_refused:
            return Reply(400, {"code": "cannot_be_cancelled", "message": "Delivery cannot be cancelled: the Dasher has picked it up."})
        self.deliveries[match["id"]]["delivery_status"] = "cancelled"
        return Reply(200, self.deliveries[match["id"]])


def courier_settings(settings: Settings, uber_url: str, doordash_url: str) -> Settings:
    return settings.model_copy(update={
        "courier_provider": "live", "uber_api_base": uber_url, "uber_auth_url": f"{uber_url}/oauth/v2/token",
        "uber_customer_id": UBER_CUSTOMER, "uber_client_id": "client-1", "uber_client_secret": "secret-1",
        "uber_webhook_signing_key": UBER_SIGNING_KEY, "doordash_api_base": doordash_url, "doordash_developer_id": "dev-1",
        "doordash_key_id": "key-1", "doordash_signing_secret": DOORDASH_SECRET, "doordash_webhook_auth": DOORDASH_AUTH,
        "courier_timeout_seconds": 5.0})


@dataclass
class Fleet:
    """A tenant with the dispatch module, a delivering venue, and drivers by name."""

    tenant: Tenant
    menu: Menu
    drivers: dict[str, uuid.UUID] = field(default_factory=dict)
    users: dict[str, uuid.UUID] = field(default_factory=dict)

    def claims(self, name: str) -> Claims:
        return Claims.user(self.users[name], email=f"{name}@drivers.test")


def make_fleet(conn: psycopg.Connection[dict[str, Any]], factory: Factory, *, offer_timeout: int = 30,
               own_limit: int = 120, providers: str = "{uber,doordash}", per_round: int = 1) -> Fleet:
    tenant = factory.tenant("Dispatch Diner", {"ordering": True, "dispatch": True})
    menu = build_menu(conn, tenant, loyalty=False)
    conn.execute("insert into public.venue_dispatch_rules (business_id, venue_id, offer_timeout_seconds, own_driver_limit_seconds, "
                 "fallback_providers, offers_per_round) values (%s, %s, %s, %s, %s, %s)",
                 (tenant.business_id, menu.venue_id, offer_timeout, own_limit, providers, per_round))
    return Fleet(tenant, menu)


def add_driver(conn: psycopg.Connection[dict[str, Any]], factory: Factory, fleet: Fleet, name: str, *, km_north: float = 1.0,
               pool: str = "dedicated", priority: int = 5, online: bool = True, home: uuid.UUID | None = None) -> uuid.UUID:
    """A driver of the fleet's business (or of `home`, assigned by the operator) about km_north from the venue."""
    user = factory.user(f"{name}-{uuid.uuid4().hex[:6]}@drivers.test")
    business = home or fleet.tenant.business_id
    driver = conn.execute("insert into public.drivers (business_id, user_id, display_name, phone, kind, is_online, latitude, longitude, "
                          "location_at) values (%s, %s, %s, '+12125550123', %s, %s, %s, %s, now()) returning id",
                          (business, user, name.title(), "shared_pool" if pool == "shared" else "dedicated", online,
                           VENUE[0] + km_north / 111.0, VENUE[1])).fetchone()["id"]  # type: ignore[index]
    conn.execute("insert into public.driver_business_assignments (business_id, driver_business_id, driver_id, pool, priority) "
                 "values (%s, %s, %s, %s, %s)", (fleet.tenant.business_id, business, driver, pool, priority))
    fleet.drivers[name], fleet.users[name] = driver, user
    return driver


def ready_order(api: Api, conn: psycopg.Connection[dict[str, Any]], fleet: Fleet, *, tip: int = 200, status: str = "ready",
                phone: str = "+1 212 555 0142") -> dict[str, Any]:
    """A paid delivery order moved to `status` by the venue's staff."""
    payload = order_payload(fleet.menu, fulfilment="delivery", tip_cents=tip,
                            customer={"name": "Dee Livery", "phone": phone, "email": "dee@example.test"},
                            delivery_address={"line1": "200 Broadway", "city": "New York", "postal_code": "10007", "country": "US",
                                              "latitude": DROPOFF[0], "longitude": DROPOFF[1]})
    order = api.run(Claims.anon(), "select public.place_order(%s) as r", (json.dumps(payload),))[0]["r"]
    conn.execute("select app.apply_stripe_event(%s)", (json.dumps(session_completed(order, f"cs_{order['order_id']}",
                                                                                  f"pi_{order['order_id']}")),))
    staff = fleet.tenant.claims("staff")
    for step in ("accepted", "preparing", "ready"):
        api.run(staff, "select public.set_order_status(%s, %s)", (order["order_id"], step))
        if step == status:
            break
    return order


async def run_worker(settings: Settings) -> Consumer:
    """Handle every event visible now (delayed ones stay queued), one at a time."""
    load_plugins(settings.plugin_modules)
    pool = await open_pool(settings.dsn, min_size=1, max_size=4, name="test-dispatch")
    try:
        consumer = Consumer(Resources.build(pool, settings, "test-dispatch"), registry)
        while batch := await consumer.read_batch():
            for event in batch:
                await consumer.process(event)
    finally:
        await pool.close()
    return consumer


def expire_offers(conn: psycopg.Connection[dict[str, Any]]) -> int:
    """Move time past every open offer: expiries in the past, their delayed events visible now."""
    conn.execute("update public.delivery_offers set expires_at = now() - interval '1 second' where status = 'pending'")
    return conn.execute("update pgmq.q_brigade_events set vt = clock_timestamp() "
                        "where message ->> 'topic' = 'delivery.offer_expired'").rowcount


def delivery_of(conn: psycopg.Connection[dict[str, Any]], order: dict[str, Any]) -> dict[str, Any]:
    row = conn.execute("select d.*, o.status as order_status from public.deliveries d join public.orders o "
                       "on o.business_id = d.business_id and o.id = d.order_id where d.order_id = %s", (order["order_id"],)).fetchone()
    assert row is not None, "no delivery for the order"
    return row


def offers(conn: psycopg.Connection[dict[str, Any]], delivery_id: Any) -> list[dict[str, Any]]:
    return conn.execute("select * from public.delivery_offers where delivery_id = %s order by offered_at, round", (delivery_id,)).fetchall()


def uber_event(delivery: dict[str, Any], status: str, at: datetime, *, event_id: str | None = None,
               courier: tuple[float, float] | None = None, kind: str = "event.delivery_status") -> dict[str, Any]:
    data: dict[str, Any] = {"id": delivery["provider_delivery_id"], "status": status, "external_id": delivery["external_delivery_id"],
                            "kind": "delivery", "complete": status in ("delivered", "canceled", "returned"), "fee": 725,
                            "tracking_url": f"https://delivery.uber.com/orders/{delivery['provider_delivery_id']}",
                            "dropoff_eta": iso(at + timedelta(minutes=12))}
    if courier:
        data["courier"] = {"name": "Uma Courier", "phone_number": "+15555550111", "vehicle_type": "car",
                           "location": {"lat": courier[0], "lng": courier[1]}}
    return {"id": event_id or f"evt_{uuid.uuid4().hex[:20]}", "kind": kind, "status": status, "created": iso(at), "live_mode": False,
            "delivery_id": delivery["provider_delivery_id"], "customer_id": UBER_CUSTOMER, "data": data}


def uber_signed(event: dict[str, Any], key: str = UBER_SIGNING_KEY) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(event).encode()
    return body, {"x-uber-signature": hmac.new(key.encode(), body, hashlib.sha256).hexdigest(), "content-type": "application/json"}


def doordash_event(delivery: dict[str, Any], name: str, at: datetime, *, dasher: tuple[float, float] | None = None,
                   **extra: Any) -> dict[str, Any]:
    event: dict[str, Any] = {"event_name": name, "created_at": iso(at), "external_delivery_id": delivery["external_delivery_id"],
                             "currency": "USD", "fee": 975, "dropoff_time_estimated": iso(at + timedelta(minutes=15)), **extra}
    if dasher:
        event["dasher_location"] = {"lat": dasher[0], "lng": dasher[1]}
        event["dasher_name"] = "Dana D."
    return event
