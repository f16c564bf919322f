"""Issue 9's tables for the two-tenant RLS walk: invoices, storefront (published, so anon reads it),
onboarding steps, an invitation, platform fees (from the fixture's paid orders), a payout; customer
accounts (an address, a saved card's metadata) and reviews (a product and an order review)."""

from __future__ import annotations

import json

from tests.db.tenant_rows import TenantRows

ANON_READABLE = {
    "storefront_settings": "is_published and app.business_active(business_id)",
    "product_reviews": "status = 'approved' and app.business_active(business_id)",
    "order_reviews": "status = 'approved' and app.business_active(business_id)",
}


def seed(ctx: TenantRows) -> None:
    t, conn = ctx.tenant, ctx.conn
    b = t.business_id
    owner = t.claims("owner")
    ctx.api.run(owner, "select public.set_retention(%s, 'call_logs', 120)", (b,))  # business_retention (issue 14)
    ctx.api.run(owner, "update public.storefront_settings set theme_colors = %s where business_id = %s",
                (json.dumps({"primary": "#223344"}), b))
    conn.execute("select app.set_payment_account(%s, %s)", (b, f"acct_{b.hex[:12]}"))
    ctx.api.run(owner, "update public.storefront_settings set is_published = true where business_id = %s", (b,))
    ctx.api.run(owner, "select public.invite_member(%s, %s, 'staff')", (b, f"invitee-{b.hex[:8]}@example.test"))
    conn.execute("select app.compute_payout(%s, now() - interval '1 day', now() + interval '1 day')", (b,))
    # a connected account's bank payout, as Stripe's payout.paid webhook records it (issue 23)
    conn.execute("select app.apply_stripe_connect_event(%s)", (json.dumps({
        "id": f"evt_po_{b.hex[:10]}", "type": "payout.paid", "account": f"acct_{b.hex[:12]}",
        "data": {"object": {"id": f"po_{b.hex[:10]}", "object": "payout", "amount": 1200, "currency": "usd", "status": "paid"}}}),))
    seed_customer_accounts(ctx)


def seed_customer_accounts(ctx: TenantRows) -> None:
    """Filled in once the customer-account and review tables exist (0054, 0055)."""
    conn, b = ctx.conn, ctx.tenant.business_id
    if conn.execute("select to_regclass('public.customer_addresses') is not null as ok").fetchone()["ok"]:  # type: ignore[index]
        conn.execute("insert into public.customer_addresses (business_id, customer_id, label, line1, city, country, latitude, longitude) "
                     "values (%s, %s, 'Home', '1 Main St', 'New York', 'US', 40.71, -74.0)", (b, ctx.customer))
        conn.execute("insert into public.customer_payment_methods (business_id, customer_id, provider_payment_method_id, brand, last4, "
                     "exp_month, exp_year) values (%s, %s, %s, 'visa', '4242', 12, 2030)", (b, ctx.customer, f"pm_{b.hex[:10]}"))
    if conn.execute("select to_regclass('public.product_reviews') is not null as ok").fetchone()["ok"]:  # type: ignore[index]
        order = ctx.orders[0]
        review = {"rating": 5, "body": "Lovely", "driver_tip_cents": 0,
                  "products": [{"product_id": str(ctx.menu.products["croissant"]), "rating": 4, "body": "Flaky"}]}
        conn.execute("select app.submit_review(%s, %s, %s)", (order["order_id"], order["access_token"], json.dumps(review)))
        conn.execute("update public.product_reviews set status = 'approved' where business_id = %s", (b,))
        conn.execute("update public.order_reviews set status = 'approved' where business_id = %s", (b,))
