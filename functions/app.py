"""The ASGI app: every function under /functions/v1/<name>, JSON errors, request ids in logs."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from psycopg_pool import AsyncConnectionPool
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from brigade.db import open_pool
from brigade.db import request_headers
from brigade.errors import BrigadeError, RateLimited
from brigade.metrics import RequestStats, function_of
from brigade.settings import Settings, get_settings
from brigade.providers import Providers
from functions.cors import install_cors
from functions.deps import client_ip
from functions import (admin, ask, checkout, consent, delivery_webhook, export, health, metrics, payouts, printers, receipt, refund,
                       resend_webhook, stripe_webhook, twilio_sms, twilio_voice, verify_checkout)

log = logging.getLogger("brigade.functions")
PREFIX = "/functions/v1"


def _error(status: int, error: str, message: str, request: Request, headers: dict[str, str] | None = None,
           **extra: Any) -> JSONResponse:
    body = {"error": error, "message": message, "request_id": getattr(request.state, "request_id", None), **extra}
    return JSONResponse(body, status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(BrigadeError)
    async def brigade_error(request: Request, exc: BrigadeError) -> JSONResponse:
        body = exc.to_json()
        if isinstance(exc, RateLimited):
            log.warning("rate limited", extra={"action": "rate_limited", "request_id": getattr(request.state, "request_id", None),
                                               "path": request.url.path, "retry_after": exc.retry_after})
            return _error(exc.status, str(body["error"]), exc.message, request, headers={"Retry-After": str(exc.retry_after)},
                          code=exc.code, retry_after=exc.retry_after)
        return _error(exc.status, str(body["error"]), exc.message, request, code=exc.code)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        details = [{"loc": list(e.get("loc", ())), "msg": e.get("msg")} for e in exc.errors()]
        return _error(400, "invalid_input", "request is not valid", request, details=details)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, "http_error", str(exc.detail), request)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", extra={"action": "function_error", "request_id": getattr(request.state, "request_id", None)})
        return _error(500, "internal", "internal error", request)


class RequestContext:
    """Pure ASGI middleware: the request id (x-request-id in and out, request.state.request_id), what
    SQL sees as request.headers (as under PostgREST: the client IP the rate limits key on), the
    per-function counts and one log line per request. Not @app.middleware("http"): Starlette's
    BaseHTTPMiddleware runs the app in a task group with memory streams per request, which profiled
    (py-spy) as about a sixth of a Twilio voice turn's CPU."""

    def __init__(self, app: ASGIApp, settings: Settings, stats: RequestStats) -> None:
        self.app, self.settings, self.stats = app, settings, stats

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        rid = request.headers.get("x-request-id") or uuid.uuid4().hex
        request.state.request_id = rid
        ip = client_ip(request, self.settings)
        token = request_headers.set({k: v for k, v in (("x-forwarded-for", ip), ("user-agent", request.headers.get("user-agent")),
                                                       ("origin", request.headers.get("origin"))) if v})
        status = 500  # unless the app starts an answer: an exception escaping it is answered 500 outside
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)["x-request-id"] = rid
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_headers.reset(token)
            path = scope["path"]
            self.stats.observe(function_of(path, PREFIX), status, (time.perf_counter() - started) * 1000)
            log.info("request", extra={"action": "request", "request_id": rid, "method": scope["method"],
                                       "path": path, "status": status})


def create_app(settings: Settings | None = None, pool: AsyncConnectionPool | None = None,
               extra_routers: list[APIRouter] | None = None) -> FastAPI:
    """The functions app. A given pool is used as is; otherwise one is opened on startup without
    waiting for the database, so the app starts (and /health answers 503) while it is down."""
    settings = settings or get_settings()
    settings.require_safe_jwt_secret()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own = pool is None
        app.state.pool = pool or await open_pool(settings.dsn, min_size=1, max_size=20, name="functions", wait=False)
        stop = asyncio.Event()
        flusher = asyncio.create_task(app.state.request_stats.flush_every(app.state.pool, settings.metrics_flush_seconds, stop))
        try:
            yield
        finally:
            stop.set()
            await flusher  # the last counts reach app.function_stats before the pool closes
            voice = getattr(app.state, "voice_understander", None)  # twilio_voice's keep-alive LLM client
            if getattr(voice, "client", None) is not None:
                await voice.client.aclose()
            if own:
                await app.state.pool.close()

    app = FastAPI(title="Brigade functions", lifespan=lifespan, docs_url=f"{PREFIX}/docs",
                  openapi_url=f"{PREFIX}/openapi.json")
    app.state.settings = settings
    app.state.providers = Providers.from_settings(settings)
    app.state.request_stats = RequestStats()
    if pool is not None:
        app.state.pool = pool
    install_error_handlers(app)

    app.add_middleware(RequestContext, settings=settings, stats=app.state.request_stats)
    install_cors(app, settings)  # outermost: preflights are answered before anything else runs

    routers = (health.router, admin.router, ask.router, checkout.router, consent.router, stripe_webhook.router, refund.router,
               twilio_sms.router, resend_webhook.router, twilio_voice.router, delivery_webhook.router, payouts.router,
               printers.router, receipt.router, export.router, metrics.router, verify_checkout.router)
    for router in (*routers, *(extra_routers or [])):
        app.include_router(router, prefix=PREFIX)
    return app
