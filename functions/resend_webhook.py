"""POST /functions/v1/resend-webhook: Resend's email events, signed with svix headers (svix-id,
svix-timestamp, svix-signature: HMAC-SHA256 of "id.timestamp.body" with the base64 secret after
`whsec_`, 5-minute tolerance). Delivered moves the email's notification forward; a bounce or a spam
complaint suppresses the address for the business that sent it. Repeats change nothing."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from psycopg_pool import AsyncConnectionPool

from brigade import queries
from brigade.auth import Claims
from brigade.db import transaction_as
from brigade.errors import Forbidden, InvalidInput, wrap_exceptions
from brigade.settings import Settings
from functions.deps import get_pool, get_settings

router = APIRouter()
TOLERANCE_SECONDS = 300


def svix_signature(secret: str, msg_id: str, timestamp: str, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def verify(settings: Settings, headers: Any, body: bytes, now: float | None = None) -> dict[str, Any]:
    if not settings.resend_webhook_secret:
        raise Forbidden("Resend webhooks are not configured here: no signing secret", hint="bad_signature")
    msg_id, stamp, given = headers.get("svix-id", ""), headers.get("svix-timestamp", ""), headers.get("svix-signature", "")
    if not (msg_id and stamp.isdigit() and given):
        raise Forbidden("svix-id, svix-timestamp and svix-signature are required", hint="bad_signature")
    if abs((now or time.time()) - int(stamp)) > TOLERANCE_SECONDS:
        raise Forbidden("the signature's timestamp is outside the 5-minute tolerance", hint="bad_signature")
    expected = svix_signature(settings.resend_webhook_secret, msg_id, stamp, body)
    if not any(hmac.compare_digest(expected, part) for part in given.split()):
        raise Forbidden("svix-signature does not match", hint="bad_signature")
    try:
        event = json.loads(body)
    except ValueError as exc:
        raise InvalidInput("body is not JSON", hint="invalid_body") from exc
    if not isinstance(event, dict) or not isinstance(event.get("data"), dict) or not isinstance(event.get("type"), str):
        raise InvalidInput("not a Resend event", hint="invalid_event")
    return event


@router.post("/resend-webhook")
async def resend_webhook(request: Request, pool: Annotated[AsyncConnectionPool, Depends(get_pool)],
                         settings: Annotated[Settings, Depends(get_settings)]) -> dict[str, Any]:
    event = verify(settings, request.headers, await request.body())
    email_id = event["data"].get("email_id")
    if not isinstance(email_id, str) or not email_id:
        raise InvalidInput("data.email_id is missing", hint="invalid_event")
    async with wrap_exceptions(), transaction_as(pool, Claims.service()) as conn:
        row = await (await conn.execute(queries.get("record_email_event"), {"message_id": email_id, "type": event["type"]})).fetchone()
    return {"type": event["type"], "updated": row["updated"] if row else 0}
