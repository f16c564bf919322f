"""The saved-segment DSL: every operator and group against known customers, and every way to get it wrong."""

from __future__ import annotations

import json
import uuid
from typing import Any

import psycopg
import pytest

from tests.conftest import Api, Factory, Tenant


@pytest.fixture
def shop(factory: Factory, conn: psycopg.Connection[dict[str, Any]]) -> dict[str, Any]:
    """Four customers at the main venue with known stats, tags, consent and preferences."""
    t = factory.tenant("Dsl Diner", {"ordering": True, "crm": True})
    people: dict[str, uuid.UUID] = {}
    for name, email, dob, orders, spent, days, tags in (
        ("Ann", "ann@a.test", "1990-03-14", 12, 60000, 2, ["vip"]),
        ("Bob", None, "1985-07-01", 3, 7500, 45, []),
        ("Cid", "cid@c.test", None, 1, 900, 5, ["vip", "staff friend"]),
        ("Dee", "dee@d.test", "2000-03-30", 2, 4000, 120, []),
    ):
        cid = conn.execute("insert into public.customers (business_id, full_name, email, date_of_birth) values (%s, %s, %s, %s) returning id",
                           (t.business_id, name, email, dob)).fetchone()["id"]  # type: ignore[index]
        conn.execute("insert into public.customer_venue_stats (business_id, venue_id, customer_id, total_orders, total_spent_cents, "
                     "first_order_at, last_order_at) values (%s, %s, %s, %s, %s, '2024-01-01', now() - make_interval(days => %s))",
                     (t.business_id, t.venues[0], cid, orders, spent, days))
        for tag in tags:
            conn.execute("insert into public.customer_tags (business_id, customer_id, tag) values (%s, %s, %s)", (t.business_id, cid, tag))
        people[name] = cid
    conn.execute("select app.record_consent(%s, %s, 'EMAIL_MARKETING', true, 'checkout')", (t.business_id, people["Ann"]))
    conn.execute("select app.record_consent(%s, %s, 'EMAIL_MARKETING', true, 'checkout')", (t.business_id, people["Cid"]))
    conn.execute("select app.record_consent(%s, %s, 'EMAIL_MARKETING', false, 'unsubscribe_link')", (t.business_id, people["Cid"]))
    conn.execute("insert into public.customer_preferences (business_id, customer_id, kind, value) values (%s, %s, 'allergen', 'Peanuts')",
                 (t.business_id, people["Dee"]))
    return {"tenant": t, "people": people}


def members(api: Api, conn: psycopg.Connection[dict[str, Any]], shop: dict[str, Any], criteria: Any) -> set[str]:
    t: Tenant = shop["tenant"]
    seg = api.run(t.claims("manager"), "insert into public.segments (business_id, venue_id, key, name, criteria) values (%s, %s, %s, 'test', %s) "
                  "returning id", (t.business_id, t.venues[0], f"s_{uuid.uuid4().hex[:8]}", json.dumps(criteria)))[0]["id"]
    count = api.run(t.claims("manager"), "select public.recompute_segment(%s) as n", (seg,))[0]["n"]
    names = {r["full_name"] for r in conn.execute(
        "select c.full_name from public.segment_memberships m join public.customers c on c.id = m.customer_id where m.segment_id = %s", (seg,))}
    assert count == len(names)
    return names


