"""Rate limits in the database (issue 22 item 1), called the way PostgREST calls the RPCs: role, JWT
claims and request.headers (the client IP) set locally, one transaction per request."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest

from brigade.auth import Claims
from tests.bookings_kit import build_activity, hold_payload
from tests.conftest import Api, Factory
from tests.ordering_kit import Menu, order_payload

Conn = psycopg.Connection[dict[str, Any]]


def rpc(api: Api, claims: Claims, sql: str, params: Any, ip: str | None = None) -> Any:
    """One PostgREST request: the gateway's x-forwarded-for in request.headers."""
    with api.session(claims) as c:
        if ip:
            c.execute("select set_config('request.headers', %s, true)", (json.dumps({"x-forwarded-for": f"{ip}, 10.0.0.1"}),))
        row = c.execute(sql, params).fetchone()
        return next(iter(row.values())) if row else None


def refusal(fn: Any) -> dict[str, Any]:
    """The PT429 a call raised: its detail (retry_after, action, scope)."""
    with pytest.raises(psycopg.Error) as err:
        fn()
    assert err.value.sqlstate == "PT429", err.value
    assert err.value.diag.message_hint == "rate_limited"
    return json.loads(err.value.diag.message_detail or "{}")


def refused(conn: Conn, action: str, scope: str) -> int:
    row = conn.execute("select refused from app.rate_limit_metrics() where action = %s and scope = %s", (action, scope)).fetchone()
    assert row is not None
    return row["refused"]


def limit(conn: Conn, action: str, scope: str, window: int, max_hits: int) -> None:
    conn.execute("select app.define_rate_limit(%s, %s, %s, %s)", (action, scope, window, max_hits))


def pass_window(conn: Conn, action: str, scope: str) -> None:
    """Moves the limit's hits back by its window, as if that much time had passed."""
    conn.execute("update app.rate_limit_hits h set at = h.at - make_interval(secs => l.window_seconds) "
                 "from app.rate_limits l where l.action = h.action and l.scope = h.scope and h.action = %s and h.scope = %s",
                 (action, scope))


def test_place_order_limits_per_ip_phone_and_business_trip_at_their_boundary_and_reset(api: Api, conn: Conn, menu: Menu) -> None:
    limit(conn, "place_order", "ip", 600, 3)
    limit(conn, "place_order", "phone", 3600, 2)
    order = "select public.place_order(%s) as r"

    def guest(phone: str) -> str:
        return json.dumps(order_payload(menu, customer={"name": "Ada", "phone": phone}))

    for n in range(3):  # three orders from one IP (each for another phone) fit in the window
        rpc(api, Claims.anon(), order, (guest(f"+1212555010{n}"),), ip="203.0.113.7")
    detail = refusal(lambda: rpc(api, Claims.anon(), order, (guest("+12125550109"),), ip="203.0.113.7"))
    assert detail["action"] == "place_order" and detail["scope"] == "ip" and 0 < detail["retry_after"] <= 600
    assert refused(conn, "place_order", "ip") == 1  # counted although the refusal rolled its transaction back
    assert conn.execute("select count(*) as n from public.orders").fetchone() == {"n": 3}
    # another IP is not limited; neither is the business's own staff at the full IP (the allow-list)
    rpc(api, Claims.anon(), order, (guest("+12125550108"),), ip="198.51.100.2")
    rpc(api, menu.tenant.claims("manager"), order, (guest("+12125550107"),), ip="203.0.113.7")
    # the window slides: once the hits are older than it, the IP may order again
    pass_window(conn, "place_order", "ip")
    rpc(api, Claims.anon(), order, (guest("+12125550106"),), ip="203.0.113.7")

    # one phone, many IPs: the phone's limit trips at its own boundary
    rpc(api, Claims.anon(), order, (guest("+12125550155"),), ip="192.0.2.1")
    rpc(api, Claims.anon(), order, (guest("+1 212 555 0155"),), ip="192.0.2.2")
    assert refusal(lambda: rpc(api, Claims.anon(), order, (guest("+12125550155"),), ip="192.0.2.3"))["scope"] == "phone"

    # the business as a whole: a flood from everywhere is cut at the business's limit
    placed = conn.execute("select count(*) as n from public.orders where business_id = %s", (menu.tenant.business_id,)).fetchone()
    assert placed is not None
    guests_so_far = conn.execute("select count(*) as n from app.rate_limit_hits where action = 'place_order' and scope = 'business'").fetchone()
    assert guests_so_far is not None and guests_so_far["n"] == placed["n"] - 1  # the manager's order is not a guest's
    limit(conn, "place_order", "business", 60, guests_so_far["n"] + 1)
    rpc(api, Claims.anon(), order, (guest("+12125550170"),), ip="192.0.2.70")
    assert refusal(lambda: rpc(api, Claims.anon(), order, (guest("+12125550171"),), ip="192.0.2.71"))["scope"] == "business"
    # the log holds digests, never the phone or the IP
    assert conn.execute("select count(*) as n from app.rate_limit_hits where encode(subject, 'escape') like '%%212555%%' "
                        "or encode(subject, 'escape') like '%%203.0.113%%'").fetchone() == {"n": 0}
    # the nightly prune forgets hits past their window and keeps the rest
    pass_window(conn, "place_order", "phone")
    live = ("select count(*) as n from app.rate_limit_hits h join app.rate_limits l using (action, scope) "
            "where h.at > now() - make_interval(secs => l.window_seconds)")
    kept = conn.execute(live).fetchone()
    assert kept is not None and 0 < kept["n"] < conn.execute("select count(*) as n from app.rate_limit_hits").fetchone()["n"]  # type: ignore[index]
    conn.execute("select app.prune_rate_limit_hits()")
    assert conn.execute("select count(*) as n from app.rate_limit_hits").fetchone() == kept


def test_booking_holds_and_claim_codes_are_limited_too(api: Api, conn: Conn, factory: Factory, menu: Menu) -> None:
    act = build_activity(conn, menu.tenant, capacity=40)
    limit(conn, "hold_booking", "email", 3600, 2)
    hold = "select public.hold_booking(%s) as r"
    for ip in ("192.0.2.10", "192.0.2.11"):
        rpc(api, Claims.anon(), hold, (json.dumps(hold_payload(act, party={"adult": 1})),), ip=ip)
    detail = refusal(lambda: rpc(api, Claims.anon(), hold, (json.dumps(hold_payload(act, party={"adult": 1})),), ip="192.0.2.12"))
    assert detail["scope"] == "email"
    assert conn.execute("select count(*) as n from public.bookings").fetchone() == {"n": 2}

    # claim codes (an SMS each): the destination's limit holds across users, before their own 5 per hour
    default = conn.execute("select max_hits from app.rate_limits where action = 'request_order_claim' and scope = 'destination'").fetchone()
    assert default is not None
    users = [Claims.user(factory.user(f"claimer{n}@example.test")) for n in range(2)]
    claim = "select public.request_order_claim(%s, 'sms', '+12125550777') as r"
    for n in range(default["max_hits"]):
        rpc(api, users[n % 2], claim, (menu.tenant.business_id,))
    assert refusal(lambda: rpc(api, users[0], claim, (menu.tenant.business_id,)))["scope"] == "destination"
    assert refused(conn, "request_order_claim", "destination") == 1
