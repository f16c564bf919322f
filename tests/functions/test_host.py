"""The functions host over HTTP: health, JWT verification, JSON errors, the admin function and the
module gate every function applies."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
from fastapi import APIRouter

from brigade import auth
from brigade.auth import Claims
from brigade.settings import Settings
from functions.app import create_app
from functions.deps import module_gate
from tests.conftest import Factory, ServerThread, Tenant


def bearer(settings: Settings, claims: Claims) -> dict[str, str]:
    return {"authorization": f"Bearer {auth.sign(claims, settings.jwt_secret)}"}


@pytest.fixture
def tenant(factory: Factory) -> Tenant:
    return factory.tenant("Echo Espresso", {"ordering": True})


@pytest.fixture
def gated_server(settings: Settings) -> Iterator[ServerThread]:
    """The app with one extra function gated on the crm module, the way every module's function is."""
    router = APIRouter(prefix="/crm-example")

    @router.get("/{business_id}/ping", dependencies=[module_gate("crm")])
    async def ping(business_id: uuid.UUID) -> dict[str, Any]:
        return {"pong": str(business_id)}

    with ServerThread(create_app(settings, extra_routers=[router])) as server:
        yield server


def test_health_checks_the_database(functions_server: ServerThread) -> None:
    r = httpx.get(f"{functions_server.url}/functions/v1/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok" and body["database"] == "up"
    assert body["outbox"]["ready"] == 0
    assert r.headers["x-request-id"]


def test_health_reports_a_dead_database(settings: Settings) -> None:
    broken = settings.model_copy(update={"database_url": "postgresql://postgres@127.0.0.1:1/none?connect_timeout=1",
                                      "health_timeout": 0.3})
    with ServerThread(create_app(broken)) as server:
        r = httpx.get(f"{server.url}/functions/v1/health", timeout=20)
    assert r.status_code == 503 and r.json()["database"] == "down"


def test_request_id_is_echoed(functions_server: ServerThread) -> None:
    r = httpx.get(f"{functions_server.url}/functions/v1/health", headers={"x-request-id": "req-123"})
    assert r.headers["x-request-id"] == "req-123"


@pytest.mark.parametrize(("headers", "status", "error"), [
    ({}, 401, "missing_token"),
    ({"authorization": "Bearer nonsense"}, 401, "invalid_token"),
    ({"authorization": "Basic abc"}, 401, "missing_token"),
])
def test_admin_needs_a_valid_token(functions_server: ServerThread, headers: dict[str, str], status: int, error: str) -> None:
    r = httpx.get(f"{functions_server.url}/functions/v1/admin/events/dead", headers=headers)
    assert r.status_code == status and r.json()["error"] == error


def test_admin_refuses_members_and_forged_operator_claims(functions_server: ServerThread, settings: Settings, tenant: Tenant) -> None:
    url = f"{functions_server.url}/functions/v1/admin/businesses/{tenant.business_id}/modules/crm"
    r = httpx.put(url, json={"enabled": True}, headers=bearer(settings, tenant.claims("owner")))
    assert r.status_code == 403 and r.json()["error"] == "operator_only"
    forged = Claims.user(tenant.users["owner"], email="o@x.test")
    forged.user_metadata = {"app_role": "platform_admin"}  # users can write user_metadata; it grants nothing
    r = httpx.put(url, json={"enabled": True}, headers=bearer(settings, forged))
    assert r.status_code == 403
    other_secret = {"authorization": f"Bearer {auth.sign(Claims.user(uuid.uuid4(), app_role='platform_admin'), 'x' * 40)}"}
    assert httpx.put(url, json={"enabled": True}, headers=other_secret).status_code == 401


def test_operator_toggles_a_module_and_its_functions_follow(
    gated_server: ServerThread, settings: Settings, tenant: Tenant, operator: Claims, conn: psycopg.Connection[dict[str, Any]]
) -> None:
    ping = f"{gated_server.url}/functions/v1/crm-example/{tenant.business_id}/ping"
    switch = f"{gated_server.url}/functions/v1/admin/businesses/{tenant.business_id}/modules/crm"
    op = bearer(settings, operator)

    r = httpx.get(ping)
    assert r.status_code == 403 and r.json() | {"request_id": None} == {
        "error": "module_disabled", "code": "PT403", "message": "module crm is disabled for this business", "request_id": None}

    r = httpx.put(switch, json={"enabled": True}, headers=op)
    assert r.status_code == 200, r.text
    assert r.json()["modules"]["crm"] is True and r.json()["changed"] is True
    assert httpx.get(ping).json() == {"pong": str(tenant.business_id)}

    r = httpx.put(switch, json={"enabled": False}, headers=op)
    assert r.status_code == 200 and r.json()["modules"]["crm"] is False
    assert httpx.get(ping).status_code == 403

    audit = conn.execute("select action from public.audit_log where business_id = %s order by id", (tenant.business_id,)).fetchall()
    assert [a["action"] for a in audit] == ["module.enabled", "module.disabled"]
    modules = httpx.get(f"{gated_server.url}/functions/v1/admin/businesses/{tenant.business_id}/modules", headers=op).json()
    assert modules["modules"]["crm"] is False and modules["modules"]["ordering"] is True


@pytest.mark.parametrize(("path", "body", "status"), [
    ("/admin/businesses/not-a-uuid/modules/crm", {"enabled": True}, 400),
    ("/admin/businesses/{bid}/modules/crm", {"enabled": "sometimes"}, 400),
    ("/admin/businesses/{bid}/modules/crm", {"enabled": True, "extra": 1}, 400),
    ("/admin/businesses/{bid}/modules/teleport", {"enabled": True}, 400),
    ("/admin/businesses/{bid}/modules/DROP TABLE", {"enabled": True}, 400),
    ("/admin/businesses/00000000-0000-4000-8000-00000000dead/modules/crm", {"enabled": True}, 404),
    ("/admin/no-such-thing", {}, 404),
])
def test_bad_input_gets_a_json_4xx_and_changes_nothing(
    functions_server: ServerThread, settings: Settings, tenant: Tenant, operator: Claims,
    conn: psycopg.Connection[dict[str, Any]], path: str, body: dict[str, Any], status: int
) -> None:
    before = conn.execute("select modules_json from public.businesses where id = %s", (tenant.business_id,)).fetchone()
    url = f"{functions_server.url}/functions/v1{path.format(bid=tenant.business_id)}"
    r = httpx.put(url, json=body, headers=bearer(settings, operator))
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json") and r.json()["error"]
    after = conn.execute("select modules_json from public.businesses where id = %s", (tenant.business_id,)).fetchone()
    assert before == after
    assert conn.execute("select count(*) as n from public.audit_log").fetchone() == {"n": 0}


def test_malformed_json_body_is_a_400(functions_server: ServerThread, settings: Settings, tenant: Tenant, operator: Claims) -> None:
    r = httpx.put(f"{functions_server.url}/functions/v1/admin/businesses/{tenant.business_id}/modules/crm",
                  content=b"{not json", headers={**bearer(settings, operator), "content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_input"


def test_dead_events_listed_and_replayed_over_http(
    functions_server: ServerThread, settings: Settings, operator: Claims, conn: psycopg.Connection[dict[str, Any]]
) -> None:
    msg = conn.execute("select app.emit('test.fail', null, '{\"k\": 1}') as id").fetchone()
    assert msg is not None
    conn.execute("select app.bury_event(%s, 'RuntimeError: boom')", (msg["id"],))
    op = bearer(settings, operator)
    dead = httpx.get(f"{functions_server.url}/functions/v1/admin/events/dead", headers=op).json()["dead_events"]
    assert [(d["topic"], d["error"]) for d in dead] == [("test.fail", "RuntimeError: boom")]
    r = httpx.post(f"{functions_server.url}/functions/v1/admin/events/dead/{dead[0]['dead_id']}/replay", headers=op)
    assert r.status_code == 200 and r.json()["msg_id"] > msg["id"]
    assert httpx.post(f"{functions_server.url}/functions/v1/admin/events/dead/{dead[0]['dead_id']}/replay", headers=op).status_code == 404
    workers = httpx.get(f"{functions_server.url}/functions/v1/admin/workers", headers=op).json()
    assert workers["outbox"]["ready"] == 1 and workers["workers"] == []
