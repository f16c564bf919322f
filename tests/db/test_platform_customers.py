"""Customer accounts (profile, addresses with coordinates, saved payment methods' metadata, order
history, reorder, claiming guest orders by a code) and reviews from verified purchasers only,
moderated, with rating aggregates on products."""

from __future__ import annotations

import json
import uuid
from typing import Any

import psycopg
import pytest

from brigade.auth import Claims
from tests.conftest import Api, Factory
from tests.ordering_kit import Menu, order_payload, session_completed

Conn = psycopg.Connection[dict[str, Any]]


def customer(factory: Factory, email: str | None = None) -> Claims:
    email = email or f"c-{uuid.uuid4().hex[:8]}@example.test"
    return Claims.user(factory.user(email), email=email)


def place(api: Api, claims: Claims, menu: Menu, **overrides: Any) -> dict[str, Any]:
    return api.run(claims, "select public.place_order(%s) as r", (json.dumps(order_payload(menu, **overrides)),))[0]["r"]


def pay(conn: Conn, order: dict[str, Any]) -> None:
    conn.execute("select app.apply_stripe_event(%s)", (json.dumps(session_completed(order, f"cs_{order['order_id']}", f"pi_{order['order_id']}")),))


def test_profile_addresses_and_saved_cards_are_the_customers_own(api: Api, conn: Conn, factory: Factory, menu: Menu) -> None:
    b = menu.tenant.business_id
    cleo, other = customer(factory), customer(factory)
    profile = api.run(cleo, "select public.upsert_my_profile(%s, 'Cleo', '+1 212 555 0111') as p", (b,))[0]["p"]
    assert profile["user_id"] == cleo.sub and profile["phone"] == "+12125550111" and profile["email"] == cleo.email
    other_profile = api.run(other, "select public.upsert_my_profile(%s, 'Otto') as p", (b,))[0]["p"]

    add = "insert into public.customer_addresses (business_id, customer_id, label, line1, city, latitude, longitude, is_default) " \
          "values (%s, %s, %s, '5 Elm St', 'New York', 40.71, -74.0, true) returning id"
    home = api.run(cleo, add, (b, profile["id"], "Home"))[0]["id"]
    work = api.run(cleo, add, (b, profile["id"], "Work"))[0]["id"]
    defaults = api.run(cleo, "select id from public.customer_addresses where is_default")
    assert [r["id"] for r in defaults] == [work] and home != work
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        api.run(cleo, add, (b, other_profile["id"], "Not mine"))
    assert api.run(other, "select count(*) as n from public.customer_addresses") == [{"n": 0}]
    assert api.rowcount(other, "delete from public.customer_addresses where id = %s", (home,)) == 0
    assert api.run(menu.tenant.claims("staff"), "select count(*) as n from public.customer_addresses where business_id = %s", (b,)) == [{"n": 2}]
    assert api.run(menu.tenant.claims("driver"), "select count(*) as n from public.customer_addresses") == [{"n": 0}]

    pm = {"id": "pm_1Abc", "object": "payment_method", "card": {"brand": "visa", "last4": "4242", "exp_month": 4, "exp_year": 2031}}
    conn.execute("select app.save_payment_method(%s, %s, %s)", (b, profile["id"], json.dumps(pm)))
    cards = api.run(cleo, "select brand, last4, is_default from public.customer_payment_methods")
    assert cards == [{"brand": "visa", "last4": "4242", "is_default": True}]
    assert api.run(other, "select count(*) as n from public.customer_payment_methods") == [{"n": 0}]
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        api.run(cleo, "insert into public.customer_payment_methods (business_id, customer_id, provider_payment_method_id, brand, last4, "
                      "exp_month, exp_year) values (%s, %s, 'pm_x', 'visa', '1111', 1, 2030)", (b, profile["id"]))
    columns = {r["column_name"] for r in conn.execute("select column_name from information_schema.columns where table_name = 'customer_payment_methods'")}
    assert not columns & {"number", "card_number", "pan", "cvc", "cvv"}
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute("insert into public.customer_payment_methods (business_id, customer_id, provider_payment_method_id, brand, last4, "
                     "exp_month, exp_year) values (%s, %s, 'pm_y', 'visa', '4242424242424242', 1, 2030)", (b, profile["id"]))
    assert api.rowcount(cleo, "delete from public.customer_payment_methods") == 1


def test_order_history_and_reorder(api: Api, conn: Conn, factory: Factory, menu: Menu) -> None:
    cleo, other = customer(factory), customer(factory)
    first = place(api, cleo, menu)
    pay(conn, first)
    history = api.run(cleo, "select public.my_orders() as h")[0]["h"]
    assert [h["order_id"] for h in history] == [first["order_id"]] and history[0]["payment_status"] == "paid"
    assert len(history[0]["items"]) == 2
    assert api.run(other, "select public.my_orders() as h")[0]["h"] == []

    again = api.run(cleo, "select public.reorder(%s) as r", (first["order_id"],))[0]["r"]
    assert again["order_id"] != first["order_id"] and again["subtotal_cents"] == first["subtotal_cents"]
    assert again["tip_cents"] == 0, "a reorder does not repeat the tip"
    lines = conn.execute("select product_id, variant_id, modifiers, quantity from public.order_items where order_id = %s order by line_number",
                         (again["order_id"],)).fetchall()
    original = conn.execute("select product_id, variant_id, modifiers, quantity from public.order_items where order_id = %s order by line_number",
                            (first["order_id"],)).fetchall()
    assert lines == original
    with pytest.raises(psycopg.Error) as err:
        api.run(other, "select public.reorder(%s)", (first["order_id"],))
    assert err.value.diag.sqlstate == "PT404"


