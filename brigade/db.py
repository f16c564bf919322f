"""Database access: the pool, and running SQL exactly as PostgREST would for a caller."""

from __future__ import annotations

import json
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from brigade.auth import Claims

API_ROLES = ("anon", "authenticated", "service_role")


async def open_pool(dsn: str, *, min_size: int = 1, max_size: int = 10, name: str = "brigade",
                    wait: bool = True) -> AsyncConnectionPool:
    """An open async pool whose connections return dict rows (wait=False: connect in the background)."""
    pool = AsyncConnectionPool(
        dsn, min_size=min_size, max_size=max_size, open=False, name=name,
        kwargs={"row_factory": dict_row, "autocommit": False},
    )
    await pool.open(wait=wait)
    return pool


async def apply_claims(conn: psycopg.AsyncConnection[Any], claims: Claims, headers: dict[str, str] | None = None) -> None:
    """Inside the open transaction: switch role and claims (and the request headers SQL may read, with
    lower-cased names) the way PostgREST does before a request."""
    role = claims.role if claims.role in API_ROLES else "anon"
    await conn.execute(
        "select set_config('role', %s, true), set_config('request.jwt.claims', %s, true), "
        "set_config('request.headers', %s, true)",
        (role, json.dumps(claims.as_dict()), json.dumps({k.lower(): v for k, v in (headers or {}).items()})),
    )


@asynccontextmanager
async def transaction_as(pool: AsyncConnectionPool, claims: Claims,
                         headers: dict[str, str] | None = None) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    """One transaction on a pooled connection, running as the caller the claims describe."""
    async with pool.connection() as conn:
        async with conn.transaction():
            await apply_claims(conn, claims, headers)
            yield conn
