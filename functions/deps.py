"""What every function shares: the pool, the verified caller, the module gate."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, AsyncIterator

import psycopg
from fastapi import Depends, Request
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from brigade import auth, queries
from brigade.auth import Claims
from brigade.db import transaction_as
from brigade.errors import Forbidden, InvalidInput, ModuleDisabled, Unauthorized, wrap_exceptions
from brigade.providers import Providers
from brigade.settings import Settings


# The dependencies below are `async def` although none of them awaits: FastAPI runs a plain `def`
# dependency in its thread pool, one hop per dependency per request, which profiled (py-spy) as a
# large share of a Twilio turn's CPU.
async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_pool(request: Request) -> AsyncConnectionPool:
    return request.app.state.pool


async def caller(request: Request, settings: Annotated[Settings, Depends(get_settings)]) -> Claims:
    """The verified Supabase JWT from `Authorization: Bearer`; 401 when missing or invalid."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("missing bearer token", hint="missing_token")
    return auth.verify(token.strip(), settings.jwt_secret)


async def caller_or_anon(request: Request, settings: Annotated[Settings, Depends(get_settings)]) -> Claims:
    """The verified caller when a bearer token is sent (a bad one is still 401), else anon."""
    if not request.headers.get("authorization"):
        return Claims.anon()
    return await caller(request, settings)


def client_ip(request: Request, settings: Settings) -> str | None:
    """The caller's IP: the first X-Forwarded-For entry behind a trusted proxy, else the socket peer."""
    if settings.trust_forwarded_for:
        forwarded = request.headers.get("x-forwarded-for", "").split(",")[0].strip()
        if forwarded:
            return forwarded[:64]
    return request.client.host if request.client else None


async def payable_business(pool: AsyncConnectionPool, order_id: uuid.UUID | None,
                           booking_id: uuid.UUID | None) -> uuid.UUID | None:
    """The business an order or booking belongs to (None when there is no such payable)."""
    async with transaction_as(pool, Claims.service()) as conn:
        row = await (await conn.execute(queries.get("payable_business"),
                                        {"order_id": order_id, "booking_id": booking_id})).fetchone()
    return row["business_id"] if row else None


async def enforce_rate_limits(pool: AsyncConnectionPool, claims: Claims, action: str, business_id: uuid.UUID | None = None,
                              subjects: dict[str, str] | None = None) -> None:
    """One committed hit of each of the action's limits (app.rate_limits) for this request, before the
    work, so failed attempts count too; RateLimited (429 + Retry-After) when one is full. The client IP
    comes from the request headers the app passes to SQL; the business's own staff are allow-listed."""
    async with wrap_exceptions(), transaction_as(pool, claims) as conn:
        # the caller's claims stay (auth.uid() for the staff allow-list); the limiter is the platform's
        await conn.execute("select set_config('role', 'service_role', true)")
        await conn.execute("select app.enforce_rate_limits(%s, %s, %s)", (action, business_id, Jsonb(subjects or {})))


async def get_providers(request: Request) -> Providers:
    return request.app.state.providers


async def operator(claims: Annotated[Claims, Depends(caller)]) -> Claims:
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
