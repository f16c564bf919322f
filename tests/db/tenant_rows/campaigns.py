"""Campaigns & automations: a rule, a campaign to a segment, a sent message, an attributed order,
a suppressed number."""

from __future__ import annotations

import json
from typing import Any

from brigade.auth import Claims
from tests.db.tenant_rows import TenantRows
from tests.ordering_kit import order_payload, session_completed

LAPSED = {"name": "Lee Lapsed", "phone": "+1 212 555 0142", "email": "lee@example.test"}


def paid_order(ctx: TenantRows, n: int) -> dict[str, Any]:
    order = ctx.api.run(Claims.anon(), "select public.place_order(%s) as r",
                        (json.dumps(order_payload(ctx.menu, customer=LAPSED)),))[0]["r"]
    b = ctx.tenant.business_id
    ctx.conn.execute("select app.apply_stripe_event(%s)", (json.dumps(session_completed(order, f"cs_camp_{b}_{n}", f"pi_camp_{b}_{n}")),))
    return order


def seed(ctx: TenantRows) -> None:
    conn, b = ctx.conn, ctx.tenant.business_id
    conn.execute("select app.set_business_module(%s, 'campaigns', true)", (b,))
    first = paid_order(ctx, 1)
    customer = conn.execute("select customer_id from public.orders where business_id = %s and id = %s", (b, first["order_id"])).fetchone()["customer_id"]  # type: ignore[index]
    conn.execute("select app.record_consent(%s, %s, 'EMAIL_MARKETING', true, 'checkout')", (b, customer))
    conn.execute("update public.customer_venue_stats set last_order_at = now() - interval '40 days' where business_id = %s and customer_id = %s", (b, customer))
    automation = conn.execute(
        "insert into public.automations (business_id, name, trigger, channel, subject, body) "
        "values (%s, 'Win-back', 'customer.dormant', 'email', 'We miss you', 'Hi {{first_name}}') returning id", (b,)).fetchone()["id"]  # type: ignore[index]
    assert conn.execute("select app.evaluate_dormant_automations(%s) as n", (b,)).fetchone()["n"] >= 1  # type: ignore[index]
    send = conn.execute("select id from public.campaign_sends where business_id = %s and automation_id = %s and customer_id = %s",
                        (b, automation, customer)).fetchone()["id"]  # type: ignore[index]
    claim = conn.execute("select app.claim_marketing_send(%s, %s) as c", (b, send)).fetchone()["c"]  # type: ignore[index]
    assert claim["action"] == "send", claim
    conn.execute("select app.complete_marketing_send(%s, %s, %s, 'customer.dormant', 'log', 'log-1', 0.1, null)", (b, send, claim["recipient"]))
    paid_order(ctx, 2)  # they come back: attributed to the win-back
    assert conn.execute("select count(*) as n from public.campaign_attributions where business_id = %s", (b,)).fetchone()["n"] == 1  # type: ignore[index]
    segment = conn.execute("select id from public.segments where business_id = %s order by key limit 1", (b,)).fetchone()["id"]  # type: ignore[index]
    campaign = conn.execute(
        "insert into public.campaigns (business_id, name, segment_id, channel, body, status, scheduled_at) "
        "values (%s, 'Spring menu', %s, 'sms', 'New on the menu', 'scheduled', now()) returning id", (b, segment)).fetchone()["id"]  # type: ignore[index]
    conn.execute("select app.launch_campaign(%s, %s)", (b, campaign))
    conn.execute("insert into public.marketing_suppressions (business_id, channel, address, reason) values (%s, 'sms', '+15550001111', 'sms_stop')", (b,))
    conn.execute("insert into public.sms_senders (business_id, phone_number) values (%s, %s)", (b, f"+1555{int(b.hex[:8], 16) % 10**7:07d}"))
