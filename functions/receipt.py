"""GET /functions/v1/receipt?order_id=|booking_id=&token=&format=pdf|html|json: the receipt of a paid
order or booking. The guest passes the access token of their order or booking; a signed-in customer,
the venue's staff and the operator pass their JWT instead. Anyone else, an unknown id, or one not paid
yet: 404 (app.receipt decides, under the caller's role and claims as PostgREST would)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import HTMLResponse, JSONResponse, Response
from psycopg_pool import AsyncConnectionPool

from brigade import queries
from brigade.auth import Claims
from brigade.db import transaction_as
from brigade.errors import InvalidInput, wrap_exceptions
from brigade.receipts import receipt_html, receipt_pdf
from functions.deps import caller_or_anon, get_pool

router = APIRouter()


async def fetch_receipt(pool: AsyncConnectionPool, claims: Claims, kind: str, payable_id: uuid.UUID,
                        token: uuid.UUID | None) -> dict[str, Any]:
    """app.receipt as the caller; PT404 becomes a 404."""
    async with wrap_exceptions(), transaction_as(pool, claims) as conn:
        row = await (await conn.execute(queries.get("receipt"), {"kind": kind, "id": payable_id, "token": token})).fetchone()
    return row["receipt"] if row else {}


@router.get("/receipt", response_model=None)
async def receipt(
    claims: Annotated[Claims, Depends(caller_or_anon)],
    pool: Annotated[AsyncConnectionPool, Depends(get_pool)],
    order_id: uuid.UUID | None = None,
    booking_id: uuid.UUID | None = None,
    token: uuid.UUID | None = None,
    format: Literal["pdf", "html", "json"] = Query(default="pdf"),
) -> Response:
    if (order_id is None) == (booking_id is None):
        raise InvalidInput("pass exactly one of order_id and booking_id", hint="invalid_receipt_request")
    kind, payable_id = ("order", order_id) if order_id else ("booking", booking_id)
    data = await fetch_receipt(pool, claims, kind, payable_id, token)  # type: ignore[arg-type]
    if format == "json":
        return JSONResponse(data)
    if format == "html":
        return HTMLResponse(receipt_html(data))
    name = f"receipt-{data['number'].lstrip('#')}.pdf"
    return Response(receipt_pdf(data), media_type="application/pdf",
                    headers={"content-disposition": f'inline; filename="{name}"'})
