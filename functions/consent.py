"""GET /functions/v1/consent/confirm?token=… (double opt-in) and
GET /functions/v1/consent/unsubscribe?b=…&c=…&ch=…&t=… (signed unsubscribe link; POST to the same URL
is the one-click unsubscribe of RFC 8058 that mail clients send for List-Unsubscribe-Post). Both land in the
append-only consent log with the caller's IP and user agent, and answer a small HTML page."""

from __future__ import annotations

import html
import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse
from psycopg_pool import AsyncConnectionPool

from brigade.auth import Claims
from brigade.db import transaction_as
from brigade.errors import wrap_exceptions
from brigade.settings import Settings
from functions.deps import client_ip, enforce_rate_limits, get_pool, get_settings

router = APIRouter(prefix="/consent")

PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>{title}</title></head>
<body style="font-family: sans-serif; max-width: 32rem; margin: 3rem auto"><h1>{title}</h1><p>{text}</p></body></html>"""
CHANNELS = r"^(EMAIL_MARKETING|SMS_MARKETING|WHATSAPP_MARKETING|PUSH_MARKETING|REVIEW_REQUEST)$"


@router.get("/confirm", response_class=HTMLResponse)
async def confirm(request: Request, pool: Annotated[AsyncConnectionPool, Depends(get_pool)],
                  settings: Annotated[Settings, Depends(get_settings)],
                  token: Annotated[str, Query(min_length=16, max_length=128)]) -> str:
    await enforce_rate_limits(pool, Claims.anon(), "consent")
    async with wrap_exceptions(), transaction_as(pool, Claims.service()) as conn:
        row = await (await conn.execute("select app.confirm_consent(%s, %s, %s) as r",
                                        (token, client_ip(request, settings), request.headers.get("user-agent")))).fetchone()
    channel = html.escape(row["r"]["channel"].replace("_", " ").lower()) if row else ""
    return PAGE.format(title="Subscription confirmed", text=f"Thank you: {channel} is confirmed.")


@router.post("/unsubscribe", response_class=HTMLResponse)
@router.get("/unsubscribe", response_class=HTMLResponse)
async def unsubscribe(request: Request, pool: Annotated[AsyncConnectionPool, Depends(get_pool)],
                      b: uuid.UUID, c: uuid.UUID, ch: Annotated[str, Query(pattern=CHANNELS)],
                      settings: Annotated[Settings, Depends(get_settings)],
                      t: Annotated[str, Query(min_length=64, max_length=80)]) -> str:  # "v<n>.<hex>" or legacy hex
    await enforce_rate_limits(pool, Claims.anon(), "consent")
    async with wrap_exceptions(), transaction_as(pool, Claims.service()) as conn:
        await conn.execute("select app.unsubscribe(%s, %s, %s, %s, %s, %s)",
                           (b, c, ch, t, client_ip(request, settings), request.headers.get("user-agent")))
    return PAGE.format(title="Unsubscribed", text="You will not receive these messages any more.")
