"""The CRM's numbers: 30/90 days, the 30-customer percentile threshold, 50 tags, 7-day TTL and grace,
the favorite/disliked rule, append-only guarantees, erasure, merge and the admin answers."""

from __future__ import annotations

import json
import uuid
from typing import Any

import psycopg
import pytest

from brigade.auth import Claims
from tests.conftest import Api, Factory, Tenant
from tests.ordering_kit import Menu, order_payload, session_completed


@pytest.fixture
def crm(factory: Factory, conn: psycopg.Connection[dict[str, Any]]) -> Tenant:
    return factory.tenant("Crm Bistro", {"ordering": True, "crm": True, "loyalty": True})


def customer(conn: psycopg.Connection[dict[str, Any]], t: Tenant, name: str | None = None, **fields: Any) -> uuid.UUID:
    cols = {"full_name": name or f"Guest {uuid.uuid4().hex[:6]}", **fields}
    row = conn.execute(f"insert into public.customers (business_id, {', '.join(cols)}) values (%s, {', '.join(['%s'] * len(cols))}) returning id",
                       (t.business_id, *cols.values())).fetchone()
    assert row is not None
    return row["id"]


def stats(conn: psycopg.Connection[dict[str, Any]], t: Tenant, cust: uuid.UUID, orders: int, spent: int, days_ago: int,
          venue: uuid.UUID | None = None) -> dict[str, Any]:
    row = conn.execute(
        "insert into public.customer_venue_stats (business_id, venue_id, customer_id, total_orders, total_spent_cents, first_order_at, last_order_at) "
        "values (%s, %s, %s, %s, %s, now() - make_interval(days => %s + 100), now() - make_interval(days => %s)) "
        "returning recency_score, frequency_score, monetary_score, segment",
        (t.business_id, venue or t.venues[0], cust, orders, spent, days_ago, days_ago)).fetchone()
    assert row is not None
    return row


def segment_of(conn: psycopg.Connection[dict[str, Any]], cust: uuid.UUID) -> str:
    return conn.execute("select segment from public.customer_venue_stats where customer_id = %s", (cust,)).fetchone()["segment"]  # type: ignore[index]


@pytest.mark.parametrize(("orders", "days", "label"), [
    (3, 29, "LOYAL"), (3, 30, "AT_RISK"), (3, 89, "AT_RISK"), (3, 90, "LOST"),
    (1, 10, "NEW"), (1, 30, "INACTIVE"), (1, 90, "LOST"), (0, 5, "INACTIVE"),
    (12, 2, "CHAMPION"), (2, 3, "POTENTIAL"),
])
def test_labels_at_the_day_edges(conn: psycopg.Connection[dict[str, Any]], crm: Tenant, orders: int, days: int, label: str) -> None:
    spent = 60000 if orders >= 10 else 2500 * orders
    assert stats(conn, crm, customer(conn, crm), orders, spent, days)["segment"] == label


def test_a_regular_drifts_to_at_risk_and_lost_with_the_nightly_rebucket(conn: psycopg.Connection[dict[str, Any]], crm: Tenant) -> None:
    regular = customer(conn, crm)
    stats(conn, crm, regular, 4, 9000, 20)
    assert segment_of(conn, regular) == "LOYAL"
    for days, label in ((30, "AT_RISK"), (90, "LOST")):
        conn.execute("update public.customer_venue_stats set last_order_at = now() - make_interval(days => %s), "
                     "segment = 'LOYAL' where customer_id = %s", (days, regular))
        conn.execute("select app.crm_rebucket(%s)", (crm.business_id,))
        assert segment_of(conn, regular) == label


