"""GET /functions/v1/payouts.csv?business_id=&from=&to=: a merchant's payouts as CSV (gross, platform
fees, refunds, delivery costs, net, status), for the business's owners. Read under the caller's JWT
and row-level security, like a PostgREST request; anyone else gets 404."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, Depends, Query
from fastapi.responses import PlainTextResponse

from brigade import queries
from brigade.errors import NotFound
from functions.deps import as_caller

router = APIRouter()
Conn = Annotated[psycopg.AsyncConnection[Any], Depends(as_caller)]


@router.get("/payouts.csv", response_class=PlainTextResponse)
async def merchant_payouts_csv(conn: Conn, business_id: uuid.UUID, since: str | None = Query(default=None, alias="from"),
                               until: str | None = Query(default=None, alias="to")) -> PlainTextResponse:
    """The owner's payouts of one business, periods overlapping [from, to)."""
    owner = await (await conn.execute(queries.get("owned_business"), {"business_id": business_id})).fetchone()
    if not owner or not owner["owner"]:
        raise NotFound("no such business among those you own", hint="not_found")
    # a malformed from/to is PostgreSQL's 22007, which as_caller answers as a 400
    row = await (await conn.execute(queries.get("merchant_payouts_csv"),
                                    {"business_id": business_id, "from": since, "to": until})).fetchone()
    return PlainTextResponse(row["csv"] if row else "", media_type="text/csv",
                             headers={"content-disposition": f'attachment; filename="payouts-{business_id}.csv"'})
