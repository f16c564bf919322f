"""The nudge: a message to a recipient who has not read the conversation lately reaches them once by
SMS through the fake Twilio (push when they have a subscription), naming who wrote and never a phone
number; a recipient who just read it is not nudged."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import psycopg

from brigade.auth import Claims
from tests.conftest import Api, Factory
from tests.dispatch_kit import add_driver, delivery_of, make_fleet, ready_order
from tests.ordering_fixtures import Outside
from worker import main as worker_main


def drain(outside: Outside) -> None:
    asyncio.run(worker_main.run(outside.settings, idle=True))


def nudges(outside: Outside) -> list[tuple[str, str]]:
    return [(m["To"], m["Body"]) for m in outside.twilio.messages() if "Open the app to reply" in m["Body"]]


def test_an_offline_recipient_is_nudged_once_by_sms(api: Api, conn: psycopg.Connection[dict[str, Any]], factory: Factory, outside: Outside) -> None:
    fleet = make_fleet(conn, factory)
    driver = add_driver(conn, factory, fleet, "dan", km_north=0.5)
    order = ready_order(api, conn, fleet)
    conn.execute("select app.start_dispatch(%s, %s)", (fleet.tenant.business_id, order["order_id"]))
    delivery = delivery_of(conn, order)
    api.run(fleet.tenant.claims("staff"), "select public.assign_delivery(%s, %s)", (delivery["id"], driver))
    conv = conn.execute("select id from public.conversations where delivery_id = %s", (delivery["id"],)).fetchone()["id"]  # type: ignore[index]
    guest = Claims.anon()
    n = order["order_number"]

    api.run(guest, "select public.send_order_message(%s, %s, 'Ring twice please')", (order["order_id"], order["access_token"]))
    drain(outside)
    assert nudges(outside) == [("+12125550123", f"New message from a customer at Main about order #{n}. Open the app to reply.")]
    message = conn.execute("select id from public.conversation_messages where conversation_id = %s", (conv,)).fetchone()["id"]  # type: ignore[index]
    conn.execute("select app.emit('message.sent', %s, %s)", (fleet.tenant.business_id, json.dumps({"message_id": str(message), "conversation_id": str(conv)})))
    drain(outside)
    assert len(nudges(outside)) == 1, "a redelivered event nudges nobody twice"

    conn.execute("update public.conversations set customer_seen_at = now() - interval '3 minutes' where id = %s", (conv,))  # the guest left
    api.run(fleet.claims("dan"), "select public.send_message(%s, 'Will do')", (conv,))
    drain(outside)
    assert nudges(outside)[1] == ("+12125550142", f"New message from your driver at Main about order #{n}. Open the app to reply.")
    api.run(guest, "select public.order_messages(%s, %s)", (order["order_id"], order["access_token"]))  # the guest is reading now
    api.run(fleet.claims("dan"), "select public.send_message(%s, 'Outside now')", (conv,))
    drain(outside)
    assert len(nudges(outside)) == 2, "someone reading the conversation is not nudged"
    assert not any("+1212555" in body for _, body in nudges(outside)), "no phone number in a nudge"
    logged = conn.execute("select channel, recipient, status from public.notification_log where template = 'message_nudge' order by created_at").fetchall()
    assert logged == [{"channel": "sms", "recipient": "+12125550123", "status": "sent"}, {"channel": "sms", "recipient": "+12125550142", "status": "sent"}]