def test_percentile_buckets_start_at_30_customers(conn: psycopg.Connection[dict[str, Any]], crm: Tenant) -> None:
    # 29 small spenders: stable thresholds put them all at M=1 (under 30.00)
    small = [customer(conn, crm) for _ in range(29)]
    for i, c in enumerate(small):
        stats(conn, crm, c, 1 + i % 3, 500 + i * 50, 3)
    conn.execute("select app.crm_rebucket(%s)", (crm.business_id,))
    assert conn.execute("select count(*) as n from public.crm_venue_cutoffs where business_id = %s", (crm.business_id,)).fetchone() == {"n": 0}
    assert {r["m"] for r in conn.execute("select monetary_score as m from public.customer_venue_stats where business_id = %s", (crm.business_id,))} == {1}
    stats(conn, crm, customer(conn, crm), 1, 400, 3)  # the 30th
    conn.execute("select app.crm_rebucket(%s)", (crm.business_id,))
    cut = conn.execute("select cohort_size from public.crm_venue_cutoffs where business_id = %s", (crm.business_id,)).fetchone()
    assert cut == {"cohort_size": 30}
    spread = conn.execute("select monetary_score as m, count(*) as n from public.customer_venue_stats where business_id = %s "
                          "group by 1 order by 1", (crm.business_id,)).fetchall()
    assert [r["m"] for r in spread] == [1, 2, 3, 4, 5] and all(r["n"] == 6 for r in spread), spread
    # the inline writer now scores new rows against the venue's percentile cut points, not the stable ones
    assert stats(conn, crm, customer(conn, crm), 1, 1900, 3)["monetary_score"] == 5


def place_and_pay(api: Api, conn: psycopg.Connection[dict[str, Any]], menu: Menu, items: list[dict[str, Any]], phone: str, n: int) -> dict[str, Any]:
    order = api.run(Claims.anon(), "select public.place_order(%s) as r",
                    (json.dumps(order_payload(menu, items=items, customer={"name": "Fay", "phone": phone})),))[0]["r"]
    conn.execute("select app.apply_stripe_event(%s)", (json.dumps(session_completed(order, f"cs_fav_{n}", f"pi_fav_{n}")),))
    return order


def test_paid_orders_score_inline(api: Api, conn: psycopg.Connection[dict[str, Any]], menu: Menu) -> None:
    order = place_and_pay(api, conn, menu, [{"product_id": str(menu.products["croissant"]), "quantity": 1}], "+12125550123", 1)
    row = conn.execute("select s.segment, s.recency_score, s.avg_order_cents, s.scored_at is not null as scored from public.customer_venue_stats s "
                       "join public.orders o on o.customer_id = s.customer_id where o.id = %s", (order["order_id"],)).fetchone()
    assert row == {"segment": "NEW", "recency_score": 5, "avg_order_cents": order["total_cents"], "scored": True}


def test_favorites_and_dislikes_from_order_history(api: Api, conn: psycopg.Connection[dict[str, Any]], menu: Menu) -> None:
    latte, croissant = str(menu.products["latte"]), str(menu.products["croissant"])
    plan = [[latte, croissant], [latte], [latte], [latte], [latte], [latte]]  # croissant once, then skipped 5 times
    for n, products in enumerate(plan):
        place_and_pay(api, conn, menu, [{"product_id": p, "quantity": 1} for p in products], "+12125550124", n)
    conn.execute("select app.derive_preferences(%s)", (menu.tenant.business_id,))
    prefs = conn.execute("select kind, value, source, confidence::float as c from public.customer_preferences order by kind").fetchall()
    assert prefs == [{"kind": "disliked", "value": "croissant", "source": "derived", "c": 0.5},
                     {"kind": "favorite", "value": "latte", "source": "derived", "c": 1.0}]


def test_four_skips_are_not_a_dislike_and_two_orders_not_a_favorite(api: Api, conn: psycopg.Connection[dict[str, Any]], menu: Menu) -> None:
    latte, croissant = str(menu.products["latte"]), str(menu.products["croissant"])
    for n, products in enumerate([[croissant, latte], [latte], [latte], [latte], [croissant]]):
        place_and_pay(api, conn, menu, [{"product_id": p, "quantity": 1} for p in products], "+12125550125", n)
    conn.execute("select app.derive_preferences(%s)", (menu.tenant.business_id,))
    assert conn.execute("select kind, value from public.customer_preferences").fetchall() == [{"kind": "favorite", "value": "latte"}]


