"""The worker sends issue 9's messages once: the staff invitation email (with its link) and the
order-claim code; the billing period job closes due periods."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import psycopg

from brigade.auth import Claims
from brigade.settings import Settings
from tests.conftest import Api, Factory, Tenant
from worker import main as worker_main


def drain(settings: Settings) -> None:
    asyncio.run(worker_main.run(settings, drain=True))


def outbox(settings: Settings) -> list[dict[str, Any]]:
    return [json.loads(line) for line in settings.outbox_file.read_text().splitlines()] if settings.outbox_file.exists() else []


def test_invitation_and_claim_code_are_sent_once(api: Api, conn: psycopg.Connection[dict[str, Any]], factory: Factory,
                                                 tenant: Tenant, settings: Settings) -> None:
    inv = api.run(tenant.claims("owner"), "select public.invite_member(%s, 'new.hire@example.test', 'staff') as r", (tenant.business_id,))[0]["r"]
    user = factory.user("claimer@example.test")
    claim = api.run(Claims.user(user, email="claimer@example.test"), "select public.request_order_claim(%s, 'sms', '+1 212 555 0133') as r",
                    (tenant.business_id,))[0]["r"]
    drain(settings)
    drain(settings)  # nothing left, nothing re-sent
    sent = outbox(settings)
    emails = [m for m in sent if m.get("to") == "new.hire@example.test"]
    assert len(emails) == 1 and inv["token"] in json.dumps(emails[0])
    texts = [m for m in sent if m.get("to") == "+12125550133"]
    assert len(texts) == 1
    code = re.search(r"code to link your past orders is (\d{6})", json.dumps(texts[0]))
    assert code is not None
    answer = api.run(Claims.user(user, email="claimer@example.test"), "select public.verify_order_claim(%s, %s) as r",
                     (claim["claim_id"], code.group(1)))[0]["r"]
    assert answer["verified"] is True, "the texted code is the one that verifies"
    rows = conn.execute("select template, status, provider from public.notification_log where business_id = %s order by template",
                        (tenant.business_id,)).fetchall()
    assert rows == [{"template": "order_claim_code", "status": "sent", "provider": "log"},
                    {"template": "staff_invitation", "status": "sent", "provider": "log"}]
    assert claim["channel"] == "sms"
