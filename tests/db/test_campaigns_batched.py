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


# --- batched claims (0136) --------------------------------------------------------------------------

@pytest.fixture
def plain(conn: Conn, menu: Menu) -> Menu:
    """Campaigns on, stock for a few dozen orders (customers come from paid orders)."""
    enable(conn, menu.tenant.business_id)
    conn.execute("insert into public.stock_movements (business_id, venue_id, stock_item_id, delta, reason) "
                 "select business_id, venue_id, id, 1000, 'delivery' from public.stock_items where business_id = %s", (menu.tenant.business_id,))
    return menu


def claims(conn: Conn, limit: int, send_id: uuid.UUID | None = None, business_id: uuid.UUID | None = None,
           at: str = "now()") -> list[dict[str, Any]]:
    return [r["c"] for r in conn.execute(f"select c from app.claim_marketing_sends(%s, %s, %s, {at}) c",  # noqa: S608 (a fixed expression)
                                         (business_id, send_id, limit))]


def statuses(conn: Conn, business_id: uuid.UUID) -> Counter[str]:
    return Counter(r["status"] for r in conn.execute("select status from public.campaign_sends where business_id = %s", (business_id,)))


def test_a_batch_claims_due_sends_once_and_records_them_set_based(api: Any, conn: Conn, plain: Menu) -> None:
    from tests.campaigns_kit import automation, customer
    b = plain.tenant.business_id
    people = [customer(api, conn, plain, name=f"Bea {i}", days_ago=40) for i in range(5)]
    customer(api, conn, plain, name="Nick Noconsent", days_ago=40, consent=())
    automation(conn, b)
    later = automation(conn, b, name="Later", delay_seconds=3600)
    assert conn.execute("select app.evaluate_dormant_automations(%s) as n", (b,)).fetchone() == {"n": 12}
    got = claims(conn, 4)
    assert len(got) == 4 and statuses(conn, b)["sending"] + statuses(conn, b)["skipped"] == 4
    rest = claims(conn, 50)
    assert len(rest) == 2, "the rest of the due sends; the delayed rule's six are not due"
    assert not {c["send_id"] for c in got} & {c["send_id"] for c in rest}, "a send is claimed once"
    assert claims(conn, 50) == []
    sent = [c for c in got + rest if c["action"] == "send"]
    assert sorted(c["customer_id"] for c in sent) == sorted(str(p) for p in people)
    assert all(c["business_id"] == str(b) and c["recipient"].startswith("+") for c in sent)
    results = json.dumps([{"business_id": c["business_id"], "send_id": c["send_id"], "recipient": c["recipient"], "template": "t",
                           "provider": "log", "message_id": f"SM{i}", "cost_cents": 0.79, "error": None if i else "refused"}
                          for i, c in enumerate(sent)])
    assert conn.execute("select app.complete_marketing_sends(%s) as n", (results,)).fetchone() == {"n": 5}
    assert conn.execute("select app.complete_marketing_sends(%s) as n", (results,)).fetchone() == {"n": 0}, "a duplicate changes nothing"
    assert statuses(conn, b) == Counter({"sent": 4, "failed": 1, "skipped": 1, "scheduled": 6})
    logged = conn.execute("select count(*) as n from public.notification_log where business_id = %s and event_key like 'marketing:%%'", (b,)).fetchone()
    assert logged == {"n": 5}
    # the delayed ones become due: the event's own send comes first, the others follow in the batch
    first = conn.execute("select id from public.campaign_sends where automation_id = %s order by id desc limit 1", (later,)).fetchone()["id"]  # type: ignore[index]
    batch = claims(conn, 3, first, b, "now() + interval '2 hours'")
    assert [c["send_id"] for c in batch][0] == str(first) and len(batch) == 3
    assert claims(conn, 3, first, b, "now() + interval '2 hours'")[0]["action"] == "none", "a duplicate event finds it claimed"
    with pytest.raises(psycopg.Error) as refused:
        claims(conn, 0)
    assert refused.value.sqlstate == "22023"


