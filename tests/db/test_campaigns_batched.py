"""Issue 18: the set-based send-time checks decide exactly as the per-row ones. app.marketing_blocks
(0135) against app.marketing_block (0112) over generated customers reaching every block reason and
their overlaps (the order of the checks), on every channel, consent channel, product and venue; and
the campaign preview computed from it."""

from __future__ import annotations

import json
import random
import uuid
from collections import Counter
from typing import Any

import psycopg
import pytest

from tests.campaigns_kit import enable
from tests.ordering_kit import Menu

Conn = psycopg.Connection[dict[str, Any]]
CONSENT_CHANNELS = ("SMS_MARKETING", "EMAIL_MARKETING", "PUSH_MARKETING", "REVIEW_REQUEST")


def generate(conn: Conn, menu: Menu, n: int, seed: int) -> list[uuid.UUID]:
    """n customers whose every attribute a check reads is drawn at random; returns their ids plus two
    that do not exist."""
    rng = random.Random(seed)
    b, venues = menu.tenant.business_id, [menu.tenant.venues[0], menu.tenant.venues[1]]
    ids: list[uuid.UUID] = []
    for i in range(n):
        cid = uuid.uuid4()
        email = rng.choice([f"Guest{i}@Example.test", f"guest{i}@example.test", None])
        phone = rng.choice([f"+1555{i:07d}", f"+1555{i:07d}", None])
        conn.execute(
            "insert into public.customers (business_id, id, full_name, phone, email, status, allergens) values (%s, %s, %s, %s, %s, %s, %s)",
            (b, cid, f"Guest {i}", phone, email, rng.choice(["active"] * 6 + ["inactive", "blocked"]),
             rng.choice([[], [], ["Gluten"], [" NUTS "], ["dairy", "soy"], ["Soy"]])))
        ids.append(cid)
        fate = rng.random()
        if fate < 0.05:
            conn.execute("update public.customers set anonymised_at = now() where business_id = %s and id = %s", (b, cid))
        elif fate < 0.10 and len(ids) > 1:
            conn.execute("update public.customers set merged_into = %s where business_id = %s and id = %s", (ids[0], b, cid))
        elif fate < 0.15:
            conn.execute("insert into public.customer_delete_requests (business_id, customer_id, status) values (%s, %s, %s)",
                         (b, cid, rng.choice(["pending", "pending", "cancelled"])))
        for _ in range(rng.choice([0, 1, 1, 2, 3, 4])):
            conn.execute("insert into public.customer_consent_log (business_id, customer_id, venue_id, channel, action, source) "
                         "values (%s, %s, %s, %s, %s, 'admin')",
                         (b, cid, rng.choice([None, None, *venues]), rng.choice(CONSENT_CHANNELS),
                          rng.choice(["GRANTED", "GRANTED", "REVOKED", "REQUESTED"])))
        if rng.random() < 0.15 and phone:
            conn.execute("insert into public.marketing_suppressions (business_id, channel, address, reason) values (%s, 'sms', %s, 'sms_stop')", (b, phone))
        if rng.random() < 0.15 and email:  # stored lower-case as the bounce handler does, or as typed (then it matches nobody)
            conn.execute("insert into public.marketing_suppressions (business_id, channel, address, reason) values (%s, 'email', %s, 'bounce')",
                         (b, rng.choice([email.lower(), email])))
    return ids + [uuid.uuid4(), uuid.uuid4()]


@pytest.fixture
def shop(conn: Conn, menu: Menu) -> Menu:
    enable(conn, menu.tenant.business_id)
    b = menu.tenant.business_id
    conn.execute("update public.products set allergens = '{Gluten, Dairy}' where id = %s", (menu.products["croissant"],))
    conn.execute("update public.products set allergens = '{nuts}' where id = %s", (menu.products["latte"],))
    # butter (the croissant's) at its critical level at the first venue: the croissant is promoted nowhere it is short
    conn.execute("update public.stock_items set critical_level = quantity + 1 where business_id = %s and sku = 'butter'", (b,))
    return menu