def test_tags_are_normalized_unique_and_at_most_50(api: Api, conn: psycopg.Connection[dict[str, Any]], crm: Tenant) -> None:
    c = customer(conn, crm)
    staff = crm.claims("staff")
    api.run(staff, "insert into public.customer_tags (business_id, customer_id, tag) values (%s, %s, '  Big   Spender ')", (crm.business_id, c))
    assert conn.execute("select tag from public.customer_tags").fetchall() == [{"tag": "big spender"}]
    with pytest.raises(psycopg.errors.UniqueViolation):
        api.run(staff, "insert into public.customer_tags (business_id, customer_id, tag) values (%s, %s, 'BIG SPENDER')", (crm.business_id, c))
    for i in range(49):
        api.run(staff, "insert into public.customer_tags (business_id, customer_id, tag) values (%s, %s, %s)", (crm.business_id, c, f"t{i}"))
    with pytest.raises(psycopg.Error) as fifty_first:
        api.run(staff, "insert into public.customer_tags (business_id, customer_id, tag) values (%s, %s, 'one more')", (crm.business_id, c))
    assert fifty_first.value.sqlstate == "BR205"
    assert conn.execute("select count(*) as n from public.customer_tags").fetchone() == {"n": 50}


@pytest.mark.parametrize("table", ["customer_notes", "customer_consent_log"])
@pytest.mark.parametrize("who", ["superuser", "service_role", "owner"])
def test_notes_and_consent_log_are_append_only(api: Api, conn: psycopg.Connection[dict[str, Any]], crm: Tenant, table: str, who: str) -> None:
    c = customer(conn, crm)
    api.run(crm.claims("staff"), "insert into public.customer_notes (business_id, customer_id, venue_id, body, author_id) "
                                 "values (%s, %s, %s, 'prefers the terrace', %s)", (crm.business_id, c, crm.venues[0], crm.users["staff"]))
    api.run(crm.claims("staff"), "select public.set_consent(%s, 'EMAIL_MARKETING', true)", (c,))
    for statement in (f"update public.{table} set created_at = now() where customer_id = %s", f"delete from public.{table} where customer_id = %s"):
        with pytest.raises(psycopg.Error) as refused:
            if who == "superuser":
                conn.execute(statement, (c,))
            else:
                api.run(Claims.service() if who == "service_role" else crm.claims("owner"), statement, (c,))
        assert refused.value.sqlstate in {"BR006", "42501"}
    assert conn.execute(f"select count(*) as n from public.{table} where customer_id = %s", (c,)).fetchone() == {"n": 1}


def test_notes_are_venue_scoped(api: Api, conn: psycopg.Connection[dict[str, Any]], crm: Tenant) -> None:
    c = customer(conn, crm)
    api.run(crm.claims("manager"), "insert into public.customer_notes (business_id, customer_id, venue_id, body, author_id) "
                                   "values (%s, %s, %s, 'back room regular', %s)", (crm.business_id, c, crm.venues[1], crm.users["manager"]))
    assert api.run(crm.claims("staff"), "select count(*) as n from public.customer_notes") == [{"n": 0}], "staff of the main venue only"
    assert api.run(crm.claims("manager"), "select author_id from public.customer_notes") == [{"author_id": crm.users["manager"]}]
    with pytest.raises(psycopg.errors.InsufficientPrivilege):  # nobody writes a note in someone else's name
        api.run(crm.claims("staff"), "insert into public.customer_notes (business_id, customer_id, venue_id, body, author_id) "
                                     "values (%s, %s, %s, 'x', %s)", (crm.business_id, c, crm.venues[0], crm.users["owner"]))


def has_consent(conn: psycopg.Connection[dict[str, Any]], t: Tenant, c: uuid.UUID, channel: str, venue: uuid.UUID | None = None) -> bool:
    return conn.execute("select app.has_consent(%s, %s, %s, %s) as ok", (t.business_id, c, channel, venue)).fetchone()["ok"]  # type: ignore[index]


