"""The public edge over HTTP (issue 22): rate limits shared by two function copies (one of them its own
OS process) with 429 + Retry-After, and CORS for storefronts and dashboards."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from brigade import auth
from brigade.auth import Claims
from brigade.settings import PROJECT_ROOT, Settings
from brigade.stripe_events import booking_session_completed
from tests.bookings_kit import build_activity, hold
from tests.clock import clock_env
from tests.conftest import Api, Factory
from tests.ordering_fixtures import Outside
from tests.ordering_kit import Menu, order_payload, session_completed, signed

Conn = psycopg.Connection[dict[str, Any]]


class FunctionsProcess:
    """`uvicorn functions.app:create_app` as its own OS process on a socket bound (and listening) here,
    so requests queue in the kernel until it accepts them: nothing waits for it to start."""

    def __init__(self, settings: Settings) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.set_inheritable(True)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        env = {**os.environ, "BRIGADE_DATABASE_URL": settings.dsn, "PYTHONPATH": str(PROJECT_ROOT), **clock_env()}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "functions.app:create_app", "--factory", "--fd", str(self.sock.fileno()),
             "--log-level", "warning"], cwd=PROJECT_ROOT, env=env, pass_fds=[self.sock.fileno()],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def close(self) -> None:
        self.proc.terminate()
        self.proc.communicate(timeout=20)
        self.sock.close()


@pytest.fixture
def second_copy(outside: Outside) -> Iterator[FunctionsProcess]:
    proc = FunctionsProcess(outside.settings)
    yield proc
    proc.close()


def test_a_limit_is_shared_by_two_function_copies_and_answers_429_with_retry_after(
        conn: Conn, outside: Outside, second_copy: FunctionsProcess) -> None:
    conn.execute("select app.define_rate_limit('consent', 'ip', 600, 3)")
    copies = [f"{outside.functions.url}/functions/v1/consent/confirm", f"{second_copy.url}/functions/v1/consent/confirm"]

    def confirm(copy: int, ip: str) -> httpx.Response:
        return httpx.get(copies[copy], params={"token": "f" * 48}, headers={"x-forwarded-for": ip}, timeout=30)

    # three guesses of a token from one IP, spread over both copies: each counted (a wrong token is a 400)
    assert [confirm(n, "203.0.113.9").status_code for n in (0, 1, 0)] == [400, 400, 400]
    for copy in (1, 0):
        r = confirm(copy, "203.0.113.9")
        assert r.status_code == 429, r.text
        body = r.json()
        assert body["error"] == "rate_limited" and body["code"] == "PT429" and body["request_id"]
        assert 0 < int(r.headers["retry-after"]) <= 600 and body["retry_after"] == int(r.headers["retry-after"])
    assert confirm(1, "198.51.100.4").status_code == 400, "another client is not limited"
    refused = conn.execute("select refused from app.rate_limit_metrics() where action = 'consent' and scope = 'ip'").fetchone()
    assert refused == {"refused": 2}
    # the window slides: once the hits are older than it, the client is heard again
    conn.execute("update app.rate_limit_hits set at = at - interval '600 seconds' where action = 'consent'")
    assert confirm(1, "203.0.113.9").status_code == 400


def test_cors_for_storefronts_and_dashboards(api: Api, conn: Conn, factory: Factory, menu: Menu, outside: Outside) -> None:
    t = factory.tenant("Cors Cafe")
    conn.execute("update public.business_subscriptions set plan_key = 'growth' where business_id = %s", (t.business_id,))
    conn.execute("update public.storefront_settings set custom_domain = 'order.corscafe.example' where business_id = %s", (t.business_id,))
    subdomain = conn.execute("select subdomain from public.storefront_settings where business_id = %s", (t.business_id,)).fetchone()
    assert subdomain is not None
    base = f"{outside.functions.url}/functions/v1"
    storefront, custom = f"https://{subdomain['subdomain']}.{outside.settings.storefront_domain}", "https://order.corscafe.example"
    dashboard = sorted(outside.settings.dashboard_origins)[0]

    def preflight(path: str, origin: str) -> httpx.Response:
        return httpx.options(f"{base}/{path}", headers={"origin": origin, "access-control-request-method": "POST",
                                                         "access-control-request-headers": "authorization, content-type"})

    for origin in (storefront, custom, dashboard):
        r = preflight("checkout", origin)
        assert r.status_code == 204, (origin, r.text)
        assert r.headers["access-control-allow-origin"] == origin and r.headers["vary"] == "Origin"
        assert "POST" in r.headers["access-control-allow-methods"] and "authorization" in r.headers["access-control-allow-headers"]
        assert r.headers["access-control-allow-credentials"] == "true"
    # a storefront may not drive the merchant functions; the dashboard may
    assert preflight("refund", storefront).status_code == 403
    assert preflight("refund", dashboard).headers["access-control-allow-origin"] == dashboard
    # the functions of issues 14 and 17: receipts for the storefront's success page; ask, exports and the
    # report for dashboards only, which may send the staff PIN proof (issue 15) with refunds and exports
    assert preflight("receipt", storefront).headers["access-control-allow-origin"] == storefront
    for path in ("ask", "export", "report.pdf"):
        assert preflight(path, storefront).status_code == 403, path
        assert preflight(path, dashboard).headers["access-control-allow-origin"] == dashboard, path
    allowed = {h.strip() for h in preflight("export", dashboard).headers["access-control-allow-headers"].split(",")}
    assert {"x-brigade-reauth", "x-brigade-device"} <= allowed
    assert "access-control-allow-origin" not in preflight("metrics", dashboard).headers, "Prometheus scrapes; browsers do not"
    # refused origins: an unknown site, a storefront over plain http, a lookalike of the platform domain
    for origin in ("https://evil.example", f"http://{subdomain['subdomain']}.{outside.settings.storefront_domain}",
                   f"https://{subdomain['subdomain']}.{outside.settings.storefront_domain}.evil.example"):
        r = preflight("checkout", origin)
        assert r.status_code == 403 and "access-control-allow-origin" not in r.headers, origin

    # actual requests: the allowed origin can read the answer (even an error), the refused one cannot
    bad = {"order_id": "00000000-0000-4000-8000-000000000000"}
    ok = httpx.post(f"{base}/checkout", json=bad, headers={"origin": custom})
    assert ok.status_code == 404 and ok.headers["access-control-allow-origin"] == custom
    assert "retry-after" in ok.headers["access-control-expose-headers"]
    no = httpx.post(f"{base}/checkout", json=bad, headers={"origin": "https://evil.example"})
    assert no.status_code == 404 and "access-control-allow-origin" not in no.headers
    # a storefront's page may only pay for its own business: another business's order is refused (readably)
    theirs = api.run(Claims.anon(), "select public.place_order(%s) as r", (json.dumps(order_payload(menu)),))[0]["r"]
    cross = httpx.post(f"{base}/checkout", json={"order_id": theirs["order_id"], "access_token": theirs["access_token"]},
                       headers={"origin": custom})
    assert cross.status_code == 403 and cross.json()["error"] == "origin_not_allowed"
    assert cross.headers["access-control-allow-origin"] == custom and outside.stripe.sessions() == []
    # a suspended business's storefront is not trusted
    gone = factory.tenant("Gone Cafe")
    conn.execute("update public.businesses set status = 'suspended' where id = %s", (gone.business_id,))
    gone_sub = conn.execute("select subdomain from public.storefront_settings where business_id = %s", (gone.business_id,)).fetchone()
    assert gone_sub is not None
    assert preflight("checkout", f"https://{gone_sub['subdomain']}.{outside.settings.storefront_domain}").status_code == 403
    # webhooks never answer CORS, whatever the origin
    hook = httpx.options(f"{base}/stripe-webhook", headers={"origin": dashboard, "access-control-request-method": "POST"})
    assert "access-control-allow-origin" not in hook.headers and hook.status_code == 405


def test_verify_checkout_session_before_and_after_the_webhook_ends_in_the_same_state_once(
        api: Api, conn: Conn, menu: Menu, outside: Outside) -> None:
    base = f"{outside.functions.url}/functions/v1"

    def verify(order: dict[str, Any], token: str | None = None) -> httpx.Response:
        return httpx.post(f"{base}/verify-checkout-session", json={"order_id": order["order_id"],
                                                                  "access_token": token or order["access_token"]}, timeout=30)

    def webhook(order: dict[str, Any], session_id: str, pi: str) -> str:
        raw, headers = signed(session_completed(order, session_id, pi), outside.settings.stripe_webhook_secret)
        return httpx.post(f"{base}/stripe-webhook", content=raw, headers=headers).json()["outcome"]

    def state(order: dict[str, Any]) -> dict[str, Any]:
        row = conn.execute(
            "select o.payment_status::text as paid, o.status::text as status, "
            "(select count(*) from public.payments p where p.order_id = o.id) as payments, "
            "(select count(*) from public.order_status_history h where h.order_id = o.id) as transitions, "
            "(select sum(s.total_orders) from public.customer_venue_stats s where s.customer_id = o.customer_id) as counted "
            "from public.orders o where o.id = %s", (order["order_id"],)).fetchone()
        assert row is not None
        return row

    results: list[dict[str, Any]] = []
    for n, webhook_first in enumerate((False, True)):
        order = api.run(Claims.anon(), "select public.place_order(%s) as r",
                        (json.dumps(order_payload(menu, customer={"name": f"Guest {n}", "phone": f"+1212555020{n}"})),))[0]["r"]
        session_id = httpx.post(f"{base}/checkout", json={"order_id": order["order_id"], "access_token": order["access_token"]}
                                ).json()["session_id"]
        asked = len(outside.stripe.retrieved())
        before = verify(order).json()
        assert before["payment_status"] == "unpaid" and before["paid"] is False and before["reconciled"] is None
        assert len(outside.stripe.retrieved()) == asked + 1, "unpaid in the database: Stripe is asked once"
        assert verify(order, "00000000-0000-4000-8000-000000000000").status_code == 404
        outside.stripe.pay(session_id, f"pi_verify_{n}")
        if webhook_first:
            assert webhook(order, session_id, f"pi_verify_{n}") == "paid"
        after = verify(order).json()
        assert after["paid"] is True and after["order"]["payment_status"] == "paid"
        assert after["reconciled"] == (None if webhook_first else "paid")
        if not webhook_first:  # the webhook arrives after the page reconciled: nothing more happens
            assert webhook(order, session_id, f"pi_verify_{n}") != "paid"
        asked = len(outside.stripe.retrieved())
        assert verify(order).json()["paid"] is True and len(outside.stripe.retrieved()) == asked, "paid: Stripe is not asked"
        results.append(state(order))
    assert results[0] == results[1] == {"paid": "paid", "status": results[0]["status"], "payments": 1,
                                        "transitions": results[0]["transitions"], "counted": 1}


def test_refund_function_follows_the_custom_role_and_audits_the_refusal(api: Api, conn: Conn, menu: Menu, outside: Outside) -> None:
    t, base = menu.tenant, f"{outside.functions.url}/functions/v1"
    order = api.run(Claims.anon(), "select public.place_order(%s) as r", (json.dumps(order_payload(menu)),))[0]["r"]
    raw, headers = signed(session_completed(order, "cs_role", "pi_role"), outside.settings.stripe_webhook_secret)
    assert httpx.post(f"{base}/stripe-webhook", content=raw, headers=headers).json()["outcome"] == "paid"

    def refund(amount: int) -> httpx.Response:
        token = auth.sign(t.claims("staff"), outside.settings.jwt_secret)
        return httpx.post(f"{base}/refund", json={"order_id": order["order_id"], "amount_cents": amount},
                          headers={"authorization": f"Bearer {token}"}, timeout=30)

    r = refund(100)
    assert r.status_code == 403 and r.json()["error"] == "permission_denied" and r.json()["code"] == "42501", r.text
    assert outside.stripe.server.calls("POST", r"/v1/refunds") == []
    audit = conn.execute("select actor_user_id, details from public.audit_log where business_id = %s and action = 'permission.denied'",
                         (t.business_id,)).fetchall()
    assert [(a["actor_user_id"], a["details"]["permission"], a["details"]["order_id"]) for a in audit] == [
        (t.users["staff"], "refund", order["order_id"])]
    role = conn.execute("insert into public.business_roles (business_id, name, permissions) values (%s, 'Refunder', '{refund}') "
                        "returning id", (t.business_id,)).fetchone()
    assert role is not None
    conn.execute("update public.memberships set custom_role_id = %s where business_id = %s and user_id = %s",
                 (role["id"], t.business_id, t.users["staff"]))
    ok = refund(100)
    assert ok.status_code == 200 and ok.json()["amount_cents"] == 100, ok.text
    assert len(outside.stripe.server.calls("POST", r"/v1/refunds")) == 1


def test_the_operator_reads_and_changes_rate_limits(conn: Conn, outside: Outside, operator: Claims) -> None:
    base = f"{outside.functions.url}/functions/v1/admin/rate-limits"
    headers = {"authorization": f"Bearer {auth.sign(operator, outside.settings.jwt_secret)}"}
    listed = httpx.get(base, headers=headers).json()["rate_limits"]
    assert {(r["action"], r["scope"]) for r in listed} >= {("place_order", "ip"), ("checkout", "ip"), ("consent", "ip")}
    assert httpx.put(f"{base}/consent/ip", json={"window_seconds": 60, "max_hits": 1}, headers=headers).status_code == 200
    assert conn.execute("select window_seconds, max_hits from app.rate_limits where action = 'consent' and scope = 'ip'").fetchone() == {
        "window_seconds": 60, "max_hits": 1}
    assert httpx.put(f"{base}/nothing/ip", json={"window_seconds": 60, "max_hits": 1}, headers=headers).status_code == 404
    assert httpx.put(f"{base}/consent/ip", json={"window_seconds": 0, "max_hits": 1}, headers=headers).status_code == 400
    merchant = {"authorization": f"Bearer {auth.sign(Claims.user(conn.execute('select gen_random_uuid() as u').fetchone()['u']), outside.settings.jwt_secret)}"}  # type: ignore[index]
    assert httpx.get(base, headers=merchant).status_code == 403


def test_verify_checkout_session_reconciles_a_booking_once(api: Api, conn: Conn, menu: Menu, outside: Outside) -> None:
    act = build_activity(conn, menu.tenant)
    b = hold(api, act, party={"adult": 2})
    base = f"{outside.functions.url}/functions/v1"
    body = {"booking_id": b["booking_id"], "access_token": b["access_token"]}
    session_id = httpx.post(f"{base}/checkout", json=body, timeout=30).json()["session_id"]
    outside.stripe.pay(session_id, "pi_booking_verify")
    first = httpx.post(f"{base}/verify-checkout-session", json=body, timeout=30).json()
    assert first["kind"] == "booking" and first["paid"] is True and first["reconciled"] == "paid"
    assert first["booking"]["status"] == "confirmed"
    again = httpx.post(f"{base}/verify-checkout-session", json=body, timeout=30).json()
    assert again["reconciled"] is None and again["booking"]["status"] == "confirmed"
    # the webhook for the same session arrives late: nothing more is applied, no second payment
    event = booking_session_completed(session_id=session_id, payment_intent="pi_booking_verify", booking_id=b["booking_id"],
                                      business_id=str(menu.tenant.business_id), amount_cents=b["total_cents"])
    raw, headers = signed(event, outside.settings.stripe_webhook_secret)
    assert httpx.post(f"{base}/stripe-webhook", content=raw, headers=headers).json()["outcome"] != "paid"
    assert conn.execute("select count(*) as n from public.payments where booking_id = %s", (b["booking_id"],)).fetchone() == {"n": 1}
    assert conn.execute("select count(*) as n from public.refunds where booking_id = %s", (b["booking_id"],)).fetchone() == {"n": 0}
