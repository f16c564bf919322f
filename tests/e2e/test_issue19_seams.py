"""Issue 19's seams end to end (functions, fakes and a drained worker): each test is named after its item."""

from __future__ import annotations

import json
from typing import Any

import psycopg

from brigade.auth import Claims
from tests.conftest import Api
from tests.e2e.test_order_flow import drain, place
from tests.ordering_fixtures import Outside
from tests.ordering_kit import Menu, order_payload, session_completed


def paid(conn: psycopg.Connection[dict[str, Any]], api: Api, menu: Menu, n: int, **overrides: Any) -> dict[str, Any]:
    order = place(api, order_payload(menu, customer={"name": f"Guest {n}", "phone": f"+1 212 555 01{n:02d}",
                                                     "email": f"g{n}@example.test"}, **overrides))
    conn.execute("select app.apply_stripe_event(%s)", (json.dumps(session_completed(order, f"cs_19_{n}", f"pi_19_{n}")),))
    return order


def test_item_3_only_pickup_orders_get_the_ready_call(api: Api, conn: psycopg.Connection[dict[str, Any]], menu: Menu,
                                                      outside: Outside) -> None:
    pickup = paid(conn, api, menu, 1)
    delivery = paid(conn, api, menu, 2, fulfilment="delivery",
                    delivery_address={"line1": "200 Broadway", "city": "New York", "postal_code": "10007", "country": "US",
                                      "latitude": 40.7115, "longitude": -74.0090})
    dine_in = paid(conn, api, menu, 3, fulfilment="dine_in", table_ref="T7")
    drain(outside)
    staff = menu.tenant.claims("staff")
    for order in (pickup, delivery, dine_in):
        for status in ("accepted", "ready"):
            api.run(staff, "select public.set_order_status(%s, %s)", (order["order_id"], status))
    drain(outside)
    assert [c["To"] for c in outside.twilio.calls()] == ["+12125550101"], "one call, to the pickup guest"
    ready = conn.execute("select order_id::text, channel from public.notification_log where template = 'order_ready'").fetchall()
    assert ready == [{"order_id": pickup["order_id"], "channel": "voice"}]
    texts = [m["Body"] for m in outside.twilio.messages() if m["To"] in ("+12125550102", "+12125550103")]
    assert not any("pickup code" in t for t in texts), texts