def test_double_opt_in_keeps_consent_off_until_confirmed(api: Api, conn: psycopg.Connection[dict[str, Any]], crm: Tenant) -> None:
    venue = crm.venues[0]
    conn.execute("update public.venues set require_double_opt_in = true where id = %s", (venue,))
    c = customer(conn, crm, email="eu@example.test")
    for _ in range(3):
        assert api.run(crm.claims("staff"), "select public.set_consent(%s, 'EMAIL_MARKETING', true, %s) as a", (c, venue)) == [{"a": "REQUESTED"}]
    assert not has_consent(conn, crm, c, "EMAIL_MARKETING", venue)
    tokens = conn.execute("select expires_at - created_at as ttl, token_hash from public.consent_tokens").fetchall()
    assert len(tokens) == 1 and tokens[0]["ttl"].days == 7, "duplicates collapse into one 7-day token"
    events = conn.execute("select message -> 'payload' ->> 'token' as t from pgmq.q_brigade_events "
                          "where message ->> 'topic' = 'consent.confirmation_requested'").fetchall()
    assert len(events) == 1 and len(events[0]["t"]) == 48 and events[0]["t"] not in json.dumps(tokens, default=str)
    conn.execute("select app.confirm_consent(%s, '203.0.113.9', 'Mozilla/5.0')", (events[0]["t"],))
    assert has_consent(conn, crm, c, "EMAIL_MARKETING", venue)
    last = conn.execute("select action, source, host(ip) as ip, user_agent from public.customer_consent_log where customer_id = %s "
                        "order by id desc limit 1", (c,)).fetchone()
    assert last == {"action": "GRANTED", "source": "double_opt_in", "ip": "203.0.113.9", "user_agent": "Mozilla/5.0"}


def test_an_expired_confirmation_is_refused(api: Api, conn: psycopg.Connection[dict[str, Any]], crm: Tenant) -> None:
    conn.execute("update public.venues set require_double_opt_in = true where id = %s", (crm.venues[0],))
    c = customer(conn, crm)
    api.run(crm.claims("staff"), "select public.set_consent(%s, 'SMS_MARKETING', true, %s)", (c, crm.venues[0]))
    token = conn.execute("select message -> 'payload' ->> 'token' as t from pgmq.q_brigade_events "
                         "where message ->> 'topic' = 'consent.confirmation_requested'").fetchone()["t"]  # type: ignore[index]
    conn.execute("update public.consent_tokens set expires_at = now() - interval '1 minute'")  # its 7 days are over
    with pytest.raises(psycopg.Error) as expired:
        conn.execute("select app.confirm_consent(%s, null, null)", (token,))
    assert expired.value.sqlstate == "BR210"
    assert not has_consent(conn, crm, c, "SMS_MARKETING", crm.venues[0])


def test_unsubscribe_links_are_signed(conn: psycopg.Connection[dict[str, Any]], crm: Tenant) -> None:
    c = customer(conn, crm)
    conn.execute("select app.record_consent(%s, %s, 'EMAIL_MARKETING', true, 'checkout')", (crm.business_id, c))
    assert has_consent(conn, crm, c, "EMAIL_MARKETING")
    with pytest.raises(psycopg.Error) as forged:
        conn.execute("select app.unsubscribe(%s, %s, 'EMAIL_MARKETING', %s, null, null)", (crm.business_id, c, "0" * 64))
    assert forged.value.sqlstate == "BR210"
    token = conn.execute("select app.unsubscribe_token(%s, %s, 'EMAIL_MARKETING') as t", (crm.business_id, c)).fetchone()["t"]  # type: ignore[index]
    conn.execute("select app.unsubscribe(%s, %s, 'EMAIL_MARKETING', %s, '198.51.100.1', 'mail client')", (crm.business_id, c, token))
    assert not has_consent(conn, crm, c, "EMAIL_MARKETING")


def personal_strings_anywhere(conn: psycopg.Connection[dict[str, Any]], needles: list[str]) -> list[str]:
    """Tables (any schema but the catalogs) whose rows contain one of the strings."""
    found = []
    for t in conn.execute("select table_schema, table_name from information_schema.tables where table_type = 'BASE TABLE' "
                          "and table_schema not in ('pg_catalog', 'information_schema')").fetchall():
        for needle in needles:
            hit = conn.execute(f'select 1 from "{t["table_schema"]}"."{t["table_name"]}" x where x::text ilike %s limit 1', (f"%{needle}%",)).fetchone()
            if hit:
                found.append(f"{t['table_schema']}.{t['table_name']} has {needle}")
    return found


