"""Messaging (issue 16, item 3) the way PostgREST runs it: a delivery's conversation opens when the
driver is assigned, only the guest (order token) or signed-in customer and the driver read or write
it, never the venue's staff nor another tenant, nobody's phone in it, at most 10 messages a minute per
sender, attachments only as checked https links, append-only, read-only from an hour after delivery;
support conversations between a signed-in customer and the venue's staff, open/assigned/closed; both
tables in the Realtime publication."""

from __future__ import annotations

from typing import Any

import psycopg

from brigade.auth import Claims
from tests.conftest import Api, Factory, sqlstate
from tests.dispatch_kit import add_driver, delivery_of, make_fleet, ready_order
from tests.ordering_kit import Menu

Conn = psycopg.Connection[dict[str, Any]]
MESSAGES = "select sender_role, body from public.conversation_messages order by created_at"


def test_a_delivery_conversation_is_the_customers_and_the_drivers_until_an_hour_after_delivery(api: Api, conn: Conn, factory: Factory) -> None:
    fleet = make_fleet(conn, factory)
    b = fleet.tenant.business_id
    driver = add_driver(conn, factory, fleet, "dan", km_north=0.5)
    order = ready_order(api, conn, fleet)
    conn.execute("select app.start_dispatch(%s, %s)", (b, order["order_id"]))
    delivery = delivery_of(conn, order)
    assert conn.execute("select count(*) as n from public.conversations where business_id = %s", (b,)).fetchone() == {"n": 0}
    api.run(fleet.tenant.claims("staff"), "select public.assign_delivery(%s, %s)", (delivery["id"], driver))
    [conv] = conn.execute("select id, kind from public.conversations where business_id = %s and delivery_id = %s", (b, delivery["id"])).fetchall()
    dan, guest, staff = fleet.claims("dan"), Claims.anon(), fleet.tenant.claims("owner")
    other = factory.tenant("Elsewhere", {"ordering": True, "dispatch": True})

    send_guest = "select public.send_order_message(%s, %s, %s, %s) as r"
    api.run(guest, send_guest, (order["order_id"], order["access_token"], "Side door, please", None))
    assert sqlstate(lambda: api.run(guest, send_guest, (order["order_id"], "00000000-0000-4000-8000-000000000000", "hi", None))) == "PT404"
    api.run(dan, "select public.send_message(%s, %s, %s)", (conv["id"], "On my way", "https://cdn.example.test/p/door.jpg"))
    for bad in ("http://cdn.example.test/a.png", "https://user:pw@cdn.example.test/a.png", "https://cdn.example.test/a.exe", "javascript:alert(1)"):
        assert sqlstate(lambda: api.run(dan, "select public.send_message(%s, 'x', %s)", (conv["id"], bad))) == "22023", bad
    assert sqlstate(lambda: api.run(dan, "select public.send_message(%s, '   ')", (conv["id"],))) == "22023"

    assert [tuple(r.values()) for r in api.run(dan, MESSAGES)] == [("customer", "Side door, please"), ("driver", "On my way")]
    assert api.run(staff, MESSAGES) == [] and api.run(staff, "select id from public.conversations") == [], "a delivery chat is the parties' only"
    assert api.run(other.claims("owner"), MESSAGES) == [] and api.run(other.claims("driver"), "select id from public.conversations") == []
    assert sqlstate(lambda: api.run(other.claims("owner"), "select public.send_message(%s, 'hi')", (conv["id"],))) == "PT404"
    assert len(api.run(dan, "select id, kind, status, closes_at from public.conversations")) == 1
    readable = {r["column_name"] for r in conn.execute(
        "select column_name from information_schema.column_privileges where grantee = 'authenticated' and privilege_type = 'SELECT' "
        "and table_schema = 'public' and table_name in ('conversations', 'conversation_messages')")}
    assert readable and not {c for c in readable if "phone" in c or c in ("customer_user_id", "driver_id")}, readable
    thread = api.run(guest, "select public.order_messages(%s, %s) as r", (order["order_id"], order["access_token"]))[0]["r"]
    assert thread["open"] is True and [m["body"] for m in thread["messages"]] == ["Side door, please", "On my way"]
    assert "+1" not in str(thread) and "phone" not in str(thread)

    for n in range(9):  # the driver sent 1 already this minute: 10 is the limit
        api.run(dan, "select public.send_message(%s, %s)", (conv["id"], f"update {n}"))
    assert sqlstate(lambda: api.run(dan, "select public.send_message(%s, 'one too many')", (conv["id"],))) == "PT429"
    api.run(guest, send_guest, (order["order_id"], order["access_token"], "Thanks!", None))  # the limit is per sender
    assert sqlstate(lambda: conn.execute("update public.conversation_messages set body = 'edited' where conversation_id = %s", (conv["id"],))) == "BR006"
    assert sqlstate(lambda: conn.execute("delete from public.conversation_messages where conversation_id = %s", (conv["id"],))) == "BR006"

    api.run(dan, "select public.update_delivery_status(%s, 'picked_up')", (delivery["id"],))
    conn.execute("update public.deliveries set status = 'delivered', delivered_at = now() - interval '59 minutes' where id = %s", (delivery["id"],))
    api.run(guest, send_guest, (order["order_id"], order["access_token"], "Got it, thanks", None))  # 59 minutes on: still open
    conn.execute("update public.conversations set closes_at = closes_at - interval '2 minutes' where id = %s", (conv["id"],))  # 61 minutes on
    assert sqlstate(lambda: api.run(guest, send_guest, (order["order_id"], order["access_token"], "Hello?", None))) == "BR195"
    assert sqlstate(lambda: api.run(dan, "select public.send_message(%s, 'bye')", (conv["id"],))) == "BR195"
    closed = api.run(guest, "select public.order_messages(%s, %s) as r", (order["order_id"], order["access_token"]))[0]["r"]
    assert closed["open"] is False and len(closed["messages"]) == 13, "read-only, still readable"

    published = {r["tablename"] for r in conn.execute("select tablename from pg_publication_tables where pubname = 'supabase_realtime'")}
    assert {"conversations", "conversation_messages"} <= published