@pytest.mark.parametrize(("criteria", "expected"), [
    ({"field": "total_orders", "op": "eq", "value": 3}, {"Bob"}),
    ({"field": "total_orders", "op": "neq", "value": 3}, {"Ann", "Cid", "Dee"}),
    ({"field": "total_spent_cents", "op": "gt", "value": 7500}, {"Ann"}),
    ({"field": "total_spent_cents", "op": "gte", "value": 7500}, {"Ann", "Bob"}),
    ({"field": "avg_order_cents", "op": "lt", "value": 2500}, {"Cid", "Dee"}),
    ({"field": "avg_order_cents", "op": "lte", "value": 2500}, {"Bob", "Cid", "Dee"}),
    ({"field": "days_since_last_order", "op": "between", "value": [30, 60]}, {"Bob"}),
    ({"field": "total_orders", "op": "in", "value": [1, 2]}, {"Cid", "Dee"}),
    ({"field": "segment", "op": "in", "value": ["CHAMPION", "NEW"]}, {"Ann", "Cid"}),
    ({"field": "segment", "op": "not_in", "value": ["LOST"]}, {"Ann", "Bob", "Cid"}),
    ({"field": "segment", "op": "eq", "value": "AT_RISK"}, {"Bob"}),
    ({"field": "last_order_at", "op": "lt", "value": "2000-01-01T00:00:00Z"}, set()),
    ({"field": "first_order_at", "op": "between", "value": ["2023-12-31", "2024-01-02"]}, {"Ann", "Bob", "Cid", "Dee"}),
    ({"field": "email", "op": "exists", "value": False}, {"Bob"}),
    ({"field": "email", "op": "contains", "value": "C.TEST"}, {"Cid"}),
    ({"field": "full_name", "op": "eq", "value": "Dee"}, {"Dee"}),
    ({"field": "birthday_month", "op": "eq", "value": 3}, {"Ann", "Dee"}),
    ({"hasTag": " VIP "}, {"Ann", "Cid"}),
    ({"field": "consent.email_marketing", "op": "eq", "value": True}, {"Ann"}),
    ({"field": "consent.email_marketing", "op": "eq", "value": False}, {"Bob", "Cid", "Dee"}),
    ({"field": "allergen", "op": "contains", "value": "peanuts"}, {"Dee"}),
    ({"field": "allergen", "op": "not_contains", "value": "peanuts"}, {"Ann", "Bob", "Cid"}),
    ({"all": [{"hasTag": "vip"}, {"field": "total_orders", "op": "gt", "value": 1}]}, {"Ann"}),
    ({"any": [{"hasTag": "staff friend"}, {"field": "segment", "op": "eq", "value": "LOST"}]}, {"Cid", "Dee"}),
    ({"not": {"hasTag": "vip"}}, {"Bob", "Dee"}),
    ({"not": {"field": "email", "op": "contains", "value": "a"}}, {"Bob", "Cid", "Dee"}),  # a null email is "not containing"
    ({"all": [{"any": [{"hasTag": "vip"}, {"field": "total_orders", "op": "eq", "value": 3}]},
              {"not": {"field": "consent.email_marketing", "op": "eq", "value": True}}]}, {"Bob", "Cid"}),
])
def test_operators_and_groups(api: Api, conn: psycopg.Connection[dict[str, Any]], shop: dict[str, Any], criteria: Any, expected: set[str]) -> None:
    assert members(api, conn, shop, criteria) == expected


@pytest.mark.parametrize(("criteria", "code"), [
    ({"field": "password", "op": "eq", "value": 1}, "BR201"),
    ({"field": "s.total_orders; drop table public.orders; --", "op": "eq", "value": 1}, "BR201"),
    ({"field": "total_orders", "op": "like", "value": 1}, "BR202"),
    ({"field": "total_orders", "op": "contains", "value": "1"}, "BR202"),
    ({"field": "total_orders", "op": "eq"}, "BR203"),
    ({"field": "total_orders", "op": "eq", "value": "1) or (1=1"}, "BR203"),
    ({"field": "total_orders", "op": "eq", "value": "1; drop table public.orders"}, "BR203"),
    ({"field": "segment", "op": "eq", "value": "VIP'); delete from public.customers; --"}, "BR203"),
    ({"field": "last_order_at", "op": "gt", "value": "yesterday-ish"}, "BR203"),
    ({"field": "total_orders", "op": "between", "value": [1]}, "BR203"),
    ({"field": "total_orders", "op": "in", "value": []}, "BR203"),
    ({"hasTag": 7}, "BR203"),
    ({"field": "email", "op": "exists"}, "BR203"),
    ({"field": "email", "op": "contains"}, "BR203"),
    ({"field": "total_orders", "op": "in"}, "BR203"),
    ({"field": "consent.email_marketing", "value": True}, "BR203"),
    ({"field": "allergen", "op": "contains"}, "BR203"),
    ({"field": "consent.email_marketing", "op": "eq", "value": "yes"}, "BR203"),
    ({"all": []}, "BR204"),
    ({"any": {"hasTag": "vip"}}, "BR204"),
    ({"all": [{"hasTag": "vip"}], "any": [{"hasTag": "vip"}]}, "BR204"),
    ({"nope": 1}, "BR204"),
    ([{"hasTag": "vip"}], "BR204"),
    ("total_orders > 1", "BR204"),
    ({"not": {"not": {"not": {"not": {"not": {"not": {"not": {"not": {"hasTag": "vip"}}}}}}}}}, "BR204"),
    ({"any": [{"hasTag": f"t{i}"} for i in range(120)]}, "BR204"),
])
def test_bad_criteria_are_refused_and_nothing_is_saved(api: Api, conn: psycopg.Connection[dict[str, Any]], shop: dict[str, Any],
                                                       criteria: Any, code: str) -> None:
    t: Tenant = shop["tenant"]
    before = conn.execute("select count(*) as n from public.segments").fetchone()
    with pytest.raises(psycopg.Error) as refused:
        api.run(t.claims("manager"), "insert into public.segments (business_id, venue_id, key, name, criteria) values (%s, %s, 'bad', 'bad', %s)",
                (t.business_id, t.venues[0], json.dumps(criteria)))
    assert refused.value.sqlstate == code, refused.value.diag.message_primary
    with pytest.raises(psycopg.Error) as checked:
        api.run(t.claims("manager"), "select public.validate_segment_criteria(%s)", (json.dumps(criteria),))
    assert checked.value.sqlstate == code
    assert conn.execute("select count(*) as n from public.segments").fetchone() == before
    assert conn.execute("select count(*) as n from public.orders").fetchone() is not None, "the orders table is still there"