def test_deletion_waits_7_days_then_erases_everywhere(api: Api, conn: psycopg.Connection[dict[str, Any]], factory: Factory, menu: Menu) -> None:
    user = factory.user("zoe.private@example.test")
    me = Claims.user(user, email="zoe.private@example.test")
    payload = order_payload(menu, customer={"name": "Zoe Privatova", "phone": "+12125550777", "email": "zoe.private@example.test"},
                            notes="ring Zoe Privatova", delivery_address=None)
    order = api.run(me, "select public.place_order(%s) as r", (json.dumps(payload),))[0]["r"]
    conn.execute("select app.apply_stripe_event(%s)", (json.dumps(session_completed(order, "cs_z", "pi_z")),))
    c = conn.execute("select customer_id from public.orders where id = %s", (order["order_id"],)).fetchone()["customer_id"]  # type: ignore[index]
    staff = menu.tenant.claims("staff")
    api.run(staff, "insert into public.customer_notes (business_id, customer_id, venue_id, body, author_id) values (%s, %s, %s, 'Zoe Privatova likes jazz', %s)",
            (menu.tenant.business_id, c, menu.venue_id, menu.tenant.users["staff"]))
    api.run(staff, "insert into public.customer_tags (business_id, customer_id, tag) values (%s, %s, 'privatova')", (menu.tenant.business_id, c))
    api.run(staff, "select public.set_consent(%s, 'EMAIL_MARKETING', true)", (c,))
    totals_before = conn.execute("select total_cents, refunded_cents from public.orders order by id").fetchall()

    [req] = api.run(me, "select public.request_my_deletion() as r")[0]["r"]
    assert req["business_id"] == str(menu.tenant.business_id)
    grace = conn.execute("select execute_after - requested_at as g from public.customer_delete_requests").fetchone()
    assert grace and grace["g"].days == 7
    assert api.run(me, "select public.cancel_my_deletion() as n") == [{"n": 1}]
    api.run(me, "select public.request_my_deletion()")
    assert conn.execute("select app.execute_due_deletions() as n").fetchone() == {"n": 0}, "not before the grace period ends"
    conn.execute("update public.customer_delete_requests set execute_after = now() - interval '1 second' where status = 'pending'")
    assert conn.execute("select app.execute_due_deletions() as n").fetchone() == {"n": 1}

    leftovers = personal_strings_anywhere(conn, ["Privatova", "zoe.private", "2125550777", "jazz"])
    assert leftovers == [] or all(x.startswith("auth.users") for x in leftovers), leftovers
    assert conn.execute("select total_cents, refunded_cents from public.orders order by id").fetchall() == totals_before
    log = conn.execute("select channel, action, source from public.customer_consent_log where customer_id = %s order by id", (c,)).fetchall()
    assert log[0] == {"channel": "EMAIL_MARKETING", "action": "GRANTED", "source": "admin"}
    assert {(r["action"], r["source"]) for r in log[1:]} == {("REVOKED", "deletion")} and len(log) == 5
    assert conn.execute("select count(*) as n from public.customer_venue_stats where customer_id = %s", (c,)).fetchone() == {"n": 1}


def test_the_operator_forces_a_deletion_at_once(api: Api, conn: psycopg.Connection[dict[str, Any]], crm: Tenant, operator: Claims) -> None:
    c = customer(conn, crm, "Dpa Order", email="dpa@example.test")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        api.run(crm.claims("owner"), "select public.force_delete_customer(%s, %s)", (crm.business_id, c))
    api.run(operator, "select public.force_delete_customer(%s, %s)", (crm.business_id, c))
    row = conn.execute("select full_name, email, anonymised_at is not null as gone from public.customers where id = %s", (c,)).fetchone()
    assert row == {"full_name": None, "email": None, "gone": True}
    assert conn.execute("select forced, status from public.customer_delete_requests").fetchone() == {"forced": True, "status": "executed"}
    assert conn.execute("select action from public.audit_log where business_id = %s", (crm.business_id,)).fetchall()[-1] == {"action": "customer.force_deleted"}


