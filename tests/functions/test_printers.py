"""Kitchen printing end to end: a simulated Star CloudPRNT printer and a simulated Epson Server Direct
Print printer poll the real functions app over HTTP, as their protocols specify, for the print jobs
the paying transaction queued."""

from __future__ import annotations

import json
from typing import Any

import httpx
import psycopg

from brigade.auth import Claims
from tests.conftest import Api, Factory, ServerThread, sqlstate
from tests.ordering_kit import Menu, build_menu, order_payload, session_completed
from tests.printers_kit import CloudPrntPrinter, EpsonSdpPrinter, new_mac, order_numbers

Conn = psycopg.Connection[dict[str, Any]]


def register(api: Api, claims: Claims, venue: Any, name: str, protocol: str, stations: list[str], kind: str = "kitchen",
             width: int = 80) -> dict[str, Any]:
    return api.run(claims, "select public.register_printer(%s, %s, %s, %s, %s, '{}', %s) as r",
                   (venue, name, kind, protocol, stations, width))[0]["r"]


def paid(api: Api, conn: Conn, menu: Menu, n: int, **overrides: Any) -> dict[str, Any]:
    order = api.run(Claims.anon(), "select public.place_order(%s) as r", (json.dumps(order_payload(menu, **overrides)),))[0]["r"]
    conn.execute("select app.apply_stripe_event(%s)", (json.dumps(session_completed(order, f"cs_p{n}", f"pi_p{n}")),))
    return order


def stations(conn: Conn, menu: Menu) -> None:
    """Lattes are made at the bar (their category's station), croissants at the pastry station (their own)."""
    conn.execute("update public.product_categories set station = 'bar' where business_id = %s", (menu.tenant.business_id,))
    conn.execute("update public.products set station = 'pastry' where id = %s", (menu.products["croissant"],))


def jobs(conn: Conn, order_id: str) -> list[dict[str, Any]]:
    return conn.execute("select j.kind, j.status, p.name as printer from public.print_jobs j join public.printers p "
                        "on p.business_id = j.business_id and p.id = j.printer_id where j.order_id = %s order by j.seq",
                        (order_id,)).fetchall()


