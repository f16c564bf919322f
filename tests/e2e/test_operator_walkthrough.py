"""The operator walkthrough (docs/operator-walkthrough.md, `brigade operator-demo`) against the real
functions app over HTTP: a new business from nothing to a live storefront that takes a paid order,
seen in the console and the platform metrics, every operator action in the audit log."""

from __future__ import annotations

from typing import Any

import httpx
import psycopg

from brigade import auth, operator_demo
from brigade.settings import Settings
from tests.conftest import ServerThread


def test_from_nothing_to_a_paid_order_on_a_live_storefront(settings: Settings, functions_server: ServerThread,
                                                            conn: psycopg.Connection[dict[str, Any]]) -> None:
    before = conn.execute("select count(*) as n from public.businesses").fetchone()
    lines: list[str] = []
    out = operator_demo.run(settings, f"{functions_server.url}/functions/v1", say=lines.append)
    b = out["business_id"]

    order = conn.execute("select payment_status, status from public.orders where id = %s", (out["order"]["order_id"],)).fetchone()
    assert order == {"payment_status": "paid", "status": "placed"}
    assert conn.execute("select is_published from public.storefront_settings where business_id = %s", (b,)).fetchone() == {"is_published": True}
    assert conn.execute("select role from public.memberships where business_id = %s and user_id = %s", (b, out["owner_id"])).fetchone() == {"role": "owner"}
    assert conn.execute("select count(*) as n from public.platform_fees where order_id = %s", (out["order"]["order_id"],)).fetchone() == {"n": 1}

    row = out["business"]
    assert (row["plan_key"], row["modules"], row["orders_total"], row["gmv_total_cents"], row["storefront_published"]) == (
        "growth", ["ordering", "crm"], 1, out["order"]["total_cents"], True)
    assert row["monthly_total_cents"] == 7900 + 3900 and row["mrr_cents"] == 0  # still in its trial
    metrics = out["metrics"]
    assert metrics["active_businesses"] == before["n"] + 1 and metrics["live_storefronts"] >= 1  # type: ignore[index]
    assert metrics["orders_total"] >= 1 and metrics["gmv_total_cents"] >= out["order"]["total_cents"]

    actions = [r["action"] for r in conn.execute("select action from public.audit_log where business_id = %s and actor_role = 'platform_admin' "
                                                 "order by id", (b,))]
    assert actions == ["business.created", "member.invited", "business.payment_account_set"]
    assert any("onboarding ready: True" in line for line in lines)

    # the console: suspend (storefront gone, audited), reinstate
    op = {"authorization": f"Bearer {auth.sign(operator_demo.OPERATOR, settings.jwt_secret)}"}
    base = f"{functions_server.url}/functions/v1/admin"
    assert httpx.post(f"{base}/businesses/{b}/suspend", json={"reason": "chargebacks"}, headers=op).json()["changed"] is True
    assert httpx.get(f"{base}/businesses", params={"q": out["slug"]}, headers=op).json()["businesses"][0]["status"] == "suspended"
    detail = httpx.get(f"{base}/businesses/{b}", headers=op).json()
    assert detail["audit"][0]["action"] == "business.suspended" and detail["onboarding"]["ready"] is True
    assert httpx.post(f"{base}/businesses/{b}/reinstate", json={}, headers=op).json()["changed"] is True
    assert httpx.put(f"{base}/businesses/{b}/plan", json={"plan": "professional"}, headers=op).json()["plan_key"] == "professional"
    csv = httpx.get(f"{base}/payouts.csv", headers=op)
    assert csv.status_code == 200 and csv.text.startswith("business_id,business_name,")
    run = httpx.post(f"{base}/payouts", json={"period_start": "2000-01-01T00:00:00Z", "period_end": "2000-02-01T00:00:00Z"}, headers=op)
    assert run.status_code == 200 and run.json()["payouts"] == []

    # not the operator: 403; bad input: 400, never 500
    owner = {"authorization": f"Bearer {auth.sign(auth.Claims.user(out['owner_id']), settings.jwt_secret)}"}
    assert httpx.get(f"{base}/metrics", headers=owner).status_code == 403
    assert httpx.post(f"{base}/businesses", json={"name": "x", "slug": "Not A Slug"}, headers=op).status_code == 400
    assert httpx.post(f"{base}/businesses", json={"name": "Dup", "slug": out["slug"]}, headers=op).json()["code"] == "BR730"
    assert httpx.put(f"{base}/businesses/{b}/payment-account", json={"stripe_account_id": "nope"}, headers=op).status_code == 400
    assert httpx.put(f"{base}/businesses/{b}/subscription-status", json={"status": "trial"}, headers=op).status_code == 200
    assert httpx.put(f"{base}/businesses/{b}/subscription-status", json={"status": "active"}, headers=op).status_code == 200
    assert httpx.put(f"{base}/businesses/{b}/subscription-status", json={"status": "trial"}, headers=op).json()["code"] == "BR705"
