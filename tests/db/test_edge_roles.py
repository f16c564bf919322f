"""Custom roles and permissions (issue 22 item 5) and blocked customers (item 4), called the way
PostgREST calls them (role + JWT claims, one transaction per request)."""

from __future__ import annotations

import json
from typing import Any

import psycopg

from brigade.auth import Claims
from tests.bookings_kit import build_activity, hold_payload
from tests.campaigns_kit import automation, customer, enable, sends
from tests.conftest import Api, Factory, sqlstate
from tests.ordering_kit import Menu, order_payload, session_completed

Conn = psycopg.Connection[dict[str, Any]]


def paid(api: Api, conn: Conn, menu: Menu, phone: str) -> dict[str, Any]:
    order = api.run(Claims.anon(), "select public.place_order(%s) as r",
                    (json.dumps(order_payload(menu, customer={"name": "Pat", "phone": phone})),))[0]["r"]
    conn.execute("select app.apply_stripe_event(%s)", (json.dumps(session_completed(order, f"cs_{phone[-4:]}", f"pi_{phone[-4:]}")),))
    return order


def denied(conn: Conn, business_id: Any) -> list[dict[str, Any]]:
    return conn.execute("select actor_user_id, details from public.audit_log where business_id = %s and action = 'permission.denied' "
                        "order by id", (business_id,)).fetchall()


def test_a_custom_role_grants_exactly_its_permissions_and_refusals_are_audited(api: Api, conn: Conn, factory: Factory, menu: Menu) -> None:
    t = menu.tenant
    b, owner, staff = t.business_id, t.claims("owner"), t.claims("staff")
    order = paid(api, conn, menu, "+12125550301")

    # built-in staff: no refund. Through PostgREST the refusal is a 403 body, not a raise, so it is audited
    refused = api.run(staff, "select public.request_refund(%s, 100) as r", (order["order_id"],))[0]["r"]
    assert refused["error"] == "permission_denied" and refused["code"] == "42501"
    assert refused["details"]["permission"] == "refund" and refused["details"]["order_id"] == order["order_id"]
    [entry] = denied(conn, b)
    assert entry["actor_user_id"] == t.users["staff"] and entry["details"]["role"] == "staff"
    assert conn.execute("select count(*) as n from public.refunds where order_id = %s", (order["order_id"],)).fetchone() == {"n": 0}
    # the private function raises the coded error for SQL callers; a non-member still sees nothing (PT404)
    assert sqlstate(lambda: api.run(staff, "select app.request_refund(%s, 100, null, null, false)", (order["order_id"],))) == "42501"
    outsider = factory.tenant("Elsewhere").claims("manager")
    assert sqlstate(lambda: api.run(outsider, "select public.request_refund(%s, 100)", (order["order_id"],))) == "PT404"
    # nobody writes a refusal they did not have (the owner holds refund; a forged detail is refused)
    assert sqlstate(lambda: api.run(owner, "select app.permission_refused(%s, 'x')",
                                    (json.dumps({"business_id": str(b), "permission": "refund"}),))) == "22023"

    # the owner makes "Shift lead" (staff who may refund, and not cancel paid orders) and gives it to the staff member
    [role] = api.run(owner, "insert into public.business_roles (business_id, name, permissions) "
                            "values (%s, 'Shift lead', '{refund, edit_stock, refund}') returning id, permissions", (b,))
    assert role["permissions"] == ["edit_stock", "refund"]
    assert sqlstate(lambda: api.run(owner, "insert into public.business_roles (business_id, name, permissions) "
                                           "values (%s, 'Bad', '{launch_rockets}')", (b,))) == "BR780"
    assert sqlstate(lambda: api.run(staff, "insert into public.business_roles (business_id, name) values (%s, 'Mine')", (b,))) == "42501"
    api.run(owner, "update public.memberships set custom_role_id = %s where business_id = %s and user_id = %s",
            (role["id"], b, t.users["staff"]))
    assert sqlstate(lambda: api.run(owner, "update public.memberships set custom_role_id = %s where business_id = %s and user_id = %s",
                                    (role["id"], b, t.users["owner"]))) == "BR781"
    granted = api.run(staff, "select public.request_refund(%s, 100) as r", (order["order_id"],))[0]["r"]
    assert granted["amount_cents"] == 100 and "error" not in granted
    # the custom role replaces the built-in defaults: staff could cancel paid orders, the shift lead cannot
    other = paid(api, conn, menu, "+12125550302")
    gone = api.run(staff, "select public.set_order_status(%s, 'cancelled', 'test') as r", (other["order_id"],))[0]["r"]
    assert gone["error"] == "permission_denied" and gone["details"]["permission"] == "cancel_paid_order"
    after = conn.execute("select status::text as s from public.orders where id = %s", (other["order_id"],)).fetchone()
    assert after is not None and after["s"] != "cancelled"
    assert [d["details"]["permission"] for d in denied(conn, b)] == ["refund", "cancel_paid_order"]
    assert denied(conn, b)[-1]["details"]["custom_role_id"] == str(role["id"])

    # policies check permissions too: the shift lead edits stock (edit_stock) but not the menu (no edit_menu)
    assert api.rowcount(staff, "update public.stock_items set critical_level = 3 where business_id = %s and venue_id = %s",
                        (b, t.venues[0])) > 0
    assert api.rowcount(staff, "update public.products set name = name || '!' where business_id = %s", (b,)) == 0
    assert api.rowcount(t.claims("manager"), "update public.products set name = name || '!' where business_id = %s", (b,)) > 0
    # and a built-in manager stripped of edit_menu by a custom role loses it at once
    [plain] = api.run(owner, "insert into public.business_roles (business_id, name, permissions) values (%s, 'Bookkeeper', '{}') returning id", (b,))
    api.run(owner, "update public.memberships set custom_role_id = %s where business_id = %s and user_id = %s", (plain["id"], b, t.users["manager"]))
    assert api.rowcount(t.claims("manager"), "update public.products set name = name || '!' where business_id = %s", (b,)) == 0
    # the money views follow view_finance: the stripped manager reads no margins until the role grants it
    profit = "select count(*) as n from public.order_profit where business_id = %s"
    assert api.run(t.claims("manager"), profit, (b,)) == [{"n": 0}]
    api.run(owner, "update public.business_roles set permissions = '{view_finance}' where id = %s", (plain["id"],))
    assert api.run(t.claims("manager"), profit, (b,))[0]["n"] >= 1
    assert api.run(staff, profit, (b,)) == [{"n": 0}], "the shift lead holds no view_finance"
    # deleting a role takes its holders back to their built-in defaults
    api.run(owner, "delete from public.business_roles where id = %s", (plain["id"],))
    assert api.rowcount(t.claims("manager"), "update public.products set name = name || '!' where business_id = %s", (b,)) > 0