def test_a_paid_order_prints_once_on_each_stations_printer(api: Api, conn: Conn, factory: Factory, menu: Menu,
                                                            functions_server: ServerThread) -> None:
    stations(conn, menu)
    manager = menu.tenant.claims("manager")
    star = register(api, manager, menu.venue_id, "Bar", "star_cloudprnt", ["bar"])
    epson = register(api, manager, menu.venue_id, "Pastry", "epson_sdp", ["pastry"], width=58)
    receipt = register(api, manager, menu.venue_id, "Front", "star_cloudprnt", [], kind="receipt")
    coffee = conn.execute("select category_id from public.products where id = %s", (menu.products["latte"],)).fetchone()["category_id"]  # type: ignore[index]
    api.run(manager, "select public.register_printer(%s, 'Coffee', 'kitchen', 'epson_sdp', '{}', %s)", (menu.venue_id, [coffee]))
    assert conn.execute("select count(*) as n from public.printers where device_token_hash = %s", (star["device_token"],)).fetchone() == \
        {"n": 0}, "only the token's hash is kept"
    conn.execute("insert into public.customers (business_id, full_name, phone, allergens) values (%s, 'Ada Guest', '+12125550199', "
                 "'{peanuts}')", (menu.tenant.business_id,))

    order = paid(api, conn, menu, 1, fulfilment="dine_in", table_ref="T4", channel="qr", notes="birthday")
    # queued by the paying transaction itself, before any printer has polled
    assert jobs(conn, order["order_id"]) == [{"kind": "ticket", "status": "queued", "printer": "Bar"},
                                             {"kind": "ticket", "status": "queued", "printer": "Pastry"},
                                             {"kind": "receipt", "status": "queued", "printer": "Front"},
                                             {"kind": "ticket", "status": "queued", "printer": "Coffee"}]
    by_category = conn.execute("select document -> 'items' as items from public.print_jobs j join public.printers p on p.id = j.printer_id "
                               "where p.name = 'Coffee'").fetchone()["items"]  # type: ignore[index]
    assert [i["name"] for i in by_category] == ["Latte"], "a printer can take menu categories instead of stations"

    bar = CloudPrntPrinter(functions_server.url, star["device_token"], new_mac())
    [bar_slip] = bar.drain()
    assert order_numbers([bar_slip]) == [order["order_number"]]
    assert "1 x Latte (Large)" in bar_slip.text and "+ Oat" in bar_slip.text and "+ Shot" in bar_slip.text
    assert "Croissant" not in bar_slip.text, "the bar prints the bar's items only"
    assert "DINE IN - TABLE T4 (QR)" in bar_slip.text and "NOTE: birthday" in bar_slip.text
    assert bar_slip.inverted == ["ALLERGY: PEANUTS"], "allergens print inverted"
    assert "1 x Latte (Large)" in bar_slip.bold

    pastry = EpsonSdpPrinter(functions_server.url, epson["device_token"])
    [pastry_slip] = pastry.drain()
    assert "2 x Croissant" in pastry_slip.text and "Latte" not in pastry_slip.text
    assert pastry_slip.inverted == ["ALLERGY: PEANUTS"]
    assert max(len(line) for line in pastry_slip.lines) <= 32, "58 mm paper: 32 columns"

    front = CloudPrntPrinter(functions_server.url, receipt["device_token"], new_mac())
    [receipt_slip] = front.drain()
    assert "RECEIPT" in receipt_slip.text and "TOTAL" in receipt_slip.text and f"{order['total_cents'] / 100:,.2f}" in receipt_slip.text

    # printed once: polling again finds nothing, and a duplicate confirmation changes nothing
    assert bar.poll() == {"jobReady": False} and pastry.cycle() is None
    assert httpx.delete(bar.url, params={"code": "OK", "mac": bar.mac}).status_code == 200
    assert [j["status"] for j in jobs(conn, order["order_id"])] == ["printed"] * 3 + ["queued"]
    history = conn.execute("select e.from_status, e.to_status, e.code from public.print_job_events e join public.print_jobs j "
                           "on j.business_id = e.business_id and j.id = e.job_id join public.printers p on p.id = j.printer_id "
                           "where p.name = 'Bar' order by e.id").fetchall()
    assert history == [{"from_status": None, "to_status": "queued", "code": None},
                       {"from_status": "queued", "to_status": "sent", "code": None},
                       {"from_status": "sent", "to_status": "printed", "code": "OK"}]
    assert conn.execute("select last_status, device_address from public.printers where name = 'Bar'").fetchone() == \
        {"last_status": "200 OK", "device_address": bar.mac}

    conn.execute("update public.printers set last_seen_at = now() - interval '1 hour' where name = 'Front'")
    screen = {p["name"]: (p["online"], p["waiting_jobs"]) for p in api.run(
        menu.tenant.claims("staff"), "select public.kitchen_board(%s) -> 'printers' as p", (menu.venue_id,))[0]["p"]}
    assert screen == {"Bar": (True, 0), "Pastry": (True, 0), "Front": (False, 0), "Coffee": (False, 1)}, \
        "the kitchen sees which printer is offline, and what waits for it"

    # bad device tokens get 401 and nothing else; another venue's printer sees none of this venue's jobs
    for method, url in (("POST", bar.url + "x"), ("GET", bar.url + "x"), ("DELETE", bar.url + "x"),
                        ("POST", f"{functions_server.url}/functions/v1/cloudprnt")):
        r = httpx.request(method, url, json={"statusCode": "200%20OK"} if method == "POST" else None)
        assert r.status_code == 401 and "Latte" not in r.text, (method, url, r.status_code)
    basic = httpx.post(f"{functions_server.url}/functions/v1/cloudprnt", auth=("star", star["device_token"]),
                       json={"statusCode": "200%20OK", "printerMAC": bar.mac})
    assert basic.status_code == 200 and basic.json() == {"jobReady": False}, "the token as the HTTP Basic password works too"
    r = httpx.post(pastry.url + "x", data={"ConnectionType": "GetRequest", "ID": "x"})
    assert r.status_code == 401 and "Croissant" not in r.text
    r = httpx.post(pastry.url, data={"ConnectionType": "Bogus"})
    assert r.status_code == 400
    bomb = '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]><PrintResponseInfo>&b;</PrintResponseInfo>'
    r = httpx.post(pastry.url, data={"ConnectionType": "SetResponse", "ResponseFile": bomb})
    assert r.status_code == 400 and r.json()["error"] == "invalid_response_file", "entity declarations are refused (defusedxml)"
    rival = factory.tenant("Rival Cafe", {"ordering": True})
    rival_menu = build_menu(conn, rival, loyalty=False)
    other = register(api, rival.claims("owner"), rival_menu.venue_id, "Rival", "star_cloudprnt", [])
    snoop = CloudPrntPrinter(functions_server.url, other["device_token"], new_mac())
    assert snoop.poll() == {"jobReady": False}
    assert httpx.get(snoop.url, params={"type": "text/plain", "token": str(conn.execute(
        "select id from public.print_jobs limit 1").fetchone()["id"])}).status_code == 404  # type: ignore[index]
    # staff cannot register printers, nor a manager at another business's venue
    assert sqlstate(lambda: register(api, menu.tenant.claims("staff"), menu.venue_id, "Mine", "epson_sdp", [])) == "PT404"
    assert sqlstate(lambda: register(api, manager, rival_menu.venue_id, "Theirs", "epson_sdp", [])) == "PT404"
    assert sqlstate(lambda: register(api, manager, menu.venue_id, "Odd", "ipp", [])) == "23514"