def test_the_frequency_cap_counts_sends_in_flight(api: Any, conn: Conn, plain: Menu) -> None:
    from tests.campaigns_kit import automation, customer
    b = plain.tenant.business_id
    cid = customer(api, conn, plain)
    automation(conn, b, trigger="customer.birthday", cap_count=1, cap_days=7)
    for key in ("k1", "k2"):
        conn.execute("select app.enqueue_automations(%s, 'customer.birthday', %s, %s, null)", (b, key, cid))
    got = claims(conn, 10)
    assert sorted(c["action"] for c in got) == ["send", "skipped"]
    assert [c["reason"] for c in got if c["action"] == "skipped"] == ["frequency_cap"], "the first is in flight: the cap holds in one batch"
    # a business-wide cap counts another rule's send decided earlier in the same batch
    conn.execute("update public.campaign_sends set status = 'skipped', skip_reason = 'inactive' where business_id = %s", (b,))
    uncapped = automation(conn, b, name="Tiers", trigger="loyalty.tier_changed")
    capped = automation(conn, b, name="Orders", trigger="order.first", cap_count=1, cap_days=7, cap_scope="business")
    conn.execute("select app.enqueue_automations(%s, 'loyalty.tier_changed', 't1', %s, null)", (b, cid))
    conn.execute("update public.campaign_sends set due_at = now() - interval '1 minute' where automation_id = %s", (uncapped,))
    conn.execute("select app.enqueue_automations(%s, 'order.first', 'f1', %s, null)", (b, cid))
    got = {c["send_id"]: c for c in claims(conn, 10)}
    actions = {r["automation_id"]: got[str(r["id"])]["action"] for r in conn.execute(
        "select id, automation_id from public.campaign_sends where business_id = %s and automation_id in (%s, %s)", (b, uncapped, capped))}
    assert actions == {uncapped: "send", capped: "skipped"}


def test_a_crash_never_sends_twice_and_loses_only_what_was_handed_over(api: Any, conn: Conn, plain: Menu) -> None:
    from tests.campaigns_kit import automation, customer
    b = plain.tenant.business_id
    for i in range(3):
        customer(api, conn, plain, name=f"Cara {i}", days_ago=40)
    automation(conn, b)
    conn.execute("select app.evaluate_dormant_automations(%s)", (b,))
    conn.execute("select pgmq.purge_queue('brigade_events')")
    handed, untouched, done = claims(conn, 10)
    # the worker: handed one to the provider (committed mark), then died; another was completed first
    assert conn.execute("select app.start_marketing_send(%s, %s) as ok", (b, done["send_id"])).fetchone() == {"ok": True}
    conn.execute("select app.complete_marketing_send(%s, %s, %s, 't', 'log', 'SM1', 0, null)", (b, done["send_id"], done["recipient"]))
    assert conn.execute("select app.start_marketing_send(%s, %s) as ok", (b, handed["send_id"])).fetchone() == {"ok": True}
    assert conn.execute("select app.start_marketing_send(%s, %s) as ok", (b, handed["send_id"])).fetchone() == {"ok": False}, \
        "handed over once"
    assert claims(conn, 10) == [], "in flight: no other worker claims them"
    assert conn.execute("select app.recover_marketing_sends() as n").fetchone() == {"n": 0}, "within the lease nothing is recovered"
    assert conn.execute("select app.recover_marketing_sends(interval '10 minutes', now() + interval '11 minutes') as n").fetchone() == {"n": 2}
    rows = {r["id"]: r for r in conn.execute("select id, status, error from public.campaign_sends where business_id = %s", (b,))}
    assert (rows[uuid.UUID(handed["send_id"])]["status"], rows[uuid.UUID(handed["send_id"])]["error"]) == ("failed", "interrupted")
    assert rows[uuid.UUID(untouched["send_id"])]["status"] == "scheduled"
    assert rows[uuid.UUID(done["send_id"])]["status"] == "sent"
    queued = conn.execute("select message->'payload'->>'send_id' as s from pgmq.q_brigade_events").fetchall()
    assert queued == [{"s": untouched["send_id"]}], "the never-sent one is announced again"
    again = claims(conn, 10)
    assert [c["send_id"] for c in again if c["action"] == "send"] == [untouched["send_id"]], "the interrupted one is never sent again"
    # the interrupted worker's late report still lands: the message did go out
    conn.execute("select app.complete_marketing_send(%s, %s, %s, 't', 'log', 'SM2', 0, null)", (b, handed["send_id"], handed["recipient"]))
    assert conn.execute("select status from public.campaign_sends where id = %s", (handed["send_id"],)).fetchone() == {"status": "sent"}


def test_two_claimers_split_the_due_sends(api: Any, conn: Conn, plain: Menu, db_dsn: str) -> None:
    from tests.campaigns_kit import automation, customer
    b = plain.tenant.business_id
    for i in range(4):
        customer(api, conn, plain, name=f"Dee {i}", days_ago=40)
    automation(conn, b)
    conn.execute("select app.evaluate_dormant_automations(%s)", (b,))
    with psycopg.connect(db_dsn) as one, psycopg.connect(db_dsn) as two:
        first = [r[0]["send_id"] for r in one.execute("select c from app.claim_marketing_sends(null, null, 3) c")]
        second = [r[0]["send_id"] for r in two.execute("select c from app.claim_marketing_sends(null, null, 3) c")]  # while one holds its locks
        assert len(first) == 3 and len(second) == 1 and not set(first) & set(second)
        one.rollback()  # the first claimer dies before committing: its sends are due again
        two.commit()
    assert len(claims(conn, 10)) == 3
