"""POST /functions/v1/twilio-sms (inbound messages) and /functions/v1/twilio-sms/status (delivery
reports), both signed by Twilio with X-Twilio-Signature over the exact public URL and the form.

Inbound STOP-type keywords revoke SMS marketing consent in the consent log (source `sms_stop`) and
suppress the number; START-type keywords grant it again (`sms_start`). Twilio's own Advanced Opt-Out
answers the sender, so the reply here is an empty TwiML document. Status reports move the message's
notification_log row forward only (sent -> delivered | failed); repeats and late ones change nothing.
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from psycopg_pool import AsyncConnectionPool
from twilio.request_validator import RequestValidator

from brigade import queries
from brigade.auth import Claims
from brigade.db import transaction_as
from brigade.errors import Forbidden, InvalidInput, wrap_exceptions
from brigade.settings import Settings
from functions.deps import get_pool, get_settings

log = logging.getLogger("brigade.functions.twilio_sms")
router = APIRouter(prefix="/twilio-sms")

STOP_WORDS = {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT", "REVOKE"}
START_WORDS = {"START", "UNSTOP", "YES", "OPTIN"}
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


async def verified_form(request: Request, settings: Settings) -> dict[str, str]:
    """The posted form, if Twilio signed it for the public URL we are reachable at; 403 otherwise."""
    if not settings.twilio_auth_token:
        raise Forbidden("Twilio is not configured here: no auth token to verify the signature", hint="bad_signature")
    form = {k: str(v) for k, v in (await request.form()).multi_items()}
    path = request.url.path.split("/functions/v1", 1)[-1]
    url = settings.functions_url + path + (f"?{request.url.query}" if request.url.query else "")
    signature = request.headers.get("x-twilio-signature", "")
    if not signature or not RequestValidator(settings.twilio_auth_token).validate(url, form, signature):
        raise Forbidden("X-Twilio-Signature does not match", hint="bad_signature")
    return form


@router.post("")
async def inbound(request: Request, pool: Annotated[AsyncConnectionPool, Depends(get_pool)],
                  settings: Annotated[Settings, Depends(get_settings)]) -> Response:
    form = await verified_form(request, settings)
    phone, word = form.get("From", ""), form.get("Body", "").strip().upper()
    if not phone:
        raise InvalidInput("From is missing", hint="invalid_input")
    opt_in = True if word in START_WORDS else False if word in STOP_WORDS else None
    if opt_in is not None:
        async with wrap_exceptions(), transaction_as(pool, Claims.service()) as conn:
            row = await (await conn.execute(queries.get("sms_opt"), {"phone": phone, "opt_in": opt_in})).fetchone()
        log.info("sms keyword", extra={"action": "sms_opt_in" if opt_in else "sms_opt_out", "customers": row["customers"] if row else 0})
    return Response(EMPTY_TWIML, media_type="application/xml")


@router.post("/status")
async def status(request: Request, pool: Annotated[AsyncConnectionPool, Depends(get_pool)],
                 settings: Annotated[Settings, Depends(get_settings)]) -> dict[str, int]:
    form = await verified_form(request, settings)
    sid, state = form.get("MessageSid", ""), form.get("MessageStatus", "")
    if not sid or not state:
        raise InvalidInput("MessageSid and MessageStatus are required", hint="invalid_input")
    async with wrap_exceptions(), transaction_as(pool, Claims.service()) as conn:
        row = await (await conn.execute(queries.get("record_delivery_status"), {"provider": "twilio", "message_id": sid, "status": state})).fetchone()
    return {"updated": row["updated"] if row else 0}