def test_an_offline_printer_prints_its_backlog_in_order_once_then_reprints_and_voids(
        api: Api, conn: Conn, menu: Menu, functions_server: ServerThread) -> None:
    manager, staff = menu.tenant.claims("manager"), menu.tenant.claims("staff")
    star = CloudPrntPrinter(functions_server.url, register(api, manager, menu.venue_id, "Line", "star_cloudprnt", [])["device_token"])
    epson = EpsonSdpPrinter(functions_server.url, register(api, manager, menu.venue_id, "Expo", "epson_sdp", [])["device_token"])

    first = paid(api, conn, menu, 1)
    # the Star printer fetches the first ticket and runs out of paper; the Epson has its cover open
    assert star.cycle(paper_out=True) is None
    assert epson.cycle(error_code="EPTR_COVER_OPEN") is None
    # both are then unplugged while the orders keep coming: the backlog waits in print_jobs
    backlog = [first] + [paid(api, conn, menu, n) for n in (2, 3, 4)]
    cancelled_unprinted = backlog[3]
    api.run(staff, "select public.set_order_status(%s, 'cancelled', 'guest left')", (cancelled_unprinted["order_id"],))
    assert conn.execute("select status, count(*) as n from public.print_jobs group by status order by status").fetchall() == [
        {"status": "cancelled", "n": 2}, {"status": "queued", "n": 5}, {"status": "sent", "n": 1}], \
        "the Star's fetched job waits for it; a ticket cancelled before it printed is withdrawn, not voided"

    # back online: each prints its backlog oldest first, each ticket once (the failed first one again)
    expected = [o["order_number"] for o in backlog[:3]]
    assert order_numbers(star.drain()) == expected
    assert order_numbers(epson.drain()) == expected
    assert star.poll() == {"jobReady": False}
    assert conn.execute("select code from public.print_job_events where code like 'EPTR%%'").fetchall() == [{"code": "EPTR_COVER_OPEN"}]

    # a reprint prints again, marked as a copy, and is logged with who asked
    ticket = conn.execute("select id from public.kitchen_tickets where order_id = %s", (backlog[1]["order_id"],)).fetchone()["id"]  # type: ignore[index]
    assert api.run(staff, "select public.reprint_ticket(%s) as n", (ticket,)) == [{"n": 2}]
    [copy] = star.drain()
    assert order_numbers([copy]) == [backlog[1]["order_number"]] and "KITCHEN - REPRINT" in copy.text and "COPY" in copy.text
    assert len(epson.drain()) == 1
    assert conn.execute("select count(*) as n from public.print_jobs where kind = 'reprint' and requested_by = %s and status = 'printed'",
                        (menu.tenant.users["staff"],)).fetchone() == {"n": 2}
    assert conn.execute("select action from public.audit_log where action = 'ticket.reprinted'").fetchall() == [{"action": "ticket.reprinted"}]

    # a line taken off a printed ticket (a line refund) prints a change slip with what to stop making
    changed = backlog[2]["order_id"]
    croissant = conn.execute("select id from public.order_items where order_id = %s and name = 'Croissant'", (changed,)).fetchone()["id"]  # type: ignore[index]
    refund = api.run(manager, "select public.request_refund(%s, null, %s) as r", (changed, json.dumps({str(croissant): 1})))[0]["r"]
    conn.execute("select app.record_refund(%s, %s, %s, 're_change', 'succeeded', %s, null)",
                 (menu.tenant.business_id, changed, refund["refund_id"], refund["amount_cents"]))
    [change] = star.drain()
    assert change.inverted[0] == "*** CHANGED ***" and "REMOVE 1 x Croissant" in change.text and "Latte" not in change.text
    assert order_numbers([change]) == [backlog[2]["order_number"]] and len(epson.drain()) == 1

    # cancelling a printed order prints a void slip on the printers that printed it, once
    api.run(staff, "select public.set_order_status(%s, 'cancelled', 'kitchen out of oat milk')", (backlog[0]["order_id"],))
    [void] = star.drain()
    assert void.inverted[0] == "*** VOID ***" and "Reason: kitchen out of oat milk" in void.text
    assert order_numbers([void]) == [backlog[0]["order_number"]] and "VOID 1 x Latte (Large)" in void.text
    assert len(epson.drain()) == 1 and star.poll() == {"jobReady": False}
    # voiding a ticket (order kept) does the same; a voided ticket stays out of the kitchen
    voided = api.run(staff, "select public.void_ticket(%s, 'wrong table') as r", (ticket,))[0]["r"]
    assert voided["void_slips"] == 2 and "Reason: wrong table" in star.drain()[0].text
    api.run(staff, "select public.set_order_status(%s, 'accepted')", (backlog[1]["order_id"],))
    assert conn.execute("select status from public.kitchen_tickets where id = %s", (ticket,)).fetchone() == {"status": "cancelled"}
    assert sqlstate(lambda: api.run(staff, "select public.void_ticket(%s, 'again')", (ticket,))) == "BR803"
    assert sqlstate(lambda: api.run(staff, "select public.void_ticket(%s, ' ')", (ticket,))) == "BR123"