def test_export_has_everything_and_only_for_the_right_people(api: Api, conn: psycopg.Connection[dict[str, Any]], factory: Factory, crm: Tenant) -> None:
    user = factory.user("me@example.test")
    c = customer(conn, crm, "Me Myself", email="me@example.test", user_id=user)
    api.run(crm.claims("staff"), "insert into public.customer_tags (business_id, customer_id, tag) values (%s, %s, 'vip')", (crm.business_id, c))
    api.run(crm.claims("staff"), "select public.set_consent(%s, 'SMS_MARKETING', false)", (c,))
    mine = api.run(Claims.user(user), "select public.export_customer(%s) as e", (c,))[0]["e"]
    assert mine["customer"]["full_name"] == "Me Myself" and mine["tags"] == ["vip"] and len(mine["consent_log"]) == 1
    assert set(mine) >= {"orders", "venue_stats", "notes", "preferences", "loyalty_history", "messages", "delete_requests"}
    assert api.run(crm.claims("manager"), "select public.export_customer(%s) ->> 'exported_at' as t", (c,))[0]["t"]
    # staff (members without export_customers: 42501 permission_denied, 0230) and strangers (PT404) see nothing
    for outsider, code in ((crm.claims("staff"), "42501"), (Claims.user(factory.user()), "PT404")):
        with pytest.raises(psycopg.Error) as refused:
            api.run(outsider, "select public.export_customer(%s)", (c,))
        assert refused.value.sqlstate == code


def test_merging_moves_everything_to_the_survivor(api: Api, conn: psycopg.Connection[dict[str, Any]], menu: Menu) -> None:
    b = menu.tenant.business_id
    first = place_and_pay(api, conn, menu, [{"product_id": str(menu.products["croissant"]), "quantity": 1}], "+12125550301", 1)
    second_order = api.run(Claims.anon(), "select public.place_order(%s) as r", (json.dumps(order_payload(
        menu, items=[{"product_id": str(menu.products["croissant"]), "quantity": 2}], customer={"name": "Al", "email": "al@example.test"})),))[0]["r"]
    conn.execute("select app.apply_stripe_event(%s)", (json.dumps(session_completed(second_order, "cs_m2", "pi_m2")),))
    keep = conn.execute("select customer_id from public.orders where id = %s", (first["order_id"],)).fetchone()["customer_id"]  # type: ignore[index]
    drop = conn.execute("select customer_id from public.orders where id = %s", (second_order["order_id"],)).fetchone()["customer_id"]  # type: ignore[index]
    staff = menu.tenant.claims("staff")
    api.run(staff, "insert into public.customer_tags (business_id, customer_id, tag) values (%s, %s, 'regular')", (b, drop))
    api.run(staff, "insert into public.customer_notes (business_id, customer_id, venue_id, body, author_id) values (%s, %s, %s, 'nice', %s)",
            (b, drop, menu.venue_id, menu.tenant.users["staff"]))
    api.run(staff, "select public.set_consent(%s, 'EMAIL_MARKETING', true)", (drop,))
    points = conn.execute("select sum(balance)::int as p from public.loyalty_accounts where business_id = %s", (b,)).fetchone()["p"]  # type: ignore[index]
    with pytest.raises(psycopg.Error):
        api.run(staff, "select public.merge_customers(%s, %s)", (keep, drop))
    result = api.run(menu.tenant.claims("manager"), "select public.merge_customers(%s, %s) as r", (keep, drop))[0]["r"]
    assert result["orders_moved"] == 1
    assert conn.execute("select count(distinct customer_id) as n from public.orders").fetchone() == {"n": 1}
    st = conn.execute("select total_orders, total_spent_cents from public.customer_venue_stats where business_id = %s", (b,)).fetchall()
    assert st == [{"total_orders": 2, "total_spent_cents": first["total_cents"] + second_order["total_cents"]}]
    assert conn.execute("select balance from public.loyalty_accounts where customer_id = %s", (keep,)).fetchone() == {"balance": points}
    assert conn.execute("select customer_id from public.customer_tags").fetchall() == [{"customer_id": keep}]
    assert conn.execute("select count(*) as n from public.customer_notes where customer_id = %s", (keep,)).fetchone() == {"n": 1}
    assert has_consent(conn, menu.tenant, keep, "EMAIL_MARKETING")
    survivor = conn.execute("select phone, email from public.customers where id = %s", (keep,)).fetchone()
    assert survivor == {"phone": "+12125550301", "email": "al@example.test"}
    assert conn.execute("select merged_into from public.customers where id = %s", (drop,)).fetchone() == {"merged_into": keep}


