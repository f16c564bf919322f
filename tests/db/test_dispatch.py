"""Dispatch in SQL as PostgREST runs it: who reads and writes driver positions, offers and deliveries;
the delivery status machine; availability windows; the module gate; the payouts contract."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from brigade.auth import Claims
from tests.conftest import Api, Factory, sqlstate
from tests.dispatch_kit import VENUE, add_driver, delivery_of, make_fleet, offers, ready_order

Conn = psycopg.Connection[dict[str, Any]]


def position(api: Api, claims: Claims, business: Any, driver: Any, lat: float = VENUE[0]) -> Any:
    return api.run(claims, "insert into public.driver_locations (business_id, driver_id, latitude, longitude) values (%s, %s, %s, %s) "
                           "returning id", (business, driver, lat, VENUE[1]))


def test_a_driver_writes_and_reads_only_their_own_positions(api: Api, conn: Conn, factory: Factory) -> None:
    fleet = make_fleet(conn, factory)
    b = fleet.tenant.business_id
    mine, theirs = add_driver(conn, factory, fleet, "mine"), add_driver(conn, factory, fleet, "theirs")
    assert position(api, fleet.claims("mine"), b, mine, 40.8)
    assert conn.execute("select latitude from public.drivers where id = %s", (mine,)).fetchone() == {"latitude": 40.8}
    # writing as another driver is refused by RLS, whatever the row says
    assert sqlstate(lambda: position(api, fleet.claims("mine"), b, theirs)) == "42501"
    assert sqlstate(lambda: position(api, Claims.anon(), b, mine)) == "42501"
    with api.session(fleet.claims("mine")) as c:  # a position request commits without waiting for the flush
        c.execute("set local synchronous_commit = on")  # (the test cluster runs with it off)
        c.execute("insert into public.driver_locations (business_id, driver_id, latitude, longitude) values (%s, %s, 40.7, -74)", (b, mine))
        assert c.execute("show synchronous_commit").fetchone() == {"synchronous_commit": "off"}
    position(api, fleet.claims("theirs"), b, theirs, 40.9)
    assert {r["driver_id"] for r in api.run(fleet.claims("mine"), "select driver_id from public.driver_locations")} == {mine}
    # positions are history: not rewritten, not deleted through the API
    assert sqlstate(lambda: api.run(fleet.claims("mine"), "update public.driver_locations set latitude = 1")) == "42501"
    assert sqlstate(lambda: api.run(fleet.claims("mine"), "delete from public.driver_locations")) == "42501"
    assert sqlstate(lambda: conn.execute("update public.driver_locations set latitude = 1")) == "BR006"
    # a driver sets their own status, never their rating; nor another driver's status
    api.run(fleet.claims("mine"), "update public.drivers set is_online = false where id = %s", (mine,))
    assert api.rowcount(fleet.claims("mine"), "update public.drivers set is_online = false where id = %s", (theirs,)) == 0
    assert sqlstate(lambda: api.run(fleet.claims("mine"), "update public.drivers set rating = 5 where id = %s", (mine,))) == "42501"
    assert conn.execute("select is_online from public.drivers where id = %s", (theirs,)).fetchone() == {"is_online": True}


def test_only_businesses_a_driver_serves_see_their_positions(api: Api, conn: Conn, factory: Factory, operator: Claims) -> None:
    fleet = make_fleet(conn, factory)
    driver = add_driver(conn, factory, fleet, "dora")
    position(api, fleet.claims("dora"), fleet.tenant.business_id, driver)
    other = factory.tenant("Not Served", {"ordering": True, "dispatch": True})
    for role in ("owner", "manager", "staff"):
        assert len(api.run(fleet.tenant.claims(role), "select id from public.driver_locations")) == 1
        assert api.run(other.claims(role), "select id from public.driver_locations") == []
        assert api.run(other.claims(role), "select id from public.drivers") == []
    # the other business cannot assign itself someone else's driver; the operator can (shared pool)
    assign = "insert into public.driver_business_assignments (business_id, driver_business_id, driver_id, pool) values (%s, %s, %s, 'shared')"
    assert sqlstate(lambda: api.run(other.claims("owner"), assign, (other.business_id, fleet.tenant.business_id, driver))) == "42501"
    api.run(operator, assign, (other.business_id, fleet.tenant.business_id, driver))
    assert len(api.run(other.claims("manager"), "select id from public.driver_locations")) == 1
    # ending the assignment ends the view
    api.run(other.claims("owner"), "update public.driver_business_assignments set is_active = false where business_id = %s", (other.business_id,))
    assert api.run(other.claims("manager"), "select id from public.driver_locations") == []


def test_drivers_see_only_their_offers_and_businesses_only_their_deliveries(api: Api, conn: Conn, factory: Factory) -> None:
    fleet = make_fleet(conn, factory, per_round=1)
    add_driver(conn, factory, fleet, "first", km_north=0.3)
    add_driver(conn, factory, fleet, "second", km_north=2.0)
    order = ready_order(api, conn, fleet)
    conn.execute("select app.start_dispatch(%s, %s)", (fleet.tenant.business_id, order["order_id"]))
    delivery = delivery_of(conn, order)
    [offer] = offers(conn, delivery["id"])
    assert api.run(fleet.claims("second"), "select id from public.delivery_offers") == []
    assert api.run(fleet.claims("second"), "select id from public.deliveries") == []
    assert sqlstate(lambda: api.run(fleet.claims("second"), "select public.respond_offer(%s, true)", (offer["id"],))) == "PT404"
    api.run(fleet.claims("first"), "select public.respond_offer(%s, true)", (offer["id"],))
    assert [r["id"] for r in api.run(fleet.claims("first"), "select id from public.deliveries")] == [delivery["id"]]
    # the drop-off PIN is for the customer only
    assert sqlstate(lambda: api.run(fleet.claims("first"), "select dropoff_pin from public.deliveries")) == "42501"
    tracked = api.run(Claims.anon(), "select public.track_delivery(%s, %s) as r", (order["order_id"], order["access_token"]))[0]["r"]
    assert tracked["status"] == "assigned" and tracked["pin"] == delivery["dropoff_pin"] and tracked["courier_name"] == "First"
    assert sqlstate(lambda: api.run(Claims.anon(), "select public.track_delivery(%s, %s)",
                                    (order["order_id"], "00000000-0000-4000-8000-000000000000"))) == "PT404"
    # the second driver cannot act on it; another business sees none of it
    assert sqlstate(lambda: api.run(fleet.claims("second"), "select public.update_delivery_status(%s, 'picked_up')", (delivery["id"],))) == "PT404"
    other = factory.tenant("Rival", {"ordering": True, "dispatch": True})
    for role in ("owner", "manager", "staff", "driver"):
        for table in ("deliveries", "delivery_offers", "delivery_events", "driver_earnings", "delivery_margins"):
            column = "delivery_id" if table == "delivery_margins" else "business_id"
            assert api.run(other.claims(role), f"select {column} from public.{table}") == [], (role, table)
    assert len(api.run(fleet.tenant.claims("owner"), "select * from public.delivery_margins")) == 1


def test_the_status_machine_never_goes_back(conn: Conn, api: Api, factory: Factory) -> None:
    fleet = make_fleet(conn, factory)
    order = ready_order(api, conn, fleet)
    conn.execute("select app.start_dispatch(%s, %s)", (fleet.tenant.business_id, order["order_id"]))  # no driver: booking
    d = delivery_of(conn, order)
    assert d["status"] == "booking"
    move = "update public.deliveries set status = %s where id = %s"
    for status in ("requested", "picked_up"):
        conn.execute(move, (status, d["id"]))
    for back in ("assigned", "requested", "offering", "pending"):
        assert sqlstate(lambda: conn.execute(move, (back, d["id"]))) == "BR501", back
    conn.execute(move, ("delivered", d["id"]))
    for after in ("cancelled", "failed", "picked_up"):
        assert sqlstate(lambda: conn.execute(move, (after, d["id"]))) == "BR501", after
    row = delivery_of(conn, d | {"order_id": order["order_id"]})
    assert row["assigned_at"] is not None and row["picked_up_at"] <= row["delivered_at"]
    assert row["order_status"] == "completed"
    conn.execute("insert into public.delivery_events (business_id, delivery_id, source, external_event_id, kind, outcome) "
                 "values (%s, %s, 'uber', 'evt_1', 'delivered', 'applied')", (fleet.tenant.business_id, d["id"]))
    assert sqlstate(lambda: conn.execute("update public.delivery_events set outcome = 'stale'")) == "BR006"
    assert sqlstate(lambda: conn.execute("delete from public.delivery_events")) == "BR006"


@pytest.mark.clock
def test_windows_offline_and_the_module_gate(api: Api, conn: Conn, factory: Factory, operator: Claims) -> None:
    fleet = make_fleet(conn, factory)
    night = add_driver(conn, factory, fleet, "night_owl", km_north=0.1)
    add_driver(conn, factory, fleet, "day", km_north=2.0)
    # night_owl only works a window that is not now: ten minutes twelve hours away, on that moment's weekday in the
    # business's zone (past midnight it is tomorrow's window, and one that runs over midnight is an overnight one)
    conn.execute("insert into public.driver_availability_windows (business_id, driver_id, weekday, starts_at, ends_at) "
                 "select %s, %s, extract(dow from l)::int, l::time, (l + interval '10 minutes')::time "
                 "from (select (now() + interval '12 hours') at time zone time_zone as l from public.businesses where id = %s) x",
                 (fleet.tenant.business_id, night, fleet.tenant.business_id))
    order = ready_order(api, conn, fleet)
    conn.execute("select app.start_dispatch(%s, %s)", (fleet.tenant.business_id, order["order_id"]))
    [offer] = offers(conn, delivery_of(conn, order)["id"])
    assert offer["driver_id"] == fleet.drivers["day"]
    assert conn.execute("select app.driver_in_window(%s, %s, now() + interval '12 hours 1 minute') as ok",
                        (fleet.tenant.business_id, night)).fetchone() == {"ok": True}

    api.run(operator, "select public.set_business_module(%s, 'dispatch', false)", (fleet.tenant.business_id,))
    assert api.run(fleet.tenant.claims("owner"), "select id from public.deliveries") == []
    assert sqlstate(lambda: api.run(fleet.claims("day"), "select public.respond_offer(%s, true)", (offer["id"],))) == "PT404"
    second = ready_order(api, conn, fleet, phone="+1 212 555 0150")
    assert conn.execute("select app.start_dispatch(%s, %s) as r", (fleet.tenant.business_id, second["order_id"])).fetchone() == {"r": None}


def test_order_delivery_cost_is_zero_without_a_delivery(conn: Conn, api: Api, factory: Factory) -> None:
    fleet = make_fleet(conn, factory)
    order = ready_order(api, conn, fleet)
    assert conn.execute("select app.order_delivery_cost(%s) as c", (order["order_id"],)).fetchone() == {"c": 0}
    assert sqlstate(lambda: api.run(fleet.tenant.claims("owner"), "select app.order_delivery_cost(%s)", (order["order_id"],))) == "42501"


@pytest.mark.parametrize(("field", "bad", "good"), [("offer_timeout_seconds", 3, 45), ("offers_per_round", 11, 2), ("surge_multiplier", 0.5, 1.5)])
def test_dispatch_rules_are_for_managers(api: Api, conn: Conn, factory: Factory, field: str, bad: float, good: float) -> None:
    fleet = make_fleet(conn, factory)
    q = f"update public.venue_dispatch_rules set {field} = %s where business_id = %s"
    assert api.rowcount(fleet.tenant.claims("staff"), q, (good, fleet.tenant.business_id)) == 0
    assert sqlstate(lambda: api.run(fleet.tenant.claims("manager"), q, (bad, fleet.tenant.business_id))) == "23514"  # checks hold
    assert api.rowcount(fleet.tenant.claims("manager"), q, (good, fleet.tenant.business_id)) == 1
    assert conn.execute(f"select {field}::float8 as v from public.venue_dispatch_rules").fetchone() == {"v": good}


def test_own_drivers_get_only_the_venues_limit_before_the_networks(api: Api, conn: Conn, factory: Factory) -> None:
    fleet = make_fleet(conn, factory, own_limit=0)  # straight to the networks, drivers or not
    add_driver(conn, factory, fleet, "idle")
    order = ready_order(api, conn, fleet)
    step = conn.execute("select app.start_dispatch(%s, %s) as r", (fleet.tenant.business_id, order["order_id"])).fetchone()["r"]  # type: ignore[index]
    assert step["step"] == "booking" and offers(conn, delivery_of(conn, order)["id"]) == []
    booking = conn.execute("select message -> 'payload' as p from pgmq.q_brigade_events where message ->> 'topic' = 'delivery.book_provider'").fetchone()
    assert booking is not None and booking["p"]["providers"] == ["uber", "doordash"]

    fleet2 = make_fleet(conn, factory, own_limit=60, providers="{}")
    add_driver(conn, factory, fleet2, "one", km_north=0.5)
    add_driver(conn, factory, fleet2, "two", km_north=1.0)
    second = ready_order(api, conn, fleet2, phone="+1 212 555 0160")
    conn.execute("select app.start_dispatch(%s, %s)", (fleet2.tenant.business_id, second["order_id"]))
    delivery = delivery_of(conn, second)
    # the venue's own-driver minute has passed when the first driver declines: no second offer, and
    # with no courier network configured the delivery fails
    conn.execute("update public.deliveries set first_offered_at = now() - interval '61 seconds' where id = %s", (delivery["id"],))
    [offer] = offers(conn, delivery["id"])
    answer = api.run(fleet2.claims("one"), "select public.respond_offer(%s, false) as r", (offer["id"],))[0]["r"]
    assert answer["next"] == "failed"
    failed = delivery_of(conn, second)
    assert failed["status"] == "failed" and "no courier network" in failed["failure_reason"]
    assert len(offers(conn, delivery["id"])) == 1


def test_customers_follow_deliveries_through_realtime(conn: Conn) -> None:
    tables = {r["tablename"] for r in conn.execute("select tablename from pg_publication_tables where pubname = 'supabase_realtime'")}
    assert {"deliveries", "delivery_offers"} <= tables


def test_load_spreads_simultaneous_orders_over_drivers(api: Api, conn: Conn, factory: Factory) -> None:
    fleet = make_fleet(conn, factory)
    add_driver(conn, factory, fleet, "closest", km_north=0.2)
    add_driver(conn, factory, fleet, "next", km_north=0.8)
    firsts = []
    for n in range(2):
        order = ready_order(api, conn, fleet, phone=f"+1 212 555 017{n}")
        conn.execute("select app.start_dispatch(%s, %s)", (fleet.tenant.business_id, order["order_id"]))
        firsts.append(offers(conn, delivery_of(conn, order)["id"])[0]["driver_id"])
    # the closest driver already holds an open offer (2 km of penalty), so the second order goes to the next one
    assert firsts == [fleet.drivers["closest"], fleet.drivers["next"]]


def test_staff_give_a_delivery_to_a_driver_of_their_choice(api: Api, conn: Conn, factory: Factory) -> None:
    fleet = make_fleet(conn, factory)
    add_driver(conn, factory, fleet, "offered", km_north=0.3)
    chosen = add_driver(conn, factory, fleet, "chosen", km_north=2.0)
    order = ready_order(api, conn, fleet)
    conn.execute("select app.start_dispatch(%s, %s)", (fleet.tenant.business_id, order["order_id"]))
    delivery = delivery_of(conn, order)
    outsider = factory.tenant("Other Fleet", {"ordering": True, "dispatch": True})
    stranger = conn.execute("insert into public.drivers (business_id, user_id, display_name) values (%s, %s, 'X') returning id",
                            (outsider.business_id, outsider.users["driver"])).fetchone()["id"]  # type: ignore[index]
    staff = fleet.tenant.claims("staff")
    assert sqlstate(lambda: api.run(staff, "select public.assign_delivery(%s, %s)", (delivery["id"], stranger))) == "PT404"
    assert sqlstate(lambda: api.run(outsider.claims("owner"), "select public.assign_delivery(%s, %s)", (delivery["id"], chosen))) == "PT404"
    api.run(staff, "select public.assign_delivery(%s, %s)", (delivery["id"], chosen))
    row = delivery_of(conn, order)
    assert (row["status"], row["driver_id"], row["provider"]) == ("assigned", chosen, "own")
    # the pickup ETA: 2 km at 25 km/h, about 4.8 minutes
    assert abs((row["pickup_eta"] - row["assigned_at"]).total_seconds() - 2.0 / 25 * 3600) < 30
    assert [o["status"] for o in offers(conn, delivery["id"])] == ["withdrawn"]
    assert sqlstate(lambda: api.run(staff, "select public.assign_delivery(%s, %s)", (delivery["id"], chosen))) == "BR501"
    # closer to the venue, the pickup ETA comes closer; once picked up there is none
    api.run(fleet.claims("chosen"), "insert into public.driver_locations (business_id, driver_id, latitude, longitude) values (%s, %s, %s, %s)",
            (fleet.tenant.business_id, chosen, VENUE[0] + 0.5 / 111, VENUE[1]))
    nearer = delivery_of(conn, order)
    assert nearer["pickup_eta"] < row["pickup_eta"]
    api.run(fleet.claims("chosen"), "select public.update_delivery_status(%s, 'picked_up')", (delivery["id"],))
    api.run(fleet.claims("chosen"), "insert into public.driver_locations (business_id, driver_id, latitude, longitude) values (%s, %s, %s, %s)",
            (fleet.tenant.business_id, chosen, VENUE[0], VENUE[1]))
    assert delivery_of(conn, order)["pickup_eta"] == nearer["pickup_eta"]
