"""Issue 18: the paid path's helpers rewritten in plpgsql (0151) compute exactly what the SQL ones did."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg

# The SQL body platform_fee_cents had before 0151 (plan read through business_plan's query).
OLD_FEE = """
select least(greatest(%(amount)s::integer, 0),
             round(%(amount)s::integer::numeric * coalesce(p.platform_fee_bps, 0) / 10000)::integer + coalesce(p.platform_fee_fixed_cents, 0))
from (select 1) one
left join (select p.* from public.business_subscriptions s join public.plans p on p.key = s.plan_key
           where s.business_id = %(business)s) p on true
"""


def test_platform_fee_is_the_same_for_every_plan_shape(conn: psycopg.Connection[dict[str, Any]], factory: Any) -> None:
    business = factory.tenant().business_id
    nobody = uuid.uuid4()  # no subscription: no plan, no fee
    shapes = [(0, 0), (250, 0), (0, 30), (290, 30), (10000, 0), (33, 7), (150, 1)]
    checked = 0
    for bps, fixed in shapes:
        conn.execute("update public.plans p set platform_fee_bps = %s, platform_fee_fixed_cents = %s "
                     "from public.business_subscriptions s where s.business_id = %s and p.key = s.plan_key",
                     (bps, fixed, business))
        for amount in (-500, 0, 1, 5, 49, 50, 99, 101, 1234, 99999, 2_000_000_000):
            for who in (business, nobody):
                new = conn.execute("select app.platform_fee_cents(%s, %s) as fee", (who, amount)).fetchone()["fee"]  # type: ignore[index]
                old = conn.execute(OLD_FEE, {"amount": amount, "business": who}).fetchone()  # type: ignore[union-attr]
                assert new == list(old.values())[0], (bps, fixed, amount, who)
                checked += 1
    assert checked == len(shapes) * 11 * 2


def test_lookups_that_find_nothing_return_null(conn: psycopg.Connection[dict[str, Any]]) -> None:
    row = conn.execute("select app.order_for_stripe_object('{\"object\": \"checkout.session\", \"id\": \"cs_none\"}') is null as o, "
                       "app.booking_for_stripe_object('{\"object\": \"checkout.session\", \"id\": \"cs_none\"}') is null as b, "
                       "app.business_plan(%s) is null as p, "
                       "coalesce(app.order_for_stripe_object('{}'), null) is null as strict_null", (uuid.uuid4(),)).fetchone()
    assert row == {"o": True, "b": True, "p": True, "strict_null": True}