def test_support_conversations_are_the_customers_and_the_venues_staff(api: Api, conn: Conn, factory: Factory, menu: Menu) -> None:
    tenant = menu.tenant
    kim = Claims.user(factory.user())
    assert sqlstate(lambda: api.run(Claims.anon(), "select public.open_support_conversation(%s, 'hi')", (menu.venue_id,))) == "42501"
    opened = api.run(kim, "select public.open_support_conversation(%s, %s, null, 'Allergens') as r",
                     (menu.venue_id, "Is the croissant nut-free?"))[0]["r"]
    conv = opened["conversation_id"]
    for role in ("owner", "manager", "staff"):
        assert [m["body"] for m in api.run(tenant.claims(role), MESSAGES)] == ["Is the croissant nut-free?"], role
    assert api.run(tenant.claims("driver"), MESSAGES) == [], "drivers are not support staff"
    assert api.run(Claims.user(factory.user()), MESSAGES) == [], "another customer sees nothing"
    other = factory.tenant("Elsewhere")
    assert api.run(other.claims("owner"), MESSAGES) == []
    assert sqlstate(lambda: api.run(other.claims("owner"), "select public.set_conversation_status(%s, 'closed')", (conv,))) == "PT404"

    staff = tenant.claims("staff")
    assert api.run(staff, "select public.set_conversation_status(%s, 'assigned') as r", (conv,))[0]["r"]["assigned_to"] == str(tenant.users["staff"])
    api.run(staff, "select public.send_message(%s, 'Yes, no nuts in it.')", (conv,))
    api.run(kim, "select public.send_message(%s, 'Thanks')", (conv,))
    assert [tuple(r.values()) for r in api.run(kim, MESSAGES)] == [
        ("customer", "Is the croissant nut-free?"), ("staff", "Yes, no nuts in it."), ("customer", "Thanks")]
    assert sqlstate(lambda: api.run(kim, "select public.set_conversation_status(%s, 'closed')", (conv,))) == "PT404", "the customer does not close it"
    api.run(staff, "select public.set_conversation_status(%s, 'closed')", (conv,))
    assert sqlstate(lambda: api.run(kim, "select public.send_message(%s, 'One more thing')", (conv,))) == "BR195"
    assert sqlstate(lambda: api.run(staff, "select public.send_message(%s, 'Reopened?')", (conv,))) == "BR195"
    assert len(api.run(kim, MESSAGES)) == 3
    assert sqlstate(lambda: api.run(kim, "insert into public.conversation_messages (business_id, conversation_id, sender_role, body) "
                                         "values (%s, %s, 'staff', 'forged')", (tenant.business_id, conv))) == "42501"
