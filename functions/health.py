"""GET /functions/v1/health: the database answers, and the outbox depth."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from psycopg_pool import AsyncConnectionPool

from brigade import queries
from functions.deps import get_pool

router = APIRouter()


@router.get("/health")
async def health(request: Request, pool: Annotated[AsyncConnectionPool, Depends(get_pool)]) -> Any:
    try:
        async with pool.connection(timeout=request.app.state.settings.health_timeout) as conn:
            row = await (await conn.execute(queries.get("outbox_stats"))).fetchone()
    except Exception as exc:  # the answer itself is the report
        return JSONResponse({"status": "unavailable", "database": "down", "error": type(exc).__name__}, status_code=503)
    return {"status": "ok", "database": "up", "outbox": row}