def test_values_never_reach_the_sql_text(conn: psycopg.Connection[dict[str, Any]]) -> None:
    compiled = conn.execute("select app.compile_segment(%s) as sql", (json.dumps(
        {"all": [{"field": "email", "op": "contains", "value": "x'); drop table y; --"}, {"hasTag": "a'b"}]}),)).fetchone()["sql"]  # type: ignore[index]
    assert "drop table" not in compiled and "a'b" not in compiled
    assert "$1 #>> '{all,0,value}'" in compiled and "$1 #>> '{all,1,hasTag}'" in compiled


def test_system_segments_are_protected_and_staff_cannot_edit(api: Api, conn: psycopg.Connection[dict[str, Any]], shop: dict[str, Any]) -> None:
    t: Tenant = shop["tenant"]
    system = conn.execute("select id from public.segments where key = 'champion' and venue_id = %s", (t.venues[0],)).fetchone()["id"]  # type: ignore[index]
    with pytest.raises(psycopg.Error) as edit:
        api.run(t.claims("manager"), "update public.segments set criteria = '{\"hasTag\": \"x\"}' where id = %s", (system,))
    assert edit.value.sqlstate == "42501"
    with pytest.raises(psycopg.Error) as delete:
        api.run(t.claims("manager"), "delete from public.segments where id = %s", (system,))
    assert delete.value.sqlstate == "42501"
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        api.run(t.claims("staff"), "insert into public.segments (business_id, venue_id, key, name, criteria) values (%s, %s, 'k', 'k', '{\"hasTag\": \"vip\"}')",
                (t.business_id, t.venues[0]))
    assert api.run(t.claims("manager"), "select public.recompute_segment(%s) as n", (system,)) == [{"n": 1}]  # Ann
    with pytest.raises(psycopg.Error) as staff:
        api.run(t.claims("staff"), "select public.recompute_segment(%s)", (system,))
    assert staff.value.sqlstate == "PT404"


def test_crm_off_hides_segments_and_refuses_recompute(api: Api, conn: psycopg.Connection[dict[str, Any]], shop: dict[str, Any]) -> None:
    t: Tenant = shop["tenant"]
    seg = conn.execute("select id from public.segments where key = 'champion' and venue_id = %s", (t.venues[0],)).fetchone()["id"]  # type: ignore[index]
    conn.execute("update public.businesses set modules_json = modules_json || '{\"crm\": false}' where id = %s", (t.business_id,))
    assert api.run(t.claims("owner"), "select count(*) as n from public.segments") == [{"n": 0}]
    assert api.run(t.claims("owner"), "select count(*) as n from public.customer_venue_stats") == [{"n": 0}]
    with pytest.raises(psycopg.Error) as off:
        api.run(t.claims("owner"), "select public.recompute_segment(%s)", (seg,))
    assert off.value.sqlstate == "PT404"


DIFF_CRITERIA = [
    {"field": "total_spent_cents", "op": "gte", "value": 5000},
    {"field": "segment", "op": "in", "value": ["CHAMPION", "LOYAL", "AT_RISK"]},
    {"any": [{"field": "days_since_last_order", "op": "between", "value": [20, 60]}, {"hasTag": "vip"}]},
    {"not": {"field": "segment", "op": "eq", "value": "LOST"}},
    {"all": [{"field": "total_orders", "op": "gte", "value": 3}, {"not": {"field": "email", "op": "contains", "value": "7@"}}]},
]