def test_blocked_customers_cannot_order_book_or_be_marketed_to_until_unblocked(api: Api, conn: Conn, menu: Menu) -> None:
    t = menu.tenant
    b = t.business_id
    enable(conn, b)
    cid = customer(api, conn, menu, name="Bo Blocked", days_ago=40)
    contact = conn.execute("select phone, email from public.customers where id = %s", (cid,)).fetchone()
    assert contact is not None
    status = "select public.set_customer_status(%s, %s, %s) as r"

    # staff may not block (audited 403); a manager must say why (BR771), then blocks
    assert api.run(t.claims("staff"), status, (cid, "blocked", "rude"))[0]["r"]["error"] == "permission_denied"
    assert sqlstate(lambda: api.run(t.claims("manager"), status, (cid, "blocked", " "))) == "BR771"
    assert sqlstate(lambda: api.run(t.claims("manager"), status, (cid, "banned", "x"))) == "22023"
    assert api.run(t.claims("manager"), status, (cid, "blocked", "chargebacks"))[0]["r"]["status"] == "blocked"
    audit = conn.execute("select action, details from public.audit_log where business_id = %s and action like 'customer.%%' order by id",
                         (b,)).fetchall()
    assert audit == [{"action": "customer.blocked", "details": {"customer_id": str(cid), "from": "active", "to": "blocked",
                                                                  "reason": "chargebacks"}}]

    # orders by phone (formatted differently) or by email, and bookings, are refused with BR770
    place = "select public.place_order(%s) as r"
    by_phone = order_payload(menu, customer={"name": "Bo", "phone": contact["phone"].replace("+1", "+1 ")})
    by_email = order_payload(menu, customer={"name": "Bo", "email": contact["email"].upper(), "phone": "+12125550999"})
    for payload in (by_phone, by_email):
        assert sqlstate(lambda: api.run(Claims.anon(), place, (json.dumps(payload),))) == "BR770"
    assert sqlstate(lambda: api.run(t.claims("staff"), place, (json.dumps(dict(by_phone, channel="phone")),))) == "BR770"
    act = build_activity(conn, t)
    booking = json.dumps(hold_payload(act, customer={"name": "Bo", "email": contact["email"], "phone": "+12125550998"}))
    assert sqlstate(lambda: api.run(Claims.anon(), "select public.hold_booking(%s)", (booking,))) == "BR770"
    api.run(Claims.anon(), place, (json.dumps(order_payload(menu, customer={"name": "Someone", "phone": "+12125550997"})),))

    # a campaign send to them is skipped as blocked; others still get theirs
    other = customer(api, conn, menu, name="Al Allowed", days_ago=40)
    rule = automation(conn, b)
    conn.execute("select app.evaluate_dormant_automations(%s)", (b,))
    outcome = {s["customer_id"]: conn.execute("select app.claim_marketing_send(%s, %s) as c", (b, s["id"])).fetchone()["c"]  # type: ignore[index]
               for s in sends(conn, b, automation_id=rule)}
    assert outcome[cid] == {"action": "skipped", "reason": "blocked"} and outcome[other]["action"] == "send"

    # unblocking restores ordering (audited)
    assert api.run(t.claims("manager"), status, (cid, "active", None))[0]["r"]["status"] == "active"
    assert api.run(Claims.anon(), place, (json.dumps(by_phone),))[0]["r"]["order_number"] > 0
    assert conn.execute("select action from public.audit_log where business_id = %s and action like 'customer.%%' order by id",
                        (b,)).fetchall()[-1] == {"action": "customer.unblocked"}
    # the status is not a column a member writes directly
    assert sqlstate(lambda: api.run(t.claims("manager"), "update public.customers set status = 'blocked' where id = %s", (cid,))) == "42501"


