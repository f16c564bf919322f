"""The platform operator's function: module switches, dead events, workers. Operator JWT only."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, ConfigDict

from brigade import queries
from psycopg_pool import AsyncConnectionPool

from functions.deps import as_caller, get_pool, operator

router = APIRouter(prefix="/admin", dependencies=[Depends(operator)])

Conn = Annotated[psycopg.AsyncConnection[Any], Depends(as_caller)]


class ModuleSwitch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool


@router.put("/businesses/{business_id}/modules/{module}")
async def set_module(business_id: uuid.UUID, module: Annotated[str, Path(pattern=r"^[a-z][a-z0-9_]{1,30}$")],
                     body: ModuleSwitch, conn: Conn) -> Any:
    """Switch a module on or off: audited, re-billed, and its functions answer 403 while off."""
    row = await (await conn.execute("select public.set_business_module(%s, %s, %s) as result",
                                    (business_id, module, body.enabled))).fetchone()
    return row["result"] if row else None


@router.get("/businesses/{business_id}/modules")
async def get_modules(business_id: uuid.UUID, conn: Conn) -> Any:
    row = await (await conn.execute("select public.business_modules(%s) as modules", (business_id,))).fetchone()
    return {"business_id": str(business_id), "modules": row["modules"] if row else None}


@router.get("/events/dead")
async def dead_events(conn: Conn, limit: int = 100) -> Any:
    rows = await (await conn.execute(queries.get("list_dead_events"), {"limit": limit})).fetchall()
    return {"dead_events": rows}


@router.post("/events/dead/{dead_id}/replay")
async def replay(dead_id: int, conn: Conn) -> Any:
    row = await (await conn.execute(queries.get("replay_dead_event"), {"dead_id": dead_id})).fetchone()
    return {"replayed": dead_id, "msg_id": row["msg_id"] if row else None}


@router.get("/workers")
async def workers(pool: Annotated[AsyncConnectionPool, Depends(get_pool)]) -> Any:
    """Worker copies and outbox depth (operational data, read with the function's own role)."""
    async with pool.connection() as conn:
        rows = await (await conn.execute(queries.get("list_workers"))).fetchall()
        stats = await (await conn.execute(queries.get("outbox_stats"))).fetchone()
    return {"workers": rows, "outbox": stats}