def test_admin_answers_are_exact(api: Api, conn: psycopg.Connection[dict[str, Any]], crm: Tenant) -> None:
    people = {name: customer(conn, crm, name) for name in ("Ann", "Bob", "Cid", "Dee")}
    for (name, spent, days) in (("Ann", 9000, 2), ("Bob", 50000, 70), ("Cid", 1200, 61), ("Dee", 30000, 10)):
        stats(conn, crm, people[name], 3, spent, days)
    stats(conn, crm, people["Ann"], 2, 42000, 1, venue=crm.venues[1])
    top = api.run(crm.claims("owner"), "select full_name, total_spent_cents from public.top_customers(%s, 2)", (crm.business_id,))
    assert top == [{"full_name": "Ann", "total_spent_cents": 51000}, {"full_name": "Bob", "total_spent_cents": 50000}]
    gone = api.run(crm.claims("owner"), "select full_name, days_since from public.customers_not_seen(%s, 60)", (crm.business_id,))
    assert gone == [{"full_name": "Bob", "days_since": 70}, {"full_name": "Cid", "days_since": 61}]
    sizes = api.run(crm.claims("owner"), "select segment, customers from public.segment_sizes(%s, %s)", (crm.business_id, crm.venues[0]))
    assert sizes == [{"segment": "AT_RISK", "customers": 2}, {"segment": "LOYAL", "customers": 2}]
    # the staff member is limited to the main venue: Ann's other venue does not count for them
    limited = api.run(crm.claims("staff"), "select full_name, total_spent_cents from public.top_customers(%s, 1)", (crm.business_id,))
    assert limited == [{"full_name": "Bob", "total_spent_cents": 50000}]
    lifetime = api.run(crm.claims("staff"), "select total_orders, venues from public.customer_lifetime where customer_id = %s", (people["Ann"],))
    assert lifetime[0]["total_orders"] == 3 and len(lifetime[0]["venues"]) == 1
    assert api.run(crm.claims("owner"), "select total_orders from public.customer_lifetime where customer_id = %s", (people["Ann"],)) == [{"total_orders": 5}]


@pytest.mark.clock
def test_birthdays_and_dormancy_are_emitted_once(conn: psycopg.Connection[dict[str, Any]], crm: Tenant) -> None:
    with conn.transaction():  # one now(): the birthday is today in the business's zone when the pass runs
        # 28 years back keeps the month and day, 29 February included
        born_today = conn.execute("select (make_date(extract(year from l)::int - 28, extract(month from l)::int, extract(day from l)::int)) as d "
                                  "from (select (now() at time zone time_zone)::date as l from public.businesses where id = %s) x",
                                  (crm.business_id,)).fetchone()["d"]  # type: ignore[index]
        bday = customer(conn, crm, "Birthday", date_of_birth=born_today)
        sleepy = customer(conn, crm, "Sleepy")
        stats(conn, crm, sleepy, 2, 3000, 31)
        stats(conn, crm, customer(conn, crm, "Fresh"), 2, 3000, 29)
        assert conn.execute("select app.emit_crm_events(30) as n").fetchone() == {"n": 2}
    assert conn.execute("select app.emit_crm_events(30) as n").fetchone() == {"n": 0}, "once per birthday and per dormancy"
    events = {(r["t"], r["c"]) for r in conn.execute(
        "select message ->> 'topic' as t, (message -> 'payload' ->> 'customer_id')::uuid as c from pgmq.q_brigade_events "
        "where message ->> 'topic' like 'customer.%%'")}
    assert events == {("customer.birthday", bday), ("customer.dormant", sleepy)}


