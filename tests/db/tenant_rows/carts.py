"""Carts: a guest cart and a signed-in customer's cart with lines, through the cart RPCs. The tables
are reached only through those RPCs (security definer), so no API role holds a privilege on them."""

from __future__ import annotations

import json

from brigade.auth import Claims
from tests.db.tenant_rows import TenantRows

SERVICE_ONLY = {"customer_sessions", "cart_items"}


def seed(ctx: TenantRows) -> None:
    venue = ctx.menu.venue_id
    for claims in (Claims.anon(), Claims.user(ctx.tenant.users["staff"])):
        token = ctx.api.run(claims, "select public.start_cart(%s) as r", (venue,))[0]["r"]["session_token"]
        cart = ctx.api.run(claims, "select public.add_to_cart(%s, %s) as r",
                           (token, json.dumps({"product_id": str(ctx.menu.products["croissant"]), "quantity": 2})))[0]["r"]
        assert cart["item_count"] == 2
