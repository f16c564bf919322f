"""`brigade demo dispatch`: one delivery order on the demo business, through the running local stack.
It is offered to the seeded driver, who does not answer: the offer times out, the worker books a
courier network (the `log` courier unless configured live), and the network's signed webhooks move
it along while the ETA follows the courier. Start the stack first (`brigade up`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sys
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import psycopg
import stripe
from psycopg.rows import dict_row

from brigade.auth import Claims
from brigade.demo import DOWNTOWN, LATTE, STAFF, as_caller, step, wait_for
from brigade.settings import Settings
from brigade.stripe_events import session_completed

CROISSANT = "00000000-0000-4000-8000-0000000d0003"
GUEST_PHONE = "+15555550166"
OWNER = "00000000-0000-4000-8000-00000000a001"
DROPOFF = (40.7306, -73.9866)


def track(dsn: str, order: dict[str, Any]) -> dict[str, Any]:
    with as_caller(dsn, Claims.anon()) as conn:
        return conn.execute("select public.track_delivery(%s, %s) as r", (order["order_id"], order["access_token"])).fetchone()["r"]  # type: ignore[index]


def show(t: dict[str, Any]) -> str:
    eta = t["eta"][11:19] + " UTC" if t.get("eta") else "-"
    pos = f"({t['courier_latitude']:.4f}, {t['courier_longitude']:.4f})" if t.get("courier_latitude") is not None else "-"
    return f"status {t['status']:<10} courier {t.get('courier_name') or '-':<12} at {pos:<20} ETA {eta}"


def uber_post(base: str, settings: Settings, event: dict[str, Any]) -> str:
    body = json.dumps(event).encode()
    signature = hmac.new(settings.uber_webhook_signing_key.encode(), body, hashlib.sha256).hexdigest()
    r = httpx.post(f"{base}/delivery-webhook/uber", content=body, headers={"x-uber-signature": signature}, timeout=30)
    return f"{r.status_code} {r.json().get('outcome')}"


def doordash_post(base: str, settings: Settings, event: dict[str, Any]) -> str:
    r = httpx.post(f"{base}/delivery-webhook/doordash", content=json.dumps(event).encode(),
                   headers={"authorization": settings.doordash_webhook_auth}, timeout=30)
    return f"{r.status_code} {r.json().get('outcome')}"


def courier_events(delivery: dict[str, Any], provider: str) -> list[tuple[str, dict[str, Any]]]:
    """What the courier network would send: confirmation, positions on the way, pickup, drop-off."""
    venue = (delivery["pickup_latitude"], delivery["pickup_longitude"])
    path = [(venue[0] + (DROPOFF[0] - venue[0]) * f, venue[1] + (DROPOFF[1] - venue[1]) * f) for f in (-0.1, 0.0, 0.4, 0.8, 1.0)]
    t0 = datetime.now(timezone.utc)
    iso = lambda i: (t0 + timedelta(seconds=i)).isoformat().replace("+00:00", "Z")  # noqa: E731
    steps = [("courier assigned", "pickup", "DASHER_CONFIRMED"), ("at the venue", "pickup", "DASHER_CONFIRMED_PICKUP_ARRIVAL"),
             ("picked up", "pickup_complete", "DASHER_PICKED_UP"), ("on the way", "dropoff", "DASHER_CONFIRMED_DROPOFF_ARRIVAL"),
             ("delivered", "delivered", "DASHER_DROPPED_OFF")]
    out = []
    for i, ((label, uber_status, dd_name), (lat, lng)) in enumerate(zip(steps, path)):
        if provider == "uber":
            out.append((label, {"id": f"evt_demo_{uuid.uuid4().hex[:16]}", "kind": "event.delivery_status", "status": uber_status,
                                "created": iso(i), "delivery_id": delivery["provider_delivery_id"],
                                "data": {"id": delivery["provider_delivery_id"], "status": uber_status,
                                         "external_id": delivery["external_delivery_id"],
                                         "courier": {"name": "Uma (Uber)", "location": {"lat": lat, "lng": lng}}}}))
        else:
            out.append((label, {"event_name": dd_name, "created_at": iso(i), "external_delivery_id": delivery["external_delivery_id"],
                                "dasher_name": "Dana (DoorDash)", "dasher_location": {"lat": lat, "lng": lng}}))
    return out


def run(settings: Settings) -> int:
    base = settings.functions_url
    try:
        httpx.get(f"{base}/health", timeout=3).raise_for_status()
    except httpx.HTTPError:
        print(f"Brigade is not answering at {base}: start it with `brigade up` first.", file=sys.stderr)
        return 2
    with psycopg.connect(settings.dsn, row_factory=dict_row, autocommit=True) as db:
        rules = db.execute("select offer_timeout_seconds, own_driver_limit_seconds, fallback_providers from public.venue_dispatch_rules "
                           "where venue_id = %s", (DOWNTOWN,)).fetchone()
        db.execute("update public.drivers set is_online = true, is_available = true, location_at = now() "
                   "where id = '00000000-0000-4000-8000-00000000c601'")

        step("A guest orders a delivery (anon, place_order) and pays (signed Stripe webhook)")
        payload = {"venue_id": DOWNTOWN, "channel": "web", "fulfilment": "delivery",
                   "customer": {"name": "Demo Guest", "phone": GUEST_PHONE, "email": "guest@demo-cafe.test"},
                   "delivery_address": {"line1": "200 Broadway", "city": "New York", "postal_code": "10007", "country": "US",
                                        "latitude": DROPOFF[0], "longitude": DROPOFF[1]},
                   "items": [{"product_id": LATTE, "quantity": 1}, {"product_id": CROISSANT, "quantity": 1}], "tip_cents": 300}
        with as_caller(settings.dsn, Claims.anon()) as conn:
            order = conn.execute("select public.place_order(%s) as r", (json.dumps(payload),)).fetchone()["r"]  # type: ignore[index]
        event = session_completed(session_id=f"cs_demo_{uuid.uuid4().hex[:16]}", payment_intent=f"pi_demo_{uuid.uuid4().hex[:16]}",
                                  order_id=order["order_id"], business_id=order["business_id"], amount_cents=order["total_cents"])
        body = json.dumps(event)
        header = stripe.WebhookSignature.generate_signature_header(body, settings.stripe_webhook_secret)
        paid = httpx.post(f"{base}/stripe-webhook", content=body, headers={"stripe-signature": header}, timeout=30).json()
        print(f"order #{order['order_number']}: {order['total_cents'] / 100:.2f} {order['currency']} "
              f"(delivery fee {order['delivery_fee_cents']}, tip {order['tip_cents']}) -> {paid['outcome']}")

        step("The kitchen marks it ready; the worker offers it to the seeded driver")
        staff = Claims.user(STAFF, email="staff@demo-cafe.test")
        for status in ("accepted", "preparing", "ready"):
            with as_caller(settings.dsn, staff) as conn:
                conn.execute("select public.set_order_status(%s, %s)", (order["order_id"], status))
        offer = wait_for(db, "select o.id, o.expires_at - o.offered_at as timeout, o.distance_km, d.display_name from public.delivery_offers o "
                             "join public.deliveries x on x.business_id = o.business_id and x.id = o.delivery_id "
                             "join public.drivers d on d.business_id = o.driver_business_id and d.id = o.driver_id "
                             "where x.order_id = %s", (order["order_id"],))
        print(f"offered to {offer['display_name']} ({offer['distance_km']} km from the venue), open for {offer['timeout']}")

        step(f"The driver does not answer: the offer times out; with no other own driver (or after "
             f"{rules['own_driver_limit_seconds'] if rules else 120} s) the worker books "
             f"{', else '.join(rules['fallback_providers']) if rules else 'uber, else doordash'}")
        delivery = wait_for(db, "select * from public.deliveries where order_id = %s and status not in ('pending', 'offering', 'booking')",
                            (order["order_id"],), timeout=(rules["own_driver_limit_seconds"] if rules else 120) + 30)
        for o in db.execute("select o.round, o.status, o.responded_at - o.offered_at as after from public.delivery_offers o "
                            "join public.deliveries x on x.business_id = o.business_id and x.id = o.delivery_id where x.order_id = %s "
                            "order by o.offered_at", (order["order_id"],)):
            print(f"offer round {o['round']}: {o['status']} after {o['after']}")
        print(f"booked with {delivery['provider']}: {delivery['provider_delivery_id']}, fee {delivery['cost_cents']} cents "
              f"(incl. tip), tracking {delivery['tracking_url']}")
        print("customer's tracking page:", show(track(settings.dsn, order)))

        step(f"{delivery['provider']} calls back (signed webhooks to /functions/v1/delivery-webhook); the ETA follows the courier")
        post = uber_post if delivery["provider"] == "uber" else doordash_post
        for label, evt in courier_events(delivery, delivery["provider"]):
            outcome = post(base, settings, evt)
            print(f"{label:<16} -> {outcome:<12} | {show(track(settings.dsn, order))}")
        again = post(base, settings, courier_events(delivery, delivery["provider"])[0][1])
        print(f"a late 'courier assigned' after delivery -> {again} (never backwards)")

        step("Closed: the order is completed, the delivery's cost is known")
        with as_caller(settings.dsn, Claims.user(OWNER, email="owner@demo-cafe.test")) as conn:  # the margins view is the owner's
            final = conn.execute("select o.status as order_status, m.delivery_fee_cents, m.tip_cents, m.cost_cents, m.margin_cents "
                                 "from public.orders o join public.delivery_margins m on m.order_id = o.id where o.id = %s",
                                 (order["order_id"],)).fetchone()
        print(json.dumps(final, default=str))
        wait_for(db, "select 1 from public.notification_log where order_id = %s and template = 'delivery_delivered' and status = 'sent'",
                 (order["order_id"],))
        for n in db.execute("select template, status from public.notification_log where order_id = %s and template like 'delivery_%%' "
                            "order by created_at", (order["order_id"],)):
            print(f"sms {n['template']:<20} [{n['status']}]")
    return 0
