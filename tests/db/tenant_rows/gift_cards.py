"""Gift cards (issue 23 item 4): a card bought and paid, one order of the tenant paid in part with it,
so both gift_cards and gift_card_ledger hold rows of each tenant for the walk."""

from __future__ import annotations

import json

from brigade.auth import Claims
from tests.db.tenant_rows import TenantRows
from tests.gift_cards_kit import issue
from tests.ordering_kit import order_payload


def seed(ctx: TenantRows) -> None:
    b = ctx.tenant.business_id
    _, code = issue(ctx.conn, ctx.api, b, 500)
    order = ctx.api.run(Claims.anon(), "select public.place_order(%s) as r", (json.dumps(order_payload(ctx.menu)),))[0]["r"]
    applied = ctx.api.run(Claims.anon(), "select public.apply_gift_card(%s, %s, %s) as r",
                          (order["order_id"], order["access_token"], code))[0]["r"]
    assert applied["applied"] and applied["gift_card_cents"] == 500
