"""GET /functions/v1/export?type=&business_id=&from=&to=: CSV exports, streamed. Members (owner, manager,
staff) export their business under their own role and claims, as PostgREST would run the query, so
row-level security decides the rows (venue-limited staff get their venues'; money tables their
policies' readers); the operator exports any business, or the whole platform without business_id.
The rows go out as PostgreSQL's COPY (query) TO STDOUT produces them, chunk by chunk: nothing holds
the whole file, and the export's transaction has no statement timeout. Exporting customers takes the
export_customers permission (a refusal is a 403, audited as permission.denied) and, where the business
requires it, a fresh staff PIN (X-Brigade-Reauth / X-Brigade-Device, as for refunds).

GET /functions/v1/report.pdf?business_id=&month=YYYY-MM: the monthly financial report as a PDF
(owners, managers, the operator)."""

from __future__ import annotations

import json
import uuid
from typing import Annotated, Any, AsyncIterator, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response, StreamingResponse
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from brigade import queries
from brigade.auth import Claims
from brigade.db import transaction_as
from brigade.errors import Forbidden, InvalidInput, NotFound, wrap_exceptions
from brigade.receipts import report_pdf
from functions.deps import caller, get_pool, reauth_proof

router = APIRouter()

ExportType = Literal["orders", "payments", "customers", "bookings", "payouts", "driver_earnings", "campaign_performance"]


def copy_statement(export_type: str) -> sql.Composed:
    """COPY of the export's named query, as CSV with a header line."""
    return sql.SQL("copy ({}) to stdout with (format csv, header)").format(sql.SQL(queries.get(f"export_{export_type}")))  # type: ignore[arg-type]


CHUNK_BYTES = 64 * 1024


async def stream_copy(pool: AsyncConnectionPool, claims: Claims, statement: sql.Composed, params: dict[str, Any]) -> AsyncIterator[bytes]:
    """The rows of a COPY TO STDOUT as they arrive, in one transaction as the caller, sent on in pieces of
    about CHUNK_BYTES (PostgreSQL sends one message per row: one HTTP chunk each would cost more than the row)."""
    async with transaction_as(pool, claims) as conn:
        await conn.execute("set local statement_timeout = 0")
        buffer = bytearray()
        async with conn.cursor().copy(statement, params) as copy:
            async for row in copy:
                buffer += row
                if len(buffer) >= CHUNK_BYTES:
                    yield bytes(buffer)
                    buffer.clear()
        if buffer:
            yield bytes(buffer)


def platform(claims: Claims) -> bool:
    return claims.is_platform_admin or claims.role == "service_role"


@router.get("/export")
async def export(
    request: Request,
    claims: Annotated[Claims, Depends(caller)],
    pool: Annotated[AsyncConnectionPool, Depends(get_pool)],
    type: ExportType,
    business_id: uuid.UUID | None = None,
    since: str | None = Query(default=None, alias="from"),
    until: str | None = Query(default=None, alias="to"),
) -> StreamingResponse:
    if business_id is None and not platform(claims):
        raise InvalidInput("business_id is required", hint="missing_business_id")
    refused: dict[str, Any] | None = None
    async with wrap_exceptions(), transaction_as(pool, claims, reauth_proof(request)) as conn:
        if not platform(claims):
            row = await (await conn.execute(queries.get("export_access"), {"business_id": business_id})).fetchone()
            if not row or not row["member"]:
                raise NotFound("no such business among yours", hint="not_found")
            if type == "customers":  # the export_customers permission (issue 22), then a fresh PIN where required (issue 15)
                allowed = await (await conn.execute(queries.get("export_customers_permitted"), {"business_id": business_id})).fetchone()
                if allowed and allowed["permitted"]:
                    await conn.execute(queries.get("export_reauth"), {"business_id": business_id})
                else:
                    detail = json.dumps({"business_id": str(business_id), "permission": "export_customers", "export": "customers"})
                    refused = (await (await conn.execute(queries.get("export_customers_refused"), {"detail": detail})).fetchone() or {})["r"]
        # a malformed from/to is PostgreSQL's 22007/22008, answered as a 400 before anything streams
        window = await (await conn.execute(queries.get("export_range"),
                                           {"business_id": business_id, "from": since, "to": until})).fetchone()
    if refused is not None:  # raised after the commit, so the audit row stays
        raise Forbidden(refused["message"], code=refused["code"], hint="permission_denied")
    assert window is not None
    if not window["ordered"]:
        raise InvalidInput("from must be before to", hint="invalid_range")
    # the operator reads across tenants as the platform (service role); members as themselves
    run_as = Claims.service() if platform(claims) else claims
    params = {"business_id": business_id, "from": window["since"], "to": window["until"]}
    name = f"{type}-{business_id or 'platform'}.csv"
    return StreamingResponse(stream_copy(pool, run_as, copy_statement(type), params), media_type="text/csv",
                             headers={"content-disposition": f'attachment; filename="{name}"'})


@router.get("/report.pdf", response_model=None)
async def financial_report(
    claims: Annotated[Claims, Depends(caller)],
    pool: Annotated[AsyncConnectionPool, Depends(get_pool)],
    business_id: uuid.UUID,
    month: str = Query(pattern=r"^\d{4}-(0[1-9]|1[0-2])$"),
) -> Response:
    async with wrap_exceptions(), transaction_as(pool, claims) as conn:
        row = await (await conn.execute(queries.get("financial_report"), {"business_id": business_id, "month": f"{month}-01"})).fetchone()
    report = row["report"] if row else None
    if not report:
        raise NotFound("no such business", hint="not_found")
    return Response(report_pdf(report), media_type="application/pdf",
                    headers={"content-disposition": f'inline; filename="report-{month}-{business_id}.pdf"'})
