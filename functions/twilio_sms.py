"""POST /functions/v1/twilio-sms (inbound messages) and /functions/v1/twilio-sms/status (delivery
reports), both signed by Twilio with X-Twilio-Signature over the exact public URL and the form.

Inbound STOP-type keywords revoke SMS marketing consent in the consent log (source `sms_stop`) and
suppress the number; START-type keywords grant it again (`sms_start`) — per sender: a keyword to a
business's own number (or Messaging Service) applies to that business, one to the platform number to
the businesses texting from it. Twilio's own Advanced Opt-Out
answers the sender, so the reply here is an empty TwiML document. Status reports move the message's
notification_log row forward only (sent -> delivered | failed); repeats and late ones change nothing.
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from psycopg_pool import AsyncConnectionPool

from brigade import queries
from brigade.auth import Claims
from brigade.db import transaction_as
from brigade.errors import InvalidInput, wrap_exceptions
from functions.deps import get_pool
from functions.twilio_auth import twilio_params

log = logging.getLogger("brigade.functions.twilio_sms")
router = APIRouter(prefix="/twilio-sms")

STOP_WORDS = {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT", "REVOKE"}
START_WORDS = {"START", "UNSTOP", "YES", "OPTIN"}
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


@router.post("")
async def inbound(form: Annotated[dict[str, str], Depends(twilio_params)],
                  pool: Annotated[AsyncConnectionPool, Depends(get_pool)]) -> Response:
    phone, word = form.get("From", ""), form.get("Body", "").strip().upper()
    if not phone:
        raise InvalidInput("From is missing", hint="invalid_input")
    opt_in = True if word in START_WORDS else False if word in STOP_WORDS else None
    if opt_in is not None:
        async with wrap_exceptions(), transaction_as(pool, Claims.service()) as conn:
            row = await (await conn.execute(queries.get("sms_opt"), {
                "phone": phone, "opt_in": opt_in, "to": form.get("To") or None,
                "service": form.get("MessagingServiceSid") or None})).fetchone()
        log.info("sms keyword", extra={"action": "sms_opt_in" if opt_in else "sms_opt_out", "customers": row["customers"] if row else 0})
    return Response(EMPTY_TWIML, media_type="application/xml")


@router.post("/status")
async def status(form: Annotated[dict[str, str], Depends(twilio_params)],
                 pool: Annotated[AsyncConnectionPool, Depends(get_pool)]) -> dict[str, int]:
    sid, state = form.get("MessageSid", ""), form.get("MessageStatus", "")
    if not sid or not state:
        raise InvalidInput("MessageSid and MessageStatus are required", hint="invalid_input")
    async with wrap_exceptions(), transaction_as(pool, Claims.service()) as conn:
        row = await (await conn.execute(queries.get("record_delivery_status"), {"provider": "twilio", "message_id": sid, "status": state})).fetchone()
    return {"updated": row["updated"] if row else 0}
