"""A cash-on-delivery order end to end (issue 23 item 5): placed unpaid, taken by the kitchen, dispatched
by the worker to an own driver who sees the amount due, the delivery refused until the cash is recorded,
the cash recorded once (a retry is idempotent), the paid fan-out's receipt sent, the driver's cash handed
over to the venue and reconciled. The fake Stripe sees no Checkout at all."""

from __future__ import annotations

import json
from typing import Any

import psycopg

from brigade.auth import Claims
from tests.conftest import Api, Factory, sqlstate
from tests.dispatch_kit import DROPOFF, add_driver, delivery_of, make_fleet, offers, run_worker
from tests.ordering_fixtures import Outside
from tests.ordering_kit import order_payload

Conn = psycopg.Connection[dict[str, Any]]


async def test_cash_on_delivery_from_placement_to_reconciliation(api: Api, conn: Conn, factory: Factory, outside: Outside) -> None:
    fleet = make_fleet(conn, factory)
    b, venue = fleet.tenant.business_id, fleet.menu.venue_id
    conn.execute("update public.venues set cash_methods = '{cash_on_delivery}' where id = %s", (venue,))
    add_driver(conn, factory, fleet, "near", km_north=0.5)
    add_driver(conn, factory, fleet, "other", km_north=4.0)
    payload = order_payload(fleet.menu, fulfilment="delivery", payment_method="cash_on_delivery",
                            customer={"name": "Dee Cash", "phone": "+1 212 555 0142", "email": "dee@example.test"},
                            delivery_address={"line1": "200 Broadway", "city": "New York", "postal_code": "10007", "country": "US",
                                              "latitude": DROPOFF[0], "longitude": DROPOFF[1]})
    order = api.run(Claims.anon(), "select public.place_order(%s) as r", (json.dumps(payload),))[0]["r"]
    due = order["amount_due_cents"]
    assert due == order["total_cents"] and order["payment_status"] == "unpaid"

    # the kitchen takes it unpaid: ticket on the board, accepted, prepared, ready
    staff = fleet.tenant.claims("staff")
    assert [t["order_id"] for t in api.run(staff, "select order_id::text from public.kitchen_tickets")] == [order["order_id"]]
    for step in ("accepted", "preparing", "ready"):
        api.run(staff, "select public.set_order_status(%s, %s)", (order["order_id"], step))
    await run_worker(outside.settings)

    # the customer heard at once that the kitchen took it (the cash confirmation), before any payment
    texts = [m for m in outside.twilio.messages() if m.get("To") == "+12125550142"]
    assert len(texts) == 1 and str(order["order_number"]) in texts[0]["Body"]

    delivery = delivery_of(conn, order)
    [offer] = offers(conn, delivery["id"])
    near = fleet.claims("near")
    api.run(near, "select public.respond_offer(%s, true)", (offer["id"],))
    assert api.run(near, "select cash_due_cents from public.deliveries") == [{"cash_due_cents": due}]
    api.run(near, "select public.update_delivery_status(%s, 'picked_up')", (delivery["id"],))
    pin = delivery_of(conn, order)["dropoff_pin"]
    proof = json.dumps({"pin": pin, "photo_url": "https://img.test/door.jpg"})
    assert sqlstate(lambda: api.run(near, "select public.complete_delivery(%s, %s)", (delivery["id"], proof))) == "BR156"
    # another driver cannot record it
    assert sqlstate(lambda: api.run(fleet.claims("other"), "select public.record_cash_collection(%s, %s)",
                                    (order["order_id"], due))) == "PT404"

    received = ((due // 1000) + 1) * 1000
    first = api.run(near, "select public.record_cash_collection(%s, %s, %s) as r", (order["order_id"], received, received - due))[0]["r"]
    retry = api.run(near, "select public.record_cash_collection(%s, %s, %s) as r", (order["order_id"], received, received - due))[0]["r"]
    assert (first["duplicate"], retry["duplicate"], retry["id"]) == (False, True, first["id"])
    assert first["driver_id"] == str(fleet.drivers["near"]) and first["collected_cents"] == due
    api.run(near, "select public.complete_delivery(%s, %s)", (delivery["id"], proof))
    final = delivery_of(conn, order)
    assert (final["status"], final["order_status"]) == ("delivered", "completed")
    row = conn.execute("select payment_status::text, paid_at from public.orders where id = %s", (order["order_id"],)).fetchone()
    assert row and row["payment_status"] == "paid" and row["paid_at"] is not None

    await run_worker(outside.settings)
    receipts = [e for e in outside.resend.emails() if "dee@example.test" in json.dumps(e)]
    assert len(receipts) == 1
    assert outside.stripe.sessions() == []  # no Checkout for a cash order, ever

    # the driver sees their own cash out; the other driver nothing; the manager takes it and reconciles
    assert api.run(near, "select outstanding_cents, collected_cents from public.cash_reconciliation") == [
        {"outstanding_cents": due, "collected_cents": due}]
    assert api.run(fleet.claims("other"), "select * from public.cash_reconciliation") == []
    manager = fleet.tenant.claims("manager")
    handover = api.run(manager, "select public.record_cash_handover(%s, %s, %s) as r", (venue, fleet.drivers["near"], due))[0]["r"]
    assert (handover["expected_cents"], handover["counted_cents"], handover["difference_cents"]) == (due, due, 0)
    assert api.run(manager, "select driver_id, expected_cents, collected_cents, handed_over_cents, outstanding_cents "
                            "from public.cash_reconciliation where business_id = %s", (b,)) == [
        {"driver_id": fleet.drivers["near"], "expected_cents": due, "collected_cents": due, "handed_over_cents": due, "outstanding_cents": 0}]
    assert [h["id"] for h in api.run(near, "select id::text from public.cash_handovers")] == [handover["id"]]
