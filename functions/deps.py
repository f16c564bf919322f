"""What every function shares: the pool, the verified caller, the module gate."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, AsyncIterator

import psycopg
from fastapi import Depends, Request
from psycopg_pool import AsyncConnectionPool

from brigade import auth
from brigade.auth import Claims
from brigade.db import transaction_as
from brigade.errors import Forbidden, InvalidInput, ModuleDisabled, Unauthorized, wrap_exceptions
from brigade.providers import Providers
from brigade.settings import Settings


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_pool(request: Request) -> AsyncConnectionPool:
    return request.app.state.pool


def caller(request: Request, settings: Annotated[Settings, Depends(get_settings)]) -> Claims:
    """The verified Supabase JWT from `Authorization: Bearer`; 401 when missing or invalid."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("missing bearer token", hint="missing_token")
    return auth.verify(token.strip(), settings.jwt_secret)


def caller_or_anon(request: Request, settings: Annotated[Settings, Depends(get_settings)]) -> Claims:
    """The verified caller when a bearer token is sent (a bad one is still 401), else anon."""
    if not request.headers.get("authorization"):
        return Claims.anon()
    return caller(request, settings)


def get_providers(request: Request) -> Providers:
    return request.app.state.providers


def operator(claims: Annotated[Claims, Depends(caller)]) -> Claims:
    """The platform operator (app_metadata.app_role = platform_admin) or the service role; 403 otherwise."""
    if not (claims.is_platform_admin or claims.role == "service_role"):
        raise Forbidden("only the platform operator may call this", hint="operator_only")
    return claims


async def as_caller(
    pool: Annotated[AsyncConnectionPool, Depends(get_pool)], claims: Annotated[Claims, Depends(caller)]
) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    """One transaction as the caller, like a PostgREST request; database errors become 4xx."""
    async with wrap_exceptions():
        async with transaction_as(pool, claims) as conn:
            yield conn


async def ensure_module(conn: psycopg.AsyncConnection[Any], business_id: uuid.UUID, module: str) -> None:
    """403 (ModuleDisabled) unless the module is on for the business: every function's first check."""
    row = await (await conn.execute("select app.module_enabled(%s, %s) as on", (business_id, module))).fetchone()
    if not row or not row["on"]:
        raise ModuleDisabled(f"module {module} is disabled for this business", hint="module_disabled")


def module_gate(module: str):  # type: ignore[no-untyped-def]
    """A dependency for routes with a business_id path or query parameter: 403 when the module is off."""

    async def gate(request: Request, pool: Annotated[AsyncConnectionPool, Depends(get_pool)]) -> None:
        raw = request.path_params.get("business_id") or request.query_params.get("business_id")
        try:
            business_id = uuid.UUID(str(raw))
        except ValueError as exc:
            raise InvalidInput("business_id must be a UUID", hint="invalid_business_id") from exc
        async with pool.connection() as conn:
            await ensure_module(conn, business_id, module)

    return Depends(gate)


# The PIN re-auth proof (app.require_fresh_pin) travels in these headers, as PostgREST passes them to SQL.
REAUTH_HEADERS = ("x-brigade-reauth", "x-brigade-device")


def reauth_proof(request: Request) -> dict[str, str]:
    """The caller's re-auth headers, to forward to SQL as `request.headers` (transaction_as(..., headers=))."""
    return {h: request.headers[h] for h in REAUTH_HEADERS if h in request.headers}