def claim_code(conn: Conn, claim_id: str) -> str:
    row = conn.execute("select message -> 'payload' ->> 'code' as c from pgmq.q_brigade_events "
                       "where message ->> 'topic' = 'customer.claim_requested' and message -> 'payload' ->> 'claim_id' = %s", (claim_id,)).fetchone()
    assert row is not None
    return row["c"]


def test_guests_claim_past_orders_with_a_code(api: Api, conn: Conn, factory: Factory, menu: Menu) -> None:
    b = menu.tenant.business_id
    guest_email = "walk.in@example.test"
    guest = place(api, Claims.anon(), menu, customer={"name": "Walk In", "phone": "+12125550777", "email": guest_email})
    pay(conn, guest)
    someone_else = place(api, Claims.anon(), menu, customer={"name": "Else", "email": "else@example.test"})
    cleo = customer(factory, guest_email)
    assert api.run(cleo, "select public.my_orders() as h")[0]["h"] == []

    claim = api.run(cleo, "select public.request_order_claim(%s, 'email', %s) as c", (b, guest_email.upper()))[0]["c"]
    code = claim_code(conn, claim["claim_id"])
    wrong = f"{(int(code) + 1) % 1000000:06d}"
    answers = [api.run(cleo, "select public.verify_order_claim(%s, %s) as r", (claim["claim_id"], wrong))[0]["r"] for _ in range(5)]
    assert [a["attempts_left"] for a in answers] == [4, 3, 2, 1, 0]
    assert answers[-1]["reason"] == "too_many_attempts" and answers[0]["reason"] == "wrong_code"
    sixth = api.run(cleo, "select public.verify_order_claim(%s, %s) as r", (claim["claim_id"], code))[0]["r"]
    assert sixth == {"verified": False, "reason": "too_many_attempts", "attempts_left": 0}

    stale = api.run(cleo, "select public.request_order_claim(%s, 'email', %s) as c", (b, guest_email))[0]["c"]
    conn.execute("update app.customer_claim_codes set expires_at = now() - interval '1 second' where id = %s", (stale["claim_id"],))
    assert api.run(cleo, "select public.verify_order_claim(%s, %s) as r", (stale["claim_id"], claim_code(conn, stale["claim_id"])))[0]["r"]["reason"] == "expired"

    fresh = api.run(cleo, "select public.request_order_claim(%s, 'email', %s) as c", (b, guest_email))[0]["c"]
    intruder = customer(factory)
    with pytest.raises(psycopg.Error) as err:
        api.run(intruder, "select public.verify_order_claim(%s, %s)", (fresh["claim_id"], claim_code(conn, fresh["claim_id"])))
    assert err.value.diag.sqlstate == "PT404"
    ok = api.run(cleo, "select public.verify_order_claim(%s, %s) as r", (fresh["claim_id"], claim_code(conn, fresh["claim_id"])))[0]["r"]
    assert ok["verified"] is True and ok["claimed_orders"] == 1
    assert [h["order_id"] for h in api.run(cleo, "select public.my_orders() as h")[0]["h"]] == [guest["order_id"]]
    assert someone_else["order_id"] not in json.dumps(api.run(cleo, "select public.my_orders() as h")[0]["h"])
    assert api.run(cleo, "select count(*) as n from public.customers where business_id = %s", (b,)) == [{"n": 1}]
    # a used code cannot be replayed; the code itself is never stored
    assert api.run(cleo, "select public.verify_order_claim(%s, %s) as r", (fresh["claim_id"], claim_code(conn, fresh["claim_id"])))[0]["r"]["verified"] is False
    stored = conn.execute("select code_hash from app.customer_claim_codes where id = %s", (fresh["claim_id"],)).fetchone()
    assert stored is not None and claim_code(conn, fresh["claim_id"]) not in stored["code_hash"]
    for _ in range(2):
        api.run(cleo, "select public.request_order_claim(%s, 'sms', '+12125550777')", (b,))
    with pytest.raises(psycopg.Error) as err:
        api.run(cleo, "select public.request_order_claim(%s, 'sms', '+12125550777')", (b,))
    assert err.value.diag.sqlstate == "BR741"


def review(api: Api, claims: Claims, order: dict[str, Any], body: dict[str, Any], token: Any = "own") -> dict[str, Any]:
    tok = order["access_token"] if token == "own" else token
    return api.run(claims, "select public.submit_review(%s, %s, %s) as r", (order["order_id"], tok, json.dumps(body)))[0]["r"]


