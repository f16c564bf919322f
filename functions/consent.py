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
from functions.deps import get_pool

router = APIRouter(prefix="/consent")

PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>{title}</title></head>
<body style="font-family: sans-serif; max-width: 32rem; margin: 3rem auto"><h1>{title}</h1><p>{text}</p></body></html>"""
CHANNELS = r"^(EMAIL_MARKETING|SMS_MARKETING|WHATSAPP_MARKETING|PUSH_MARKETING|REVIEW_REQUEST)$"


def client_ip(request: Request) -> str | None:
    forwarded = request.headers.get("x-forwarded-for", "").split(",")[0].strip()
    return forwarded or (request.client.host if request.client else None)


@router.get("/confirm", response_class=HTMLResponse)
async def confirm(request: Request, pool: Annotated[AsyncConnectionPool, Depends(get_pool)],
                  token: Annotated[str, Query(min_length=16, max_length=128)]) -> str:
    async with wrap_exceptions(), transaction_as(pool, Claims.service()) as conn:
        row = await (await conn.execute("select app.confirm_consent(%s, %s, %s) as r",
                                        (token, client_ip(request), request.headers.get("user-agent")))).fetchone()
    channel = html.escape(row["r"]["channel"].replace("_", " ").lower()) if row else ""
    return PAGE.format(title="Subscription confirmed", text=f"Thank you: {channel} is confirmed.")


@router.post("/unsubscribe", response_class=HTMLResponse)
@router.get("/unsubscribe", response_class=HTMLResponse)
async def unsubscribe(request: Request, pool: Annotated[AsyncConnectionPool, Depends(get_pool)],
                      b: uuid.UUID, c: uuid.UUID, ch: Annotated[str, Query(pattern=CHANNELS)],
                      t: Annotated[str, Query(min_length=64, max_length=80)]) -> str:  # "v<n>.<hex>" or legacy hex
    async with wrap_exceptions(), transaction_as(pool, Claims.service()) as conn:
        await conn.execute("select app.unsubscribe(%s, %s, %s, %s, %s, %s)",
                           (b, c, ch, t, client_ip(request), request.headers.get("user-agent")))
    return PAGE.format(title="Unsubscribed", text="You will not receive these messages any more.")
