"""Helpers for the campaigns & automations tests: customers with an order history, rules, and moving
a delayed send to "now" (by shifting its due time and its queue message, never by sleeping)."""

from __future__ import annotations

import itertools
import json
import uuid
from typing import Any

import psycopg

from brigade.auth import Claims
from tests.conftest import Api
from tests.ordering_kit import Menu, order_payload, session_completed

_phones = itertools.count(100)


def enable(conn: psycopg.Connection[dict[str, Any]], business_id: uuid.UUID) -> None:
    for module in ("crm", "campaigns"):
        conn.execute("select app.set_business_module(%s, %s, true)", (business_id, module))


def paid_order(api: Api, conn: psycopg.Connection[dict[str, Any]], menu: Menu, contact: dict[str, str], **overrides: Any) -> dict[str, Any]:
    """An order placed by anon for this contact and paid through a Stripe event."""
    order = api.run(Claims.anon(), "select public.place_order(%s) as r", (json.dumps(order_payload(menu, customer=contact, **overrides)),))[0]["r"]
    conn.execute("select app.apply_stripe_event(%s)", (json.dumps(session_completed(order, f"cs_{order['order_id']}", f"pi_{order['order_id']}")),))
    return order


def customer(api: Api, conn: psycopg.Connection[dict[str, Any]], menu: Menu, *, name: str = "Dana Dormant", email: bool = True,
             phone: bool = True, consent: tuple[str, ...] = ("SMS_MARKETING", "EMAIL_MARKETING"), days_ago: int | None = None) -> uuid.UUID:
    """A customer with one paid order (last ordered `days_ago` days ago when given) and marketing consent."""
    n = next(_phones)
    contact = {"name": name, "phone": f"+1 212 555 {n:04d}", "email": f"c{n}-{uuid.uuid4().hex[:6]}@example.test"}
    order = paid_order(api, conn, menu, contact)
    cid: uuid.UUID = conn.execute("select customer_id from public.orders where id = %s", (order["order_id"],)).fetchone()["customer_id"]  # type: ignore[index]
    b = menu.tenant.business_id
    if not email:
        conn.execute("update public.customers set email = null where business_id = %s and id = %s", (b, cid))
    if not phone:
        conn.execute("update public.customers set phone = null where business_id = %s and id = %s", (b, cid))
    for channel in consent:
        conn.execute("select app.record_consent(%s, %s, %s, true, 'checkout')", (b, cid, channel))
    if days_ago is not None:
        backdate(conn, b, cid, days_ago)
    return cid


def backdate(conn: psycopg.Connection[dict[str, Any]], business_id: uuid.UUID, customer_id: uuid.UUID, days: float) -> None:
    conn.execute("update public.customer_venue_stats set last_order_at = now() - make_interval(secs => %s) "
                 "where business_id = %s and customer_id = %s", (days * 86400, business_id, customer_id))


def automation(conn: psycopg.Connection[dict[str, Any]], business_id: uuid.UUID, **cols: Any) -> uuid.UUID:
    values: dict[str, Any] = {"name": "Rule", "trigger": "customer.dormant", "channel": "sms", "body": "Hi {{first_name}}, we miss you at {{venue_name}}!"}
    values.update(cols)
    if values["channel"] == "email":
        values.setdefault("subject", "We miss you")
    names = ", ".join(values)
    marks = ", ".join(["%s"] * len(values))
    return conn.execute(f"insert into public.automations (business_id, {names}) values (%s, {marks}) returning id",  # type: ignore[index]
                        (business_id, *values.values())).fetchone()["id"]


def sends(conn: psycopg.Connection[dict[str, Any]], business_id: uuid.UUID, **where: Any) -> list[dict[str, Any]]:
    clause = "".join(f" and {k} = %s" for k in where)
    return conn.execute(f"select * from public.campaign_sends where business_id = %s{clause} order by created_at, id",
                        (business_id, *where.values())).fetchall()


def make_due(conn: psycopg.Connection[dict[str, Any]], send_ids: list[uuid.UUID]) -> int:
    """Time passes for these sends: due now, and their delayed queue messages visible now."""
    ids = [str(s) for s in send_ids]
    conn.execute("update public.campaign_sends set due_at = now() where id = any(%s::uuid[])", (ids,))
    return conn.execute("update pgmq.q_brigade_events set vt = now() where message->'payload'->>'send_id' = any(%s)", (ids,)).rowcount


def queued(conn: psycopg.Connection[dict[str, Any]], send_id: uuid.UUID) -> list[dict[str, Any]]:
    """The queue messages announcing a send, with how far in the future they become visible."""
    return conn.execute("select msg_id, extract(epoch from vt - now()) as in_seconds from pgmq.q_brigade_events "
                        "where message->'payload'->>'send_id' = %s order by msg_id", (str(send_id),)).fetchall()
