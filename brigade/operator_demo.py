"""`brigade operator-demo`: a new business from nothing to a live storefront that takes a paid order,
on the running local stack (`brigade up`), the way the operator, the new owner and a guest would:

1. the operator creates the business with its plan, modules and the owner's invitation (`admin` function);
2. the owner signs up, accepts the invitation and sets up a venue, opening hours, a menu and the theme
   (PostgREST calls, run here as the owner's JWT claims exactly as PostgREST runs them);
3. the operator connects the payment account; onboarding is complete and the owner publishes;
4. a guest finds the storefront by its subdomain, orders and pays (the `checkout` function and, with the
   `log` payments provider, the local stand-in for Stripe's page);
5. the operator sees the business, its order and GMV in the console and the platform metrics.

docs/operator-walkthrough.md describes the same steps; tests/e2e/test_operator_walkthrough.py runs them.
"""

from __future__ import annotations

import json
import sys
import uuid
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import httpx
import psycopg
from psycopg.rows import dict_row

from brigade import auth
from brigade.auth import Claims
from brigade.settings import Settings

OPERATOR = Claims.user("00000000-0000-4000-8000-00000000a0ff", email="operator@brigade.test", app_role=auth.PLATFORM_ADMIN)


@contextmanager
def as_caller(dsn: str, claims: Claims) -> Iterator[psycopg.Connection[dict[str, Any]]]:
    """One transaction as PostgREST would run it for these claims."""
    with psycopg.connect(dsn, row_factory=dict_row) as conn:
        with conn.transaction():
            conn.execute("select set_config('role', %s, true), set_config('request.jwt.claims', %s, true)",
                         (claims.role, json.dumps(claims.as_dict())))
            yield conn


def rpc(dsn: str, claims: Claims, sql: str, params: Any = None) -> Any:
    with as_caller(dsn, claims) as conn:
        row = conn.execute(sql, params).fetchone()
        return next(iter(row.values())) if row else None


def run(settings: Settings, base_url: str | None = None, say: Callable[[str], None] = print) -> dict[str, Any]:
    """Walk the steps; returns what was created (ids, the order, the operator's view of the business)."""
    base = (base_url or settings.functions_url).rstrip("/")
    dsn = settings.dsn
    suffix = uuid.uuid4().hex[:6]
    slug, owner_email = f"corner-bakery-{suffix}", f"owner-{suffix}@corner-bakery.test"
    op = {"authorization": f"Bearer {auth.sign(OPERATOR, settings.jwt_secret)}"}
    with httpx.Client(base_url=base, timeout=30) as http:
        return _walk(http, settings, dsn, slug, owner_email, suffix, op, say)


