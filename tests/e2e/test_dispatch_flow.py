"""Dispatch end to end: a ready delivery order offered to own drivers by the worker, accepted or
declined or timed out, booked with fake Uber Direct / DoorDash Drive servers on 127.0.0.1, their
webhooks verified and applied (replayed and shuffled), cancelled (allowed and refused), and closed
with proof of delivery and earnings."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import psycopg
import pytest

from brigade.auth import Claims
from brigade.settings import Settings
from functions.app import create_app
from tests.conftest import Api, Factory, ServerThread, sqlstate
from tests.dispatch_kit import (DOORDASH_AUTH, DROPOFF, VENUE, FakeDoorDash, FakeUber, add_driver, courier_settings, delivery_of,
                                doordash_event, expire_offers, make_fleet, offers, ready_order, run_worker, uber_event, uber_signed)
from tests.fakes.http import FakeServer

Conn = psycopg.Connection[dict[str, Any]]


@dataclass
class Outside:
    uber: FakeUber
    doordash: FakeDoorDash
    settings: Settings
    functions: ServerThread

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
        return httpx.post(f"{self.functions.url}/functions/v1/{path}", content=body, headers=headers, timeout=10)


@pytest.fixture
def outside(settings: Settings) -> Iterator[Outside]:
    with FakeServer() as u, FakeServer() as d:
        s = courier_settings(settings, u.url, d.url)
        uber, doordash = FakeUber(u), FakeDoorDash(d)
        with ServerThread(create_app(s)) as server:
            yield Outside(uber, doordash, s, server)


def respond(api: Api, fleet: Any, name: str, offer_id: Any, accept: bool) -> dict[str, Any]:
    return api.run(fleet.claims(name), "select public.respond_offer(%s, %s, 'busy') as r", (offer_id, accept))[0]["r"]


async def test_own_driver_accepts_and_delivers_with_proof(api: Api, conn: Conn, factory: Factory, outside: Outside) -> None:
    fleet = make_fleet(conn, factory)
    add_driver(conn, factory, fleet, "near", km_north=0.5)
    add_driver(conn, factory, fleet, "far", km_north=3.0)
    order = ready_order(api, conn, fleet, tip=200)
    await run_worker(outside.settings)

    delivery = delivery_of(conn, order)
    assert delivery["status"] == "offering"
    [offer] = offers(conn, delivery["id"])
    assert offer["driver_id"] == fleet.drivers["near"] and offer["status"] == "pending"
    assert timedelta(seconds=29) < offer["expires_at"] - offer["offered_at"] <= timedelta(seconds=30)
    # the far driver sees no offer; the near one sees exactly theirs
    assert api.run(fleet.claims("far"), "select id from public.delivery_offers") == []
    assert [r["id"] for r in api.run(fleet.claims("near"), "select id from public.delivery_offers")] == [offer["id"]]

    assert respond(api, fleet, "near", offer["id"], True)["status"] == "accepted"
    delivery = delivery_of(conn, order)
    assert (delivery["status"], delivery["provider"], delivery["driver_id"]) == ("assigned", "own", fleet.drivers["near"])
    first_eta = delivery["eta"]
    assert first_eta is not None
    # the offer's timeout event still fires later, and changes nothing
    expire_offers(conn)
    await run_worker(outside.settings)
    assert delivery_of(conn, order)["status"] == "assigned"

    near = fleet.claims("near")
    api.run(near, "select public.update_delivery_status(%s, 'picked_up')", (delivery["id"],))
    # live ETA: positions along the way move the courier and bring the ETA closer
    for step, at in ((0.5, datetime.now(timezone.utc)), (0.9, datetime.now(timezone.utc) + timedelta(seconds=20))):
        lat, lon = VENUE[0] + (DROPOFF[0] - VENUE[0]) * step, VENUE[1] + (DROPOFF[1] - VENUE[1]) * step
        api.run(near, "insert into public.driver_locations (business_id, driver_id, latitude, longitude, recorded_at) "
                      "values (%s, %s, %s, %s, %s)", (fleet.tenant.business_id, fleet.drivers["near"], lat, lon, at))
        row = delivery_of(conn, order)
        assert (round(row["courier_latitude"], 6), round(row["courier_longitude"], 6)) == (round(lat, 6), round(lon, 6))
        remaining_km = 2.4 * (1 - step)
        assert abs((row["eta"] - at).total_seconds() - remaining_km / 25 * 3600) < 60
    # a late, older position changes nothing
    api.run(near, "insert into public.driver_locations (business_id, driver_id, latitude, longitude, recorded_at) "
                  "values (%s, %s, %s, %s, now() - interval '5 minutes')", (fleet.tenant.business_id, fleet.drivers["near"], VENUE[0], VENUE[1]))
    assert delivery_of(conn, order)["courier_latitude"] != VENUE[0]

    no_proof = sqlstate(lambda: api.run(near, "select public.complete_delivery(%s, '{}')", (delivery["id"],)))
    wrong_pin = api.run(near, "select public.complete_delivery(%s, %s) as r", (delivery["id"], json.dumps({"pin": "99999"})))[0]["r"]
    assert no_proof == "BR506" and (wrong_pin["delivered"], wrong_pin["reason"], wrong_pin["attempts_left"]) == (False, "wrong_pin", 4)
    pin = delivery_of(conn, order)["dropoff_pin"]
    done = api.run(near, "select public.complete_delivery(%s, %s) as r",
                   (delivery["id"], json.dumps({"pin": pin, "photo_url": "https://img.test/door.jpg", "latitude": DROPOFF[0],
                                               "longitude": DROPOFF[1]})))[0]["r"]
    final = delivery_of(conn, order)
    assert (final["status"], final["order_status"], final["proof_pin_verified"]) == ("delivered", "completed", True)
    assert (final["proof_photo_url"], final["proof_latitude"]) == ("https://img.test/door.jpg", DROPOFF[0])

    earning = conn.execute("select * from public.driver_earnings where delivery_id = %s", (delivery["id"],)).fetchone()
    assert earning is not None
    distance_fee = round(float(final["distance_km"]) * 80)
    gross = 300 + distance_fee + 200
    assert (earning["base_fee_cents"], earning["distance_fee_cents"], earning["tip_cents"], earning["surge_cents"]) == (300, distance_fee, 200, 0)
    assert earning["platform_fee_cents"] == round((300 + distance_fee) * 0.1)
    assert earning["net_cents"] == gross - earning["platform_fee_cents"]
    assert done["cost_cents"] == final["cost_cents"] == gross
    assert conn.execute("select app.order_delivery_cost(%s) as c", (order["order_id"],)).fetchone() == {"c": gross}

    summary = api.run(near, "select * from public.driver_earnings_summary(now() - interval '1 day', now() + interval '1 day')")
    assert [(r["deliveries"], r["net_cents"]) for r in summary] == [(1, earning["net_cents"])]
    assert api.run(fleet.claims("far"), "select * from public.driver_earnings_summary(now() - interval '1 day', now() + interval '1 day')") == []

    # the customer rates the driver once, from the tracking page (order id and token)
    rate = "select public.rate_delivery(%s, %s, %s) as r"
    assert sqlstate(lambda: api.run(Claims.anon(), rate, (order["order_id"], order["access_token"], 6))) == "22023"
    rated = api.run(Claims.anon(), rate, (order["order_id"], order["access_token"], 4))[0]["r"]
    assert (float(rated["driver_rating"]), rated["driver_rating_count"]) == (4.0, 1)
    assert sqlstate(lambda: api.run(Claims.anon(), rate, (order["order_id"], order["access_token"], 5))) == "BR508"

    # the customer was texted each step, with the tracking link, once per status
    await run_worker(outside.settings)
    texts = conn.execute("select template, status, provider from public.notification_log where order_id = %s and template like 'delivery_%%' "
                         "order by created_at", (order["order_id"],)).fetchall()
    assert [(t["template"], t["status"]) for t in texts] == [("delivery_assigned", "sent"), ("delivery_picked_up", "sent"),
                                                            ("delivery_delivered", "sent")]
    outbox = [json.loads(line) for line in outside.settings.outbox_file.read_text().splitlines()]
    assigned_sms = [e for e in outbox if e.get("kind") == "sms" and "will deliver it" in e.get("body", "")]
    assert len(assigned_sms) == 1 and f"/orders/{order['order_id']}/track?token=" in assigned_sms[0]["body"] and pin in assigned_sms[0]["body"]


async def test_decline_then_timeout_then_fallback_books_uber(api: Api, conn: Conn, factory: Factory, outside: Outside) -> None:
    fleet = make_fleet(conn, factory)
    add_driver(conn, factory, fleet, "ann", km_north=0.4)
    add_driver(conn, factory, fleet, "bob", km_north=1.5)
    order = ready_order(api, conn, fleet, tip=150)
    await run_worker(outside.settings)
    delivery = delivery_of(conn, order)

    [first] = offers(conn, delivery["id"])
    assert first["driver_id"] == fleet.drivers["ann"]
    declined = respond(api, fleet, "ann", first["id"], False)
    assert (declined["status"], declined["next"]) == ("declined", "offered")
    # answering again is refused: the offer is closed
    assert sqlstate(lambda: respond(api, fleet, "ann", first["id"], True)) == "BR502"
    second = offers(conn, delivery["id"])[1]
    assert (second["driver_id"], second["round"], second["status"]) == (fleet.drivers["bob"], 2, "pending")

    # bob lets it time out: the delayed event expires the offer, nobody is left, the worker books Uber
    assert expire_offers(conn) >= 1
    await run_worker(outside.settings)
    assert [o["status"] for o in offers(conn, delivery["id"])] == ["declined", "expired"]
    assert sqlstate(lambda: respond(api, fleet, "bob", second["id"], True)) == "BR502"
    booked = delivery_of(conn, order)
    assert (booked["status"], booked["provider"], booked["cost_cents"]) == ("requested", "uber", 725 + 150)
    assert booked["provider_delivery_id"].startswith("del_") and booked["tracking_url"].startswith("https://delivery.uber.com/")

    [token] = outside.uber.server.calls("POST", r"/oauth/v2/token")
    assert token.form["client_id"] == ["client-1"]
    [quote] = outside.uber.server.calls("POST", r".*/delivery_quotes")
    assert json.loads(quote.json["dropoff_address"])["street_address"][0] == "200 Broadway"
    [create] = outside.uber.created()
    assert create.json["external_id"] == create.json["idempotency_key"] == booked["external_delivery_id"]
    assert create.json["quote_id"] == quote_id_of(outside) and create.json["tip"] == 150
    assert {i["name"] for i in create.json["manifest_items"]} == {"Latte", "Croissant"}

    # a duplicated booking event books nothing more
    conn.execute("select app.emit('delivery.book_provider', %s, %s)", (fleet.tenant.business_id,
                                                                      json.dumps({"delivery_id": str(booked["id"]), "providers": ["uber"]})))
    await run_worker(outside.settings)
    assert len(outside.uber.created()) == 1 and delivery_of(conn, order)["provider_delivery_id"] == booked["provider_delivery_id"]
    assert conn.execute("select app.order_delivery_cost(%s) as c", (order["order_id"],)).fetchone() == {"c": 875}


def quote_id_of(outside: Outside) -> str:
    return next(iter(outside.uber.quotes))


async def test_uber_refuses_so_doordash_books_with_a_signed_jwt(api: Api, conn: Conn, factory: Factory, outside: Outside) -> None:
    fleet = make_fleet(conn, factory)  # no drivers at all: straight to the networks
    outside.uber.refuse_quotes = True
    order = ready_order(api, conn, fleet, tip=0)
    await run_worker(outside.settings)
    booked = delivery_of(conn, order)
    assert (booked["status"], booked["provider"], booked["cost_cents"]) == ("requested", "doordash", 975)
    assert booked["provider_delivery_id"] == booked["external_delivery_id"]
    assert outside.doordash.bad_tokens == 0 and booked["external_delivery_id"] in outside.doordash.deliveries
    [quote] = outside.doordash.server.calls("POST", r"/drive/v2/quotes")
    assert quote.json["order_value"] == booked["order_value_cents"] and quote.json["dropoff_location"] == {"lat": DROPOFF[0], "lng": DROPOFF[1]}


async def test_every_network_refusing_fails_the_delivery_and_one_down_retries(api: Api, conn: Conn, factory: Factory,
                                                                              outside: Outside) -> None:
    fleet = make_fleet(conn, factory)
    outside.uber.refuse_quotes = outside.doordash.refuse_quotes = True
    order = ready_order(api, conn, fleet)
    await run_worker(outside.settings)
    failed = delivery_of(conn, order)
    assert failed["status"] == "failed"
    assert "not in a deliverable area" in failed["failure_reason"] and "outside the serviceable area" in failed["failure_reason"]

    outside.uber.refuse_quotes = False
    outside.uber.down = True
    second = ready_order(api, conn, fleet, phone="+1 212 555 0143")
    consumer = await run_worker(outside.settings)
    assert consumer.failed == 1  # Uber down, DoorDash refusing: retried later, not failed
    assert delivery_of(conn, second)["status"] == "booking"


async def test_own_drivers_first_then_shared_pool(api: Api, conn: Conn, factory: Factory, outside: Outside, operator: Any) -> None:
    fleet = make_fleet(conn, factory, per_round=3)
    pool_home = factory.business("Driver Pool Co", {"dispatch": True})
    add_driver(conn, factory, fleet, "shared_close", km_north=0.2, pool="shared", home=pool_home)
    add_driver(conn, factory, fleet, "dedicated_far", km_north=4.0)
    add_driver(conn, factory, fleet, "dedicated_low_priority", km_north=1.0, priority=9)
    add_driver(conn, factory, fleet, "dedicated_best", km_north=1.5, priority=1)
    add_driver(conn, factory, fleet, "offline", km_north=0.1, online=False)
    add_driver(conn, factory, fleet, "too_far", km_north=20)
    order = ready_order(api, conn, fleet)
    await run_worker(outside.settings)
    names = {v: k for k, v in fleet.drivers.items()}
    made = offers(conn, delivery_of(conn, order)["id"])
    ranked = sorted(made, key=lambda o: o["score"])
    assert [names[o["driver_id"]] for o in ranked] == ["dedicated_best", "dedicated_low_priority", "dedicated_far"]
    # the shared-pool driver (of another business) gets the next round, once the dedicated ones pass
    for o in made:
        respond(api, fleet, names[o["driver_id"]], o["id"], False)
    [pooled] = [o for o in offers(conn, delivery_of(conn, order)["id"]) if o["status"] == "pending"]
    assert names[pooled["driver_id"]] == "shared_close" and pooled["round"] == 2
    assert respond(api, fleet, "shared_close", pooled["id"], True)["status"] == "accepted"
    # the pool driver reads the delivery they took, not the other business's orders
    assert [r["id"] for r in api.run(fleet.claims("shared_close"), "select id from public.deliveries")] == [delivery_of(conn, order)["id"]]
    assert api.run(fleet.claims("shared_close"), "select id from public.orders") == []


async def test_prep_time_rule_dispatches_ahead_of_ready(api: Api, conn: Conn, factory: Factory, outside: Outside) -> None:
    fleet = make_fleet(conn, factory)
    conn.execute("update public.venue_dispatch_rules set dispatch_on = 'prep_time', lead_minutes = 4 where business_id = %s",
                 (fleet.tenant.business_id,))
    conn.execute("update public.products set prep_time_minutes = 12 where business_id = %s", (fleet.tenant.business_id,))
    add_driver(conn, factory, fleet, "kim")
    order = ready_order(api, conn, fleet, status="accepted")
    due = conn.execute("select extract(epoch from vt - clock_timestamp()) as s from pgmq.q_brigade_events "
                       "where message ->> 'topic' = 'delivery.requested'").fetchone()
    assert due is not None and 8 * 60 - 5 < due["s"] <= 8 * 60
    await run_worker(outside.settings)
    assert conn.execute("select count(*) as n from public.deliveries").fetchone() == {"n": 0}
    conn.execute("update pgmq.q_brigade_events set vt = clock_timestamp() where message ->> 'topic' = 'delivery.requested'")
    await run_worker(outside.settings)
    assert delivery_of(conn, order)["status"] == "offering"
    # ready later asks again; the delivery is already dispatching, nothing is offered twice
    api.run(fleet.tenant.claims("staff"), "select public.set_order_status(%s, 'ready')", (order["order_id"],))
    await run_worker(outside.settings)
    assert len(offers(conn, delivery_of(conn, order)["id"])) == 1


async def book_with(api: Api, conn: Conn, factory: Factory, outside: Outside, provider: str) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    fleet = make_fleet(conn, factory, providers="{%s}" % provider)
    order = ready_order(api, conn, fleet)
    await run_worker(outside.settings)
    delivery = delivery_of(conn, order)
    assert (delivery["status"], delivery["provider"]) == ("requested", provider)
    return fleet, order, delivery


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_uber_webhooks_replayed_and_shuffled_end_in_one_state(api: Api, conn: Conn, factory: Factory, outside: Outside,
                                                                    seed: int) -> None:
    _, order, delivery = await book_with(api, conn, factory, outside, "uber")
    t0 = datetime.now(timezone.utc)
    path = [(VENUE[0] + 0.01 * i, VENUE[1]) for i in range(6)]
    events = [uber_event(delivery, "pending", t0),
              uber_event(delivery, "pickup", t0 + timedelta(seconds=10), courier=path[0]),
              uber_event(delivery, "pickup", t0 + timedelta(seconds=20), courier=path[1], kind="event.courier_update"),
              uber_event(delivery, "pickup_complete", t0 + timedelta(seconds=30), courier=path[2]),
              uber_event(delivery, "dropoff", t0 + timedelta(seconds=40), courier=path[3]),
              uber_event(delivery, "dropoff", t0 + timedelta(seconds=50), courier=path[4], kind="event.courier_update"),
              uber_event(delivery, "delivered", t0 + timedelta(seconds=60), courier=path[5])]
    deliveries = events + random.Random(seed).sample(events, 4)  # replays
    random.Random(seed).shuffle(deliveries)
    outcomes = []
    for event in deliveries:
        r = outside.post("delivery-webhook", *uber_signed(event))
        assert r.status_code == 200, r.text
        outcomes.append(r.json()["outcome"])
    final = delivery_of(conn, order)
    assert (final["status"], final["order_status"]) == ("delivered", "completed")
    assert outcomes.count("duplicate") == 4
    assert conn.execute("select count(*) as n from public.delivery_events where delivery_id = %s and source = 'uber'",
                        (delivery["id"],)).fetchone() == {"n": len(events)}
    assert final["courier_name"] == "Uma Courier"
    # the position is the newest one reported, whatever the arrival order; no ETA once delivered
    assert (final["courier_latitude"], final["courier_updated_at"], final["eta"]) == (path[5][0], t0 + timedelta(seconds=60), None)
    history = conn.execute("select to_status from public.order_status_history where order_id = %s order by id", (order["order_id"],)).fetchall()
    assert [h["to_status"] for h in history].count("completed") == 1


@pytest.mark.parametrize("seed", [7, 8])
async def test_doordash_webhooks_replayed_and_shuffled_end_in_one_state(api: Api, conn: Conn, factory: Factory, outside: Outside,
                                                                        seed: int) -> None:
    _, order, delivery = await book_with(api, conn, factory, outside, "doordash")
    t0 = datetime.now(timezone.utc)
    names = ["DASHER_CONFIRMED", "DASHER_CONFIRMED_PICKUP_ARRIVAL", "DASHER_PICKED_UP", "DASHER_CONFIRMED_DROPOFF_ARRIVAL",
             "DASHER_DROPPED_OFF"]
    events = [doordash_event(delivery, n, t0 + timedelta(seconds=10 * i), dasher=(VENUE[0] + 0.01 * i, VENUE[1]))
              for i, n in enumerate(names)]
    events[-1]["dropoff_signature_image_url"] = "https://doordash.test/sig.png"
    sends = events + events[:2]
    random.Random(seed).shuffle(sends)
    headers = {"authorization": DOORDASH_AUTH, "content-type": "application/json"}
    outcomes = [outside.post("delivery-webhook/doordash", json.dumps(e).encode(), headers).json()["outcome"] for e in sends]
    final = delivery_of(conn, order)
    assert (final["status"], final["order_status"], final["proof_signature_url"]) == ("delivered", "completed", "https://doordash.test/sig.png")
    assert outcomes.count("duplicate") == 2 and "applied" in outcomes


async def test_webhooks_without_a_valid_signature_change_nothing(api: Api, conn: Conn, factory: Factory, outside: Outside) -> None:
    _, order, delivery = await book_with(api, conn, factory, outside, "uber")
    event = uber_event(delivery, "delivered", datetime.now(timezone.utc))
    body, headers = uber_signed(event, key="not-the-key")
    bad = outside.post("delivery-webhook/uber", body, headers)
    missing = outside.post("delivery-webhook/uber", body, {"content-type": "application/json"})
    garbage = outside.post("delivery-webhook/uber", *uber_signed_raw(b"{not json"))
    dd = outside.post("delivery-webhook/doordash", json.dumps(doordash_event(delivery, "DASHER_DROPPED_OFF", datetime.now(timezone.utc))).encode(),
                      {"authorization": "Bearer wrong"})
    unknown = outside.post("delivery-webhook/lyft", body, headers)
    assert [r.status_code for r in (bad, missing, garbage, dd, unknown)] == [400, 400, 400, 401, 404]
    assert bad.json()["error"] == "bad_signature" and dd.json()["error"] == "bad_authorization"
    assert delivery_of(conn, order)["status"] == "requested"
    assert conn.execute("select count(*) as n from public.delivery_events where source <> 'system'").fetchone() == {"n": 0}
    # an event for a delivery we never booked is acknowledged, not retried forever
    stray = dict(event, data=dict(event["data"], external_id="brg-nope", id="del_nope"), delivery_id="del_nope")
    assert outside.post("delivery-webhook", *uber_signed(stray)).json()["outcome"] == "unknown_delivery"


def uber_signed_raw(body: bytes) -> tuple[bytes, dict[str, str]]:
    import hashlib
    import hmac

    from tests.dispatch_kit import UBER_SIGNING_KEY
    return body, {"x-uber-signature": hmac.new(UBER_SIGNING_KEY.encode(), body, hashlib.sha256).hexdigest()}


async def test_cancel_through_uber_is_allowed_and_through_doordash_refused(api: Api, conn: Conn, factory: Factory,
                                                                          outside: Outside) -> None:
    fleet, order, delivery = await book_with(api, conn, factory, outside, "uber")
    staff = fleet.tenant.claims("staff")
    asked = api.run(staff, "select public.cancel_delivery(%s, 'customer changed their mind') as r", (delivery["id"],))[0]["r"]
    assert asked["status"] == "cancel_requested" and delivery_of(conn, order)["status"] == "requested"
    await run_worker(outside.settings)
    cancelled = delivery_of(conn, order)
    assert (cancelled["status"], cancelled["cost_cents"], cancelled["cancel_refusal"]) == ("cancelled", 0, None)
    assert outside.uber.deliveries[delivery["provider_delivery_id"]]["status"] == "canceled"
    assert conn.execute("select app.order_delivery_cost(%s) as c", (order["order_id"],)).fetchone() == {"c": 0}
    # a late webhook cannot revive it
    r = outside.post("delivery-webhook", *uber_signed(uber_event(delivery, "pickup", datetime.now(timezone.utc), courier=VENUE)))
    assert r.json()["outcome"] == "stale" and delivery_of(conn, order)["status"] == "cancelled"

    fleet2, order2, delivery2 = await book_with(api, conn, factory, outside, "doordash")
    outside.doordash.cancel_refused = True
    outside.post("delivery-webhook/doordash", json.dumps(doordash_event(delivery2, "DASHER_PICKED_UP", datetime.now(timezone.utc))).encode(),
                 {"authorization": DOORDASH_AUTH})
    api.run(fleet2.tenant.claims("manager"), "select public.cancel_delivery(%s, 'too slow')", (delivery2["id"],))
    await run_worker(outside.settings)
    refused = delivery_of(conn, order2)
    assert refused["status"] == "picked_up" and refused["cancel_refused_at"] is not None
    assert "cannot be cancelled" in refused["cancel_refusal"]
    event = conn.execute("select outcome, payload from public.delivery_events where delivery_id = %s and kind = 'cancel'",
                         (delivery2["id"],)).fetchone()
    assert event is not None and event["outcome"] == "refused"
    # the manager sees the refusal on the delivery they watch
    seen = api.run(fleet2.tenant.claims("manager"), "select cancel_refusal from public.deliveries where id = %s", (delivery2["id"],))
    assert seen and "cannot be cancelled" in seen[0]["cancel_refusal"]


async def test_cancelling_own_deliveries_and_closed_ones(api: Api, conn: Conn, factory: Factory, outside: Outside) -> None:
    fleet = make_fleet(conn, factory)
    add_driver(conn, factory, fleet, "zed")
    order = ready_order(api, conn, fleet)
    await run_worker(outside.settings)
    delivery = delivery_of(conn, order)
    staff = fleet.tenant.claims("staff")
    done = api.run(staff, "select public.cancel_delivery(%s, 'kitchen burnt it') as r", (delivery["id"],))[0]["r"]
    assert done["status"] == "cancelled"
    assert [o["status"] for o in offers(conn, delivery["id"])] == ["withdrawn"]
    assert sqlstate(lambda: api.run(staff, "select public.cancel_delivery(%s, 'again')", (delivery["id"],))) == "BR504"
    assert sqlstate(lambda: api.run(staff, "select public.cancel_delivery(%s, ' ')", (delivery["id"],))) == "BR504"
    # another business's staff cannot touch it
    other = factory.tenant("Elsewhere", {"ordering": True, "dispatch": True})
    assert sqlstate(lambda: api.run(other.claims("owner"), "select public.cancel_delivery(%s, 'x')", (delivery["id"],))) == "PT404"

    # an order cancelled while its delivery is being offered cancels the delivery
    second = ready_order(api, conn, fleet, phone="+1 212 555 0144")
    await run_worker(outside.settings)
    assert delivery_of(conn, second)["status"] == "offering"
    api.run(fleet.tenant.claims("manager"), "select public.set_order_status(%s, 'cancelled', 'out of stock')", (second["order_id"],))
    assert delivery_of(conn, second)["status"] == "cancelled"

    # delivered is final
    third = ready_order(api, conn, fleet, phone="+1 212 555 0145")
    await run_worker(outside.settings)
    d3 = delivery_of(conn, third)
    [offer] = [o for o in offers(conn, d3["id"]) if o["status"] == "pending"]
    respond(api, fleet, "zed", offer["id"], True)
    api.run(fleet.claims("zed"), "select public.complete_delivery(%s, %s)", (d3["id"], json.dumps({"signature_url": "https://s.test/x.png"})))
    assert sqlstate(lambda: api.run(staff, "select public.cancel_delivery(%s, 'late')", (d3["id"],))) == "BR504"


async def test_a_delivery_cancelled_while_waiting_for_a_network_is_never_booked(api: Api, conn: Conn, factory: Factory,
                                                                                outside: Outside) -> None:
    fleet = make_fleet(conn, factory, own_limit=0)
    order = ready_order(api, conn, fleet)
    conn.execute("update pgmq.q_brigade_events set vt = clock_timestamp() + interval '1 hour' where message ->> 'topic' = 'delivery.requested'")
    conn.execute("select app.start_dispatch(%s, %s)", (fleet.tenant.business_id, order["order_id"]))
    assert delivery_of(conn, order)["status"] == "booking"
    api.run(fleet.tenant.claims("staff"), "select public.cancel_delivery(%s, 'customer left')", (delivery_of(conn, order)["id"],))
    await run_worker(outside.settings)
    assert delivery_of(conn, order)["status"] == "cancelled"
    assert outside.uber.created() == [] and outside.doordash.deliveries == {}