def test_the_built_in_roles_hold_their_default_permissions(api: Api, conn: Conn, menu: Menu) -> None:
    catalogue = {r["key"] for r in conn.execute("select key from public.permissions").fetchall()}
    for role in ("owner", "manager", "staff", "driver"):
        held = {r["key"] for r in api.run(menu.tenant.claims(role), "select p.key from public.permissions p "
                                          "where app.has_permission(%s, p.key)", (menu.tenant.business_id,))}
        defaults = {r["permission"] for r in conn.execute("select permission from public.role_permissions where role = %s",
                                                          (role,)).fetchall()}
        assert held == (catalogue if role == "owner" else defaults), role
        assert ("refund" in held) == (role in ("owner", "manager")), role


def test_the_customer_dossier_export_takes_the_permission_and_a_fresh_pin(api: Api, conn: Conn, menu: Menu) -> None:
    """0230: app.export_customer after issues 22 and 15 met: export_customers (a custom role too), then the PIN."""
    t = menu.tenant
    b, staff = t.business_id, t.claims("staff")
    order = paid(api, conn, menu, "+1 212 555 0142")
    customer_id = conn.execute("select customer_id from public.orders where id = %s", (order["order_id"],)).fetchone()["customer_id"]  # type: ignore[index]
    export = "select public.export_customer(%s) as r"
    assert sqlstate(lambda: api.run(staff, export, (customer_id,))) == "42501", "plain staff lack export_customers"
    role = conn.execute("insert into public.business_roles (business_id, name, permissions) values (%s, 'CRM desk', '{export_customers}') "
                        "returning id", (b,)).fetchone()["id"]  # type: ignore[index]
    conn.execute("update public.memberships set custom_role_id = %s where business_id = %s and user_id = %s", (role, b, t.users["staff"]))
    assert api.run(staff, export, (customer_id,))[0]["r"]["customer"]["id"] == str(customer_id)
    conn.execute("update public.businesses set require_pin_reauth = true where id = %s", (b,))
    assert sqlstate(lambda: api.run(staff, export, (customer_id,))) == "BR820", "and a fresh PIN where the business asks for one"
    assert sqlstate(lambda: api.run(t.claims("manager"), export, (customer_id,))) == "BR820"