def _walk(http: httpx.Client, settings: Settings, dsn: str, slug: str, owner_email: str, suffix: str,
          op: dict[str, str], say: Callable[[str], None]) -> dict[str, Any]:
    def check(r: httpx.Response) -> Any:
        if r.status_code >= 400:
            raise SystemExit(f"{r.request.method} {r.request.url.path} -> {r.status_code}: {r.text}")
        return r.json()

    say("== 1. Operator: create the business (POST /admin/businesses)")
    created = check(http.post("/admin/businesses", headers=op, json={
        "name": "Corner Bakery", "slug": slug, "plan": "growth", "modules": {"ordering": True, "crm": True},
        "owner_email": owner_email, "currency": "USD", "time_zone": "America/New_York"}))
    business = created["business_id"]
    say(f"business {business} on growth, storefront subdomain {created['subdomain']}, owner invited: {owner_email}")

    say("== 2. Owner: sign up, accept the invitation, set the business up")
    with psycopg.connect(dsn, autocommit=True) as db:  # the local stand-in for Supabase Auth sign-up
        owner_id = db.execute("insert into auth.users (email, raw_app_meta_data) values (%s, '{\"provider\": \"email\"}') returning id",
                              (owner_email,)).fetchone()[0]  # type: ignore[index]
    owner = Claims.user(owner_id, email=owner_email)
    joined = rpc(dsn, owner, "select public.accept_invitation(%s)", (created["owner_invitation"]["token"],))
    say(f"owner joined as {joined['role']}")
    with as_caller(dsn, owner) as c:
        venue = c.execute(
            "insert into public.venues (business_id, name, slug, time_zone, is_published, accepts_pickup, accepts_delivery, "
            "delivery_radius_km, delivery_fee_cents, tax_rate_bps, latitude, longitude, address) "
            "values (%s, 'Corner Bakery Main St', 'main-st', 'America/New_York', true, true, true, 4, 350, 800, 40.7128, -74.006, "
            "'{\"line1\": \"1 Main St\", \"city\": \"New York\"}') returning id", (business,)).fetchone()["id"]  # type: ignore[index]
        c.execute("insert into public.venue_opening_hours (business_id, venue_id, weekday, opens_at, closes_at) "
                  "select %s, %s, d, '00:00', '00:00' from generate_series(0, 6) d", (business, venue))
        c.execute("insert into public.venue_hours_exceptions (business_id, venue_id, on_date, is_closed, note) "
                  "values (%s, %s, '2030-12-25', true, 'Christmas')", (business, venue))
        category = c.execute("insert into public.product_categories (business_id, name) values (%s, 'Bread') returning id",
                             (business,)).fetchone()["id"]  # type: ignore[index]
        product = c.execute("insert into public.products (business_id, category_id, name, price_cents, cost_cents) "
                            "values (%s, %s, 'Sourdough loaf', 650, 180) returning id", (business, category)).fetchone()["id"]  # type: ignore[index]
        c.execute("update public.storefront_settings set theme_colors = %s, logo_url = 'https://cdn.example.com/corner.png', "
                  "tagline = 'Baked at dawn' where business_id = %s",
                  (json.dumps({"primary": "#8B4513", "background": "#FFF8F0"}), business))
    status = rpc(dsn, owner, "select public.onboarding_status(%s)", (business,))
    say(f"onboarding: missing {status['missing']}")

    say("== 3. Operator: connect the payment account (PUT /admin/businesses/{id}/payment-account); owner publishes")
    check(http.put(f"/admin/businesses/{business}/payment-account", headers=op, json={"stripe_account_id": f"acct_local{suffix}"}))
    status = rpc(dsn, owner, "select public.onboarding_status(%s)", (business,))
    say(f"onboarding ready: {status['ready']}")
    with as_caller(dsn, owner) as c:
        c.execute("update public.storefront_settings set is_published = true where business_id = %s", (business,))
    say("storefront published")

    say("== 4. A guest finds the storefront, orders and pays")
    front = rpc(dsn, Claims.anon(), "select public.get_storefront(%s)", (created["subdomain"],))
    venue_id = front["venues"][0]["id"]
    say(f"{front['business']['name']} at {created['subdomain']}: venue {front['venues'][0]['name']}, open now: {front['venues'][0]['is_open_now']}")
    order = rpc(dsn, Claims.anon(), "select public.place_order(%s)", (json.dumps({
        "venue_id": venue_id, "channel": "web", "fulfilment": "pickup",
        "customer": {"name": "First Guest", "phone": "+15555550123", "email": "first.guest@example.test"},
        "items": [{"product_id": str(product), "quantity": 2}]}),))
    say(f"order #{order['order_number']}: {order['total_cents'] / 100:.2f} {order['currency']}")
    session = check(http.post("/checkout", json={"order_id": order["order_id"], "access_token": order["access_token"]}))
    if settings.payments_provider == "log":
        paid = check(http.post(f"/checkout/local/{session['session_id']}/pay"))
        say(f"paid on the local checkout page: {paid['outcome']}")
    else:
        say(f"pay at {session['url']} (Stripe test mode), then re-run the last step")

    say("== 5. Operator: the console and the platform metrics")
    listed = check(http.get("/admin/businesses", headers=op, params={"q": slug}))["businesses"]
    row = listed[0]
    say(f"{row['name']}: plan {row['plan_key']}, modules {row['modules']}, MRR {row['mrr_cents']}, "
        f"orders {row['orders_total']}, GMV {row['gmv_total_cents']}, live {row['storefront_published']}")
    metrics = check(http.get("/admin/metrics", headers=op))["metrics"]
    say(f"platform: {metrics['active_businesses']} active businesses, {metrics['live_storefronts']} live storefronts, "
        f"{metrics['orders_total']} paid orders, GMV {metrics['gmv_total_cents']}")
    return {"business_id": business, "slug": slug, "order": order, "business": row, "metrics": metrics,
            "owner_id": str(owner_id), "subdomain": created["subdomain"]}


def main(settings: Settings) -> int:
    try:
        httpx.get(f"{settings.functions_url}/health", timeout=3).raise_for_status()
    except httpx.HTTPError:
        print(f"Brigade is not answering at {settings.functions_url}: start it with `brigade up` first.", file=sys.stderr)
        return 2
    run(settings)
    return 0