def full_members(conn: psycopg.Connection[dict[str, Any]], t: Tenant, criteria: Any) -> set[uuid.UUID]:
    """The members as 0007 computed them: every customer of the venue matching the compiled predicate."""
    pred = conn.execute("select app.compile_segment(%s) as p", (json.dumps(criteria),)).fetchone()["p"]  # type: ignore[index]
    query = psycopg.sql.SQL(
        "select s.customer_id from public.customer_venue_stats s join public.customers c on c.business_id = s.business_id "
        "and c.id = s.customer_id where s.business_id = %(b)s and s.venue_id = %(v)s and c.anonymised_at is null and ({})"
    ).format(psycopg.sql.SQL(pred.replace("$1", "%(crit)s::jsonb")))
    return {r["customer_id"] for r in conn.execute(query, {"b": t.business_id, "v": t.venues[0], "crit": json.dumps(criteria)})}


def test_a_recompute_writes_only_joiners_and_leavers(conn: psycopg.Connection[dict[str, Any]], shop: dict[str, Any]) -> None:
    """On generated customers (ties on spend and days, values on the criteria's edges): the members after each
    recompute are exactly the full computation's, members who stay are not rewritten, leavers are gone."""
    t: Tenant = shop["tenant"]
    conn.execute("insert into public.customers (business_id, full_name, email) select %s, 'Gen ' || g, 'g' || g || '@x.test' "
                 "from generate_series(1, 300) g", (t.business_id,))
    conn.execute("insert into public.customer_venue_stats (business_id, venue_id, customer_id, total_orders, total_spent_cents, first_order_at, "
                 "last_order_at) select c.business_id, %s, c.id, 1 + (hashint4(g) & 7), 1000 * (1 + (hashint4(g * 7) & 7)), now() - interval '300 days', "
                 "now() - make_interval(days => (hashint4(g * 3) & 127)) from (select c.*, (row_number() over (order by c.id))::int as g "
                 "from public.customers c where c.business_id = %s and c.full_name like 'Gen %%') c", (t.venues[0], t.business_id))
    conn.execute("insert into public.customer_tags (business_id, customer_id, tag) select business_id, id, 'vip' from public.customers "
                 "where business_id = %s and full_name like 'Gen 1%%'", (t.business_id,))
    conn.execute("select app.crm_rebucket(%s)", (t.business_id,))
    segments = [conn.execute("insert into public.segments (business_id, venue_id, key, name, criteria) values (%s, %s, %s, 'diff', %s) returning id",
                             (t.business_id, t.venues[0], f"diff_{i}", json.dumps(c))).fetchone()["id"] for i, c in enumerate(DIFF_CRITERIA)]  # type: ignore[index]

    def rows(seg: uuid.UUID) -> dict[uuid.UUID, Any]:
        return {r["customer_id"]: r["xmin"] for r in conn.execute(
            "select customer_id, xmin::text from public.segment_memberships where segment_id = %s", (seg,))}

    def recompute(seg: uuid.UUID) -> int:
        return conn.execute("select app.recompute_segment(%s, %s) as n", (t.business_id, seg)).fetchone()["n"]  # type: ignore[index, no-any-return]

    before = {}
    for seg, criteria in zip(segments, DIFF_CRITERIA):
        n = recompute(seg)
        before[seg] = rows(seg)
        assert set(before[seg]) == full_members(conn, t, criteria) and n == len(before[seg]) > 0
    # a night later: a third spend more and ordered recently, one member is erased, the rest is as it was
    conn.execute("update public.customer_venue_stats set total_spent_cents = total_spent_cents + 4000, total_orders = total_orders + 1, "
                 "last_order_at = now() - interval '1 day' where business_id = %s and hashint4(total_spent_cents::int) %% 3 = 0", (t.business_id,))
    conn.execute("update public.customers set anonymised_at = now() where id = %s", (shop["people"]["Ann"],))
    conn.execute("select app.crm_rebucket(%s)", (t.business_id,))
    for seg, criteria in zip(segments, DIFF_CRITERIA):
        n = recompute(seg)
        after = rows(seg)
        assert set(after) == full_members(conn, t, criteria) and n == len(after)
        assert set(after) != set(before[seg])
        stayed = set(after) & set(before[seg])
        assert stayed and all(after[c] == before[seg][c] for c in stayed)  # not deleted and inserted again
        assert conn.execute("select member_count as n from public.segments where id = %s", (seg,)).fetchone() == {"n": len(after)}
