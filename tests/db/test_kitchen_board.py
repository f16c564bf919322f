"""The kitchen display feed: kitchen_board per station with ages, targets and late flags, bump and
recall, under RLS as PostgREST runs it, and the tables a kitchen screen watches on Realtime."""

from __future__ import annotations

import json
from typing import Any

import psycopg

from brigade.auth import Claims
from tests.conftest import Api, Factory, sqlstate
from tests.ordering_kit import Menu, order_payload, session_completed

Conn = psycopg.Connection[dict[str, Any]]


def paid(api: Api, conn: Conn, menu: Menu, n: int, **overrides: Any) -> dict[str, Any]:
    order = api.run(Claims.anon(), "select public.place_order(%s) as r", (json.dumps(order_payload(menu, **overrides)),))[0]["r"]
    conn.execute("select app.apply_stripe_event(%s)", (json.dumps(session_completed(order, f"cs_k{n}", f"pi_k{n}")),))
    return order


def board(api: Api, claims: Claims, venue: Any) -> dict[str, Any]:
    return api.run(claims, "select public.kitchen_board(%s) as b", (venue,))[0]["b"]


def by_station(b: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    return {s["station"]: s["tickets"] for s in b["stations"]}


def test_the_board_per_station_with_ages_targets_bump_and_recall(api: Api, conn: Conn, factory: Factory, menu: Menu) -> None:
    b = menu.tenant.business_id
    conn.execute("update public.product_categories set station = 'bar' where business_id = %s", (b,))
    conn.execute("update public.products set station = 'pastry', prep_time_minutes = 30 where id = %s", (menu.products["croissant"],))
    conn.execute("update public.products set prep_time_minutes = 8 where id = %s", (menu.products["latte"],))
    first, second = paid(api, conn, menu, 1, notes="no lid"), paid(api, conn, menu, 2)
    # the first order came in 20 minutes ago: late at the bar (8 min target), not yet at pastry (30)
    conn.execute("update public.kitchen_tickets set created_at = created_at - interval '20 minutes' where order_id = %s",
                 (first["order_id"],))
    staff = menu.tenant.claims("staff")

    stations = by_station(board(api, staff, menu.venue_id))
    assert list(stations) == ["bar", "pastry"]
    assert [t["order_number"] for t in stations["bar"]] == [first["order_number"], second["order_number"]], "oldest first"
    bar_first, pastry_first = stations["bar"][0], stations["pastry"][0]
    assert [i["name"] for i in bar_first["items"]] == ["Latte"] and bar_first["items"][0]["modifiers"] == ["Oat", "Shot"]
    assert [(i["name"], i["quantity"]) for i in pastry_first["items"]] == [("Croissant", 2)]
    assert (bar_first["target_minutes"], bar_first["late"]) == (8, True)
    assert (pastry_first["target_minutes"], pastry_first["late"]) == (30, False)
    assert stations["bar"][1]["late"] is False and bar_first["notes"] == "no lid"
    assert 20 * 60 <= bar_first["age_seconds"] < 20 * 60 + 60
    summary = {s["station"]: (s["open"], s["late"]) for s in board(api, staff, menu.venue_id)["stations"]}
    assert summary == {"bar": (2, 1), "pastry": (2, 0)}

    # bump at the bar: it leaves the bar's screen only; again is a no-op; recall brings it back
    ticket = bar_first["ticket_id"]
    assert api.run(staff, "select public.bump_ticket(%s, 'bar') as r", (ticket,))[0]["r"] == \
        {"ticket_id": ticket, "order_number": first["order_number"], "bumped": ["bar"], "open_stations": 1}
    assert api.run(staff, "select public.bump_ticket(%s, 'bar') as r", (ticket,))[0]["r"]["bumped"] == []
    after = board(api, staff, menu.venue_id)
    assert [t["ticket_id"] for t in by_station(after)["bar"]] == [stations["bar"][1]["ticket_id"]]
    assert [t["ticket_id"] for t in by_station(after)["pastry"]] == [ticket, stations["pastry"][1]["ticket_id"]]
    assert [(r["ticket_id"], r["station"]) for r in after["recently_bumped"]] == [(ticket, "bar")]
    assert api.run(staff, "select public.recall_ticket(%s, 'bar') as r", (ticket,))[0]["r"]["recalled"] == ["bar"]
    back = by_station(board(api, staff, menu.venue_id))["bar"][0]
    assert back["ticket_id"] == ticket and back["recalled"] is True
    assert api.run(staff, "select public.bump_ticket(%s) as r", (ticket,))[0]["r"]["open_stations"] == 0
    assert ticket not in [t["ticket_id"] for ts in by_station(board(api, staff, menu.venue_id)).values() for t in ts]
    assert conn.execute("select bumped_by from public.kitchen_ticket_stations where ticket_id = %s and station = 'bar'",
                        (ticket,)).fetchone() == {"bumped_by": menu.tenant.users["staff"]}
    assert sqlstate(lambda: api.run(staff, "select public.bump_ticket(%s, 'grill')", (ticket,))) == "PT404"

    # a cancelled order leaves the board, and its ticket cannot be bumped
    api.run(staff, "select public.set_order_status(%s, 'cancelled', 'walked out')", (second["order_id"],))
    assert board(api, staff, menu.venue_id)["stations"] == []
    second_ticket = stations["bar"][1]["ticket_id"]
    assert sqlstate(lambda: api.run(staff, "select public.bump_ticket(%s)", (second_ticket,))) == "BR803"

    # only the venue's staff: another venue's staff, another business, anon see nothing of it
    paid(api, conn, menu, 3)
    elsewhere = factory.user()
    factory.member(b, elsewhere, "staff", [menu.tenant.venues[1]])
    assert board(api, Claims.user(elsewhere), menu.venue_id)["stations"] == []
    assert sqlstate(lambda: api.run(Claims.user(elsewhere), "select public.bump_ticket(%s)", (ticket,))) == "PT404"
    rival = factory.tenant("Rival", {"ordering": True}).claims("owner")
    assert board(api, rival, menu.venue_id)["stations"] == []
    assert sqlstate(lambda: board(api, Claims.anon(), menu.venue_id)) == "42501"
    owner_board = board(api, menu.tenant.claims("owner"), menu.venue_id)
    assert len(by_station(owner_board)["bar"]) == 1 and owner_board["printers"] == []
    # refunding the croissants takes them off the pastry screen
    third = by_station(owner_board)["bar"][0]["order_id"]
    assert [t["order_id"] for t in by_station(owner_board)["pastry"]] == [third]
    croissant = conn.execute("select id from public.order_items where order_id = %s and name = 'Croissant'", (third,)).fetchone()["id"]  # type: ignore[index]
    refund = api.run(menu.tenant.claims("manager"), "select public.request_refund(%s, null, %s) as r",
                     (third, json.dumps({str(croissant): 2})))[0]["r"]
    conn.execute("select app.record_refund(%s, %s, %s, 're_board', 'succeeded', %s, null)", (b, third, refund["refund_id"], refund["amount_cents"]))
    assert third not in [t["order_id"] for t in by_station(board(api, staff, menu.venue_id)).get("pastry", [])]
    assert [t["order_id"] for t in by_station(board(api, staff, menu.venue_id))["bar"]] == [third]

    # what a kitchen screen subscribes to
    published = {r["tablename"] for r in conn.execute(
        "select tablename from pg_publication_tables where pubname = 'supabase_realtime'").fetchall()}
    assert {"kitchen_tickets", "kitchen_ticket_stations", "print_jobs", "printers"} <= published
