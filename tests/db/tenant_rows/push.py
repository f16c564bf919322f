"""Web Push: a staff member's and a customer's device subscriptions, saved through the RPC."""

from __future__ import annotations

import json
import uuid

from brigade.auth import Claims
from tests.db.tenant_rows import TenantRows
from tests.fakes.push import Browser


def seed(ctx: TenantRows) -> None:
    b = ctx.tenant.business_id
    staff = Claims.user(ctx.tenant.users["staff"])
    user = ctx.factory.user()
    ctx.conn.execute("update public.customers set user_id = %s where business_id = %s and id = %s", (user, b, ctx.customer))
    for claims, audience in ((staff, "staff"), (Claims.user(user), "customer")):
        device = Browser(f"https://push.example.test/{uuid.uuid4().hex}")
        ctx.api.run(claims, "select public.save_push_subscription(%s, %s, %s, true)", (b, json.dumps(device.subscription()), audience))
