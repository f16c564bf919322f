"""The refund and export functions forward the PIN re-auth proof to SQL: refused without it where the
business requires it, sent to (fake) Stripe / streamed with it."""

from __future__ import annotations

import json
from typing import Any

import httpx
import psycopg

from brigade import auth
from brigade.auth import Claims
from tests.conftest import Api
from tests.ordering_fixtures import Outside
from tests.ordering_kit import Menu, order_payload, session_completed

PIN = "583920"


def pin_required(api: Api, conn: psycopg.Connection[dict[str, Any]], menu: Menu, outside: Outside) -> tuple[dict[str, Any], dict[str, str]]:
    """A paid order at a business that requires the PIN, and its manager (with a PIN) as a bearer header."""
    b, manager = menu.tenant.business_id, menu.tenant.claims("manager")
    order = api.run(Claims.anon(), "select public.place_order(%s) as r", (json.dumps(order_payload(menu)),))[0]["r"]
    conn.execute("select app.apply_stripe_event(%s)", (json.dumps(session_completed(order, "cs_pin", "pi_pin")),))
    conn.execute("update public.businesses set require_pin_reauth = true where id = %s", (b,))
    api.run(manager, "select public.set_my_pin(%s, %s)", (b, PIN))
    return order, {"authorization": f"Bearer {auth.sign(manager, outside.settings.jwt_secret)}"}


def test_refund_forwards_the_pin_proof(api: Api, conn: psycopg.Connection[dict[str, Any]], menu: Menu, outside: Outside) -> None:
    b, manager = menu.tenant.business_id, menu.tenant.claims("manager")
    order, bearer = pin_required(api, conn, menu, outside)
    url = f"{outside.functions.url}/functions/v1/refund"
    body = {"order_id": order["order_id"], "amount_cents": 200}

    refused = httpx.post(url, json=body, headers=bearer)
    assert refused.status_code == 400 and refused.json()["code"] == "BR820", refused.text
    assert outside.stripe.server.calls("POST", r"/v1/refunds") == [], "nothing reached Stripe"

    proof = api.run(manager, "select public.verify_pin(%s, %s, 'till-2') as r", (b, PIN))[0]["r"]
    ok = httpx.post(url, json=body, headers={**bearer, "X-Brigade-Reauth": proof["grant_token"], "X-Brigade-Device": "till-2"})
    assert ok.status_code == 200 and ok.json()["status"] == "succeeded", ok.text
    assert len(outside.stripe.server.calls("POST", r"/v1/refunds")) == 1
    wrong_device = httpx.post(url, json=body, headers={**bearer, "X-Brigade-Reauth": proof["grant_token"], "X-Brigade-Device": "till-9"})
    assert wrong_device.status_code == 400 and wrong_device.json()["code"] == "BR820"


def test_the_customer_export_asks_for_a_fresh_pin(api: Api, conn: psycopg.Connection[dict[str, Any]], menu: Menu, outside: Outside) -> None:
    """Exporting customers is a sensitive action (issue 15) also as the CSV export (issue 14); the other types are not."""
    b, manager = menu.tenant.business_id, menu.tenant.claims("manager")
    _, bearer = pin_required(api, conn, menu, outside)
    url = f"{outside.functions.url}/functions/v1/export"
    customers = {"type": "customers", "business_id": str(b)}

    refused = httpx.get(url, params=customers, headers=bearer)
    assert refused.status_code == 400 and refused.json()["code"] == "BR820", refused.text
    assert httpx.get(url, params={**customers, "type": "orders"}, headers=bearer).status_code == 200
    proof = api.run(manager, "select public.verify_pin(%s, %s, 'office') as r", (b, PIN))[0]["r"]
    ok = httpx.get(url, params=customers, headers={**bearer, "X-Brigade-Reauth": proof["grant_token"], "X-Brigade-Device": "office"})
    assert ok.status_code == 200 and "ada@example.test" in ok.text, ok.text
    used = conn.execute("select count(*) as n from public.audit_log where business_id = %s and action = 'reauth.used' "
                        "and details->>'action' = 'export_customers'", (b,)).fetchone()
    assert used == {"n": 1}