def refused(api: Api, claims: Claims, order: dict[str, Any], body: dict[str, Any], token: Any = "own") -> str | None:
    try:
        review(api, claims, order, body, token)
    except psycopg.Error as exc:
        return exc.diag.sqlstate
    return None


def test_reviews_from_verified_purchasers_only(api: Api, conn: Conn, factory: Factory, menu: Menu) -> None:
    anon = Claims.anon()
    croissant, latte = str(menu.products["croissant"]), str(menu.products["latte"])
    unpaid = place(api, anon, menu)
    assert refused(api, anon, unpaid, {"rating": 5}) == "BR750"
    order = place(api, anon, menu)
    pay(conn, order)
    assert refused(api, anon, order, {"rating": 5}, token=str(uuid.uuid4())) == "PT404"
    assert refused(api, anon, order, {"rating": 6}) == "BR753"
    assert refused(api, anon, order, {"rating": 5, "products": [{"product_id": str(uuid.uuid4()), "rating": 5}]}) == "BR751"
    assert refused(api, anon, order, {"rating": 5, "driver_tip_cents": 200}) == "BR754"
    assert conn.execute("select count(*) as n from public.order_reviews").fetchone() == {"n": 0}, "refusals write nothing"

    done = review(api, anon, order, {"rating": 4, "food_rating": 5, "body": "Great",
                                      "products": [{"product_id": croissant, "rating": 4}, {"product_id": latte, "rating": 3}]})
    assert done["products_reviewed"] == 2 and done["status"] == "pending"
    assert refused(api, anon, order, {"rating": 5}) == "BR752"
    assert api.run(anon, "select count(*) as n from public.product_reviews") == [{"n": 0}], "pending reviews are not public"

    # a signed-in customer reviews their own order without the token; a delivery order takes a tip
    cleo = customer(factory)
    mine = place(api, cleo, menu, fulfilment="delivery", delivery_address={"line1": "1 Main St", "latitude": 40.713, "longitude": -74.006})
    pay(conn, mine)
    review(api, cleo, mine, {"rating": 5, "delivery_rating": 5, "driver_tip_cents": 300, "products": [{"product_id": croissant, "rating": 5}]},
           token=None)
    tip = conn.execute("select message -> 'payload' as p from pgmq.q_brigade_events where message ->> 'topic' = 'review.driver_tip'").fetchone()
    assert tip is not None and tip["p"]["tip_cents"] == 300 and tip["p"]["order_id"] == mine["order_id"]
    mine_seen = api.run(cleo, "select order_id from public.order_reviews where order_id = %s", (mine["order_id"],))
    assert len(mine_seen) == 1, "a customer reads their own (pending) review"
    assert api.run(customer(factory), "select count(*) as n from public.order_reviews") == [{"n": 0}]


def test_moderation_and_rating_aggregates(api: Api, conn: Conn, factory: Factory, menu: Menu) -> None:
    croissant = str(menu.products["croissant"])
    ids = []
    for rating in (4, 5, 2):
        order = place(api, Claims.anon(), menu)
        pay(conn, order)
        review(api, Claims.anon(), order, {"rating": rating, "products": [{"product_id": croissant, "rating": rating}]})
        ids.append(conn.execute("select id from public.product_reviews where order_id = %s", (order["order_id"],)).fetchone()["id"])  # type: ignore[index]

    def stats() -> tuple[int, Any]:
        row = conn.execute("select rating_count, rating_average from public.products where id = %s", (croissant,)).fetchone()
        assert row is not None
        return row["rating_count"], row["rating_average"] and float(row["rating_average"])

    assert stats() == (0, None)
    staff, manager = menu.tenant.claims("staff"), menu.tenant.claims("manager")
    with pytest.raises(psycopg.Error) as err:
        api.run(staff, "select public.moderate_review('product', %s, 'approved')", (ids[0],))
    assert err.value.diag.sqlstate == "PT404"
    for rid in ids:
        api.run(manager, "select public.moderate_review('product', %s, 'approved', null, 'Thank you!')", (rid,))
    assert stats() == (3, round((4 + 5 + 2) / 3, 2))
    api.run(manager, "select public.moderate_review('product', %s, 'rejected', 'off-topic')", (ids[2],))
    assert stats() == (2, 4.5)
    public = api.run(Claims.anon(), "select rating, reply from public.product_reviews where product_id = %s order by rating", (croissant,))
    assert public == [{"rating": 4, "reply": "Thank you!"}, {"rating": 5, "reply": "Thank you!"}]
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        api.run(Claims.anon(), "select customer_id from public.product_reviews")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):  # not a column clients write (0061)
        api.run(manager, "update public.products set rating_count = 99, rating_average = 5 where id = %s", (croissant,))
    assert stats() == (2, 4.5), "ratings come only from approved reviews"
    other = factory.tenant("Elsewhere")
    with pytest.raises(psycopg.Error):
        api.run(other.claims("owner"), "select public.moderate_review('product', %s, 'rejected')", (ids[0],))