@pytest.mark.parametrize(("as_of", "zone", "celebrated"), [
    ("2027-02-28 12:00+00", "UTC", {"Leap", "Feb 28"}),          # no 29th in 2027: the leap-day baby's birthday is the 28th
    ("2027-03-01 12:00+00", "UTC", {"Mar 1"}),
    ("2028-02-28 12:00+00", "UTC", {"Feb 28"}),                  # 2028 has a 29th: she waits a day
    ("2028-02-29 12:00+00", "UTC", {"Leap"}),
    ("2028-02-28 23:30+00", "Europe/Paris", {"Leap"}),            # already the 29th in Paris
    ("2027-02-28 22:59+00", "Europe/Paris", {"Leap", "Feb 28"}),  # 23:59 on the 28th in Paris
])
def test_birthdays_are_on_the_day_in_the_business_zone_leap_days_included(conn: psycopg.Connection[dict[str, Any]], crm: Tenant, as_of: str,
                                                                           zone: str, celebrated: set[str]) -> None:
    conn.execute("update public.businesses set time_zone = %s where id = %s", (zone, crm.business_id))
    people = {name: customer(conn, crm, name, date_of_birth=born) for name, born in
              [("Leap", "1996-02-29"), ("Feb 28", "1990-02-28"), ("Mar 1", "1991-03-01")]}
    assert conn.execute("select app.emit_crm_events_at(30, %s) as n", (as_of,)).fetchone() == {"n": len(celebrated)}
    assert conn.execute("select app.emit_crm_events_at(30, %s) as n", (as_of,)).fetchone() == {"n": 0}, "once a year"
    emitted = {r["c"] for r in conn.execute("select (message -> 'payload' ->> 'customer_id')::uuid as c from pgmq.q_brigade_events "
                                            "where message ->> 'topic' = 'customer.birthday'")}
    assert emitted == {people[name] for name in celebrated}


def test_system_segments_per_venue_and_the_nightly_run(conn: psycopg.Connection[dict[str, Any]], crm: Tenant) -> None:
    keys = conn.execute("select key from public.segments where venue_id = %s and is_system order by key", (crm.venues[0],)).fetchall()
    assert [k["key"] for k in keys] == ["at_risk", "champion", "lost", "loyal", "new", "potential"]
    c = customer(conn, crm)
    stats(conn, crm, c, 1, 800, 1)
    result = conn.execute("select app.crm_nightly() as r").fetchone()["r"]  # type: ignore[index]
    assert result["segments"] == 12
    new = conn.execute("select member_count, last_computed_at is not null as computed from public.segments where venue_id = %s and key = 'new'",
                       (crm.venues[0],)).fetchone()
    assert new == {"member_count": 1, "computed": True}
    from worker.registry import registry
    import worker.handlers  # noqa: F401

    assert registry.jobs["crm.nightly"].cron == "30 3 * * *"


def test_allergen_preferences_reach_the_kitchen_ticket(api: Api, conn: psycopg.Connection[dict[str, Any]], menu: Menu) -> None:
    c = conn.execute("insert into public.customers (business_id, full_name, phone) values (%s, 'Nut Free', '+12125550444') returning id",
                     (menu.tenant.business_id,)).fetchone()["id"]  # type: ignore[index]
    for value in ("Peanuts", " sesame "):
        api.run(menu.tenant.claims("staff"), "insert into public.customer_preferences (business_id, customer_id, kind, value) values (%s, %s, 'allergen', %s)",
                (menu.tenant.business_id, c, value))
    api.run(menu.tenant.claims("staff"), "insert into public.customer_preferences (business_id, customer_id, kind, value) values (%s, %s, 'dietary', 'vegan')",
            (menu.tenant.business_id, c))
    assert api.run(menu.tenant.claims("staff"), "select allergens from public.customers where id = %s", (c,)) == [{"allergens": ["peanuts", "sesame"]}]
    order = place_and_pay(api, conn, menu, [{"product_id": str(menu.products["croissant"]), "quantity": 1}], "+12125550444", 1)
    ticket = conn.execute("select allergens from public.kitchen_tickets where order_id = %s", (order["order_id"],)).fetchone()
    assert ticket == {"allergens": ["peanuts", "sesame"]}
    api.run(menu.tenant.claims("staff"), "delete from public.customer_preferences where customer_id = %s and value = 'peanuts'", (c,))
    assert conn.execute("select allergens from public.customers where id = %s", (c,)).fetchone() == {"allergens": ["sesame"]}


def test_a_stranger_cannot_export_a_guest(api: Api, conn: psycopg.Connection[dict[str, Any]], factory: Factory, crm: Tenant) -> None:
    guest = customer(conn, crm, "Guest Only", email="guest-only@example.test")  # no user_id: a guest
    stranger = Claims.user(factory.user("stranger@example.test"))
    with pytest.raises(psycopg.Error) as refused:
        api.run(stranger, "select public.export_customer(%s)", (guest,))
    assert refused.value.sqlstate == "PT404"