def test_the_set_based_checks_decide_as_the_per_row_check(conn: Conn, shop: Menu) -> None:
    b = shop.tenant.business_id
    customers = generate(conn, shop, 240, seed=18)
    rng = random.Random(1818)
    venues = [shop.tenant.venues[0], shop.tenant.venues[1], None]
    products = [None, shop.products["croissant"], shop.products["latte"], uuid.uuid4()]
    seen: Counter[str | None] = Counter()
    for channel in ("sms", "email", "push"):
        for consent in CONSENT_CHANNELS:
            for product in products:
                recipients = [(c, rng.choice(venues)) for c in customers]
                recipients += recipients[:5]  # the same customer twice in one batch is answered twice
                got = conn.execute(
                    "select ord, customer_id, reason from app.marketing_blocks(%s, %s, %s, %s, %s::uuid[], %s::uuid[]) order by ord",
                    (b, channel, consent, product, [c for c, _ in recipients], [v for _, v in recipients])).fetchall()
                want = conn.execute(
                    "select u.ord, u.c as customer_id, app.marketing_block(%s, u.c, u.v, %s, %s, %s) as reason "
                    "from unnest(%s::uuid[], %s::uuid[]) with ordinality u(c, v, ord) order by u.ord",
                    (b, channel, consent, product, [c for c, _ in recipients], [v for _, v in recipients])).fetchall()
                assert got == want, (channel, consent, product)
                seen.update(r["reason"] for r in got)
    assert set(seen) == {None, "deleted", "blocked", "no_contact", "no_consent", "suppressed", "allergen", "stock_critical"}, \
        f"every reason reached: {seen}"
    assert min(seen.values()) >= 20, seen


def test_marketing_blocks_refuses_ragged_input_and_answers_nothing_for_nobody(conn: Conn, shop: Menu) -> None:
    b = shop.tenant.business_id
    with pytest.raises(psycopg.Error) as refused:
        conn.execute("select * from app.marketing_blocks(%s, 'sms', 'SMS_MARKETING', null, %s::uuid[], %s::uuid[])",
                     (b, [uuid.uuid4(), uuid.uuid4()], [shop.venue_id]))
    assert refused.value.sqlstate == "22023"
    assert conn.execute("select * from app.marketing_blocks(%s, 'sms', 'SMS_MARKETING', null, '{}', '{}')", (b,)).fetchall() == []


def test_the_preview_counts_what_the_per_row_check_would(conn: Conn, shop: Menu) -> None:
    b = shop.tenant.business_id
    customers = generate(conn, shop, 150, seed=7)
    segment = conn.execute("insert into public.segments (business_id, venue_id, key, name, criteria) values (%s, %s, 'picked', 'Picked', %s) "
                           "returning id", (b, shop.venue_id, json.dumps({"field": "total_orders", "op": "gte", "value": 1}))).fetchone()["id"]  # type: ignore[index]
    conn.execute("insert into public.segment_memberships (business_id, segment_id, venue_id, customer_id) select %s, %s, %s, unnest(%s::uuid[])",
                 (b, segment, shop.venue_id, customers[:-2]))
    conn.execute("set role service_role")
    try:
        for channel, product in (("sms", None), ("email", None), ("sms", shop.products["croissant"]), ("email", shop.products["latte"])):
            preview = conn.execute("select app.campaign_preview(%s, %s, %s) as p", (segment, channel, product)).fetchone()["p"]  # type: ignore[index]
            rows = conn.execute(
                "select app.marketing_block(%s, m.customer_id, %s, %s, app.marketing_consent_channel('campaign', %s), %s) as reason "
                "from public.segment_memberships m where m.business_id = %s and m.segment_id = %s",
                (b, shop.venue_id, channel, channel, product, b, segment)).fetchall()
            counts = Counter(r["reason"] for r in rows)
            assert preview == {"members": len(rows), "reachable": counts.pop(None, 0), "blocked": dict(counts)}, (channel, product)
    finally:
        conn.execute("reset role")
