"""Staff PINs and re-authentication for sensitive actions, in SQL as PostgREST runs it: the grant
travels in the request headers PostgREST hands to SQL (request.headers)."""

from __future__ import annotations

import json
from typing import Any

import psycopg
from psycopg import sql

from brigade.auth import Claims
from brigade.localdb import Cluster
from tests.conftest import Api, sqlstate
from tests.ordering_kit import Menu, order_payload, session_completed

Conn = psycopg.Connection[dict[str, Any]]
PIN = "730519"


def call(api: Api, claims: Claims, query: str, params: Any = None, proof: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """One request as PostgREST runs it, with the re-auth headers when given."""
    with api.session(claims) as c:
        c.execute("select set_config('request.headers', %s, true)", (json.dumps(proof or {}),))
        cur = c.execute(query, params)
        return cur.fetchall() if cur.description else []


def verify(api: Api, claims: Claims, business: Any, pin: str, device: str = "ipad-1") -> dict[str, Any]:
    return call(api, claims, "select public.verify_pin(%s, %s, %s) as r", (business, pin, device))[0]["r"]


def grant(api: Api, claims: Claims, business: Any, device: str = "ipad-1") -> dict[str, str]:
    answer = verify(api, claims, business, PIN, device)
    assert answer["granted"] is True, answer
    return {"x-brigade-reauth": answer["grant_token"], "x-brigade-device": device}


def paid(api: Api, conn: Conn, menu: Menu, n: int) -> dict[str, Any]:
    order = api.run(Claims.anon(), "select public.place_order(%s) as r", (json.dumps(order_payload(menu)),))[0]["r"]
    conn.execute("select app.apply_stripe_event(%s)", (json.dumps(session_completed(order, f"cs_pin{n}", f"pi_pin{n}")),))
    return order


def test_pins_lock_after_five_wrong_tries_and_are_never_kept_in_clear(api: Api, conn: Conn, menu: Menu,
                                                                       pg_cluster: Cluster) -> None:
    b, staff = menu.tenant.business_id, menu.tenant.claims("staff")
    for weak, code in (("1234", "BR811"), ("0000", "BR811"), ("98765", "BR811"), ("12a4", "BR810"), ("123", "BR810"),
                       ("1234567", "BR810")):
        assert sqlstate(lambda: call(api, staff, "select public.set_my_pin(%s, %s)", (b, weak))) == code, weak
    assert sqlstate(lambda: verify(api, staff, b, PIN)) == "BR812", "no PIN yet"
    assert call(api, staff, "select public.set_my_pin(%s, %s) as r", (b, PIN)) == [{"r": {"pin_set": True}}]
    assert sqlstate(lambda: call(api, staff, "select public.set_my_pin(%s, %s)", (b, "246810"))) == "BR820", \
        "changing a PIN needs the old one, fresh"
    assert sqlstate(lambda: verify(api, staff, b, PIN, device="")) == "22023"
    outsider = conn.execute("insert into auth.users (email) values ('outsider@example.test') returning id").fetchone()["id"]  # type: ignore[index]
    assert sqlstate(lambda: verify(api, Claims.user(outsider), b, PIN)) == "PT404", "members only"

    # four wrong tries count down; the fifth locks for 15 minutes, and then even the right PIN is refused
    assert [verify(api, staff, b, "111222")["attempts_left"] for _ in range(4)] == [4, 3, 2, 1]
    locked = verify(api, staff, b, "111222")
    assert (locked["granted"], locked["reason"], locked["attempts_left"]) == (False, "locked", 0)
    minutes = conn.execute("select extract(epoch from locked_until - now()) / 60 as m from app.staff_pins where user_id = %s",
                           (menu.tenant.users["staff"],)).fetchone()["m"]  # type: ignore[index]
    assert 14.9 < minutes <= 15
    assert verify(api, staff, b, PIN)["reason"] == "locked"
    assert call(api, staff, "select public.my_pin_status(%s) ->> 'locked_until' is not null as locked", (b,)) == [{"locked": True}]
    conn.execute("update app.staff_pins set locked_until = now() - interval '1 second' where user_id = %s", (menu.tenant.users["staff"],))
    ok = verify(api, staff, b, PIN)
    assert ok["granted"] is True and ok["grant_token"].startswith("rea_") and ok["attempts_left"] == 5
    assert [r["action"] for r in conn.execute("select action from public.audit_log where business_id = %s and action like 'pin.%%' "
                                              "order by id", (b,)).fetchall()] == \
        ["pin.set", *["pin.failed"] * 4, "pin.locked", "pin.refused_locked", "pin.verified"]
    # with a fresh grant the PIN can be changed (and the old one stops working)
    call(api, staff, "select public.set_my_pin(%s, %s)", (b, "246810"), grant(api, staff, b))
    assert verify(api, staff, b, PIN)["reason"] == "wrong_pin" and verify(api, staff, b, "246810")["granted"] is True

    # nothing about a PIN in clear: a bcrypt hash (cost 10), hashed grant tokens, no PIN in any row or the server log
    stored = conn.execute("select pin_hash from app.staff_pins where user_id = %s", (menu.tenant.users["staff"],)).fetchone()
    assert stored and stored["pin_hash"].startswith("$2a$10$")
    assert conn.execute("select count(*) as n from app.reauth_grants where token_hash = %s", (ok["grant_token"],)).fetchone() == {"n": 0}
    assert sqlstate(lambda: api.run(staff, "select * from app.staff_pins")) == "42501"
    assert sqlstate(lambda: verify(api, staff, b, PIN, device="d" * 201)) == "22023"  # a failing statement that carried the PIN
    tables = conn.execute("select n.nspname, c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace "
                          "where c.relkind = 'r' and n.nspname in ('public', 'app', 'auth', 'pgmq')").fetchall()
    for secret in (PIN, "246810", "111222", ok["grant_token"]):
        found = [f"{t['nspname']}.{t['relname']}" for t in tables if conn.execute(
            sql.SQL("select exists (select 1 from {}.{} t where t::text like %s) as hit").format(
                sql.Identifier(t["nspname"]), sql.Identifier(t["relname"])), (f"%{secret}%",)).fetchone()["hit"]]  # type: ignore[index]
        assert found == [], (secret, found)
        assert secret not in pg_cluster.log_file.read_text(errors="replace")


def test_sensitive_actions_need_a_fresh_grant_when_the_business_requires_it(api: Api, conn: Conn, menu: Menu) -> None:
    t, b = menu.tenant, menu.tenant.business_id
    owner, manager, staff = t.claims("owner"), t.claims("manager"), t.claims("staff")
    for who in (owner, manager, staff):
        call(api, who, "select public.set_my_pin(%s, %s)", (b, PIN))
    first, second, third = paid(api, conn, menu, 1), paid(api, conn, menu, 2), paid(api, conn, menu, 3)
    refund = "select public.request_refund(%s, 100) as r"

    # not required: a refund goes through without a PIN
    assert call(api, manager, refund, (first["order_id"],))[0]["r"]["amount_cents"] == 100
    assert sqlstate(lambda: call(api, staff, "select public.set_pin_reauth(%s, true)", (b,))) == "PT404", "the owner's setting"
    call(api, owner, "select public.set_pin_reauth(%s, true)", (b,))

    # required: refused without a grant, with a grant for another device, another user's, or an expired one
    assert sqlstate(lambda: call(api, manager, refund, (second["order_id"],))) == "BR820"
    mine = grant(api, manager, b)
    assert sqlstate(lambda: call(api, manager, refund, (second["order_id"],), {**mine, "x-brigade-device": "stolen-phone"})) == "BR820"
    assert sqlstate(lambda: call(api, owner, refund, (second["order_id"],), mine)) == "BR820", "bound to the user"
    assert call(api, manager, refund, (second["order_id"],), mine)[0]["r"]["amount_cents"] == 100
    conn.execute("update app.reauth_grants set expires_at = now() - interval '1 second'")
    assert sqlstate(lambda: call(api, manager, refund, (third["order_id"],), mine)) == "BR821"
    assert conn.execute("select count(*) as n from public.refunds where order_id = %s", (third["order_id"],)).fetchone() == {"n": 0}

    # every sensitive action: refused without, done with a fresh grant
    ticket = conn.execute("select id from public.kitchen_tickets where order_id = %s", (third["order_id"],)).fetchone()["id"]  # type: ignore[index]
    customer = conn.execute("select customer_id from public.orders where id = %s", (first["order_id"],)).fetchone()["customer_id"]  # type: ignore[index]
    staff_member = conn.execute("select id from public.memberships where user_id = %s", (t.users["staff"],)).fetchone()["id"]  # type: ignore[index]
    actions = [
        (staff, "select public.set_order_status(%s, 'cancelled', 'guest left')", (second["order_id"],)),
        (staff, "select public.void_ticket(%s, 'wrong order')", (ticket,)),
        (manager, "update public.products set price_cents = 499 where id = %s", (menu.products["latte"],)),
        (manager, "update public.product_variants set price_adjustment_cents = 150 where id = %s", (menu.variants["large"],)),
        (manager, "update public.modifiers set price_cents = 70 where id = %s", (menu.modifiers["oat"],)),
        (manager, "insert into public.stock_movements (business_id, venue_id, stock_item_id, delta, reason) values (%s, %s, %s, 4, 'count')",
         (b, menu.venue_id, menu.stock["milk"])),
        (manager, "select public.export_customer(%s)", (customer,)),
        (owner, "update public.memberships set role = 'manager' where id = %s", (staff_member,)),
        (owner, "select public.reset_staff_pin(%s)", (staff_member,)),
    ]
    for who, query, params in actions:
        assert sqlstate(lambda: call(api, who, query, params)) == "BR820", query
        assert sqlstate(lambda: call(api, who, query, params, grant(api, who, b, "till"))) is None, query
    assert conn.execute("select price_cents from public.products where id = %s", (menu.products["latte"],)).fetchone() == {"price_cents": 499}
    assert conn.execute("select role from public.memberships where id = %s", (staff_member,)).fetchone() == {"role": "manager"}
    assert conn.execute("select count(*) as n from public.audit_log where business_id = %s and action = 'reauth.used'",
                        (b,)).fetchone() == {"n": len(actions) + 1}
    # what is not sensitive needs nothing: renaming a product, the system moving stock or refunding
    assert api.rowcount(manager, "update public.products set name = 'Flat white' where id = %s", (menu.products["latte"],)) == 1
    conn.execute("select app.request_automatic_refund(%s, %s)", (b, second["order_id"]))

    # customers serving themselves are not staff: no PIN for exporting their own data
    me = conn.execute("insert into auth.users (email) values ('diner@example.test') returning id").fetchone()["id"]  # type: ignore[index]
    conn.execute("update public.customers set user_id = %s where id = %s", (me, customer))
    assert call(api, Claims.user(me), "select public.export_customer(%s) -> 'customer' ->> 'id' as id", (customer,)) == \
        [{"id": str(customer)}]

    # switching the requirement off needs a fresh PIN too; then refunds need none again
    assert sqlstate(lambda: call(api, owner, "select public.set_pin_reauth(%s, false)", (b,))) == "BR820"
    call(api, owner, "select public.set_pin_reauth(%s, false)", (b,), grant(api, owner, b))
    assert call(api, manager, refund, (third["order_id"],))[0]["r"]["amount_cents"] == 100
