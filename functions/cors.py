"""CORS for browser frontends: each business's storefront (https://<subdomain>.<storefront_domain> and its
custom domain, as claimed in app.storefront_hostnames) may call the guest-facing functions; the configured
dashboard origins may call those and the merchant and operator ones. Webhook endpoints get no CORS at all.
An allowed origin is echoed (with Vary: Origin), never `*` with credentials: a `*` in the dashboard
origins answers `*` and no Access-Control-Allow-Credentials. A storefront's calls may only concern its own
business: checkout and verify-checkout-session refuse another business's order or booking (403)."""

from __future__ import annotations

import logging
import uuid
from urllib.parse import urlsplit

from cachetools import TTLCache
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from brigade import queries
from brigade.auth import Claims
from brigade.db import transaction_as
from brigade.errors import Forbidden
from brigade.settings import Settings

log = logging.getLogger("brigade.functions")
PREFIX = "/functions/v1/"
# function name (first path segment) -> who may call it from a browser
GUEST_FUNCTIONS = frozenset({"checkout", "verify-checkout-session", "consent", "health", "receipt"})
MERCHANT_FUNCTIONS = frozenset({"refund", "admin", "payouts.csv", "ask", "export", "report.pdf"})
ALLOW_METHODS = "GET, POST, PUT, DELETE, OPTIONS"
# x-brigade-reauth / x-brigade-device: the staff PIN proof a dashboard sends with refunds and exports
ALLOW_HEADERS = "authorization, content-type, apikey, x-client-info, x-request-id, x-brigade-reauth, x-brigade-device"
EXPOSE_HEADERS = "retry-after, x-request-id"


def function_of(path: str) -> str | None:
    """The function a path belongs to (`checkout` for /functions/v1/checkout/local/…)."""
    if not path.startswith(PREFIX):
        return None
    return path[len(PREFIX):].split("/", 1)[0] or None


class OriginPolicy:
    """Decides which origins may call which functions; storefront look-ups cached for a minute."""

    def __init__(self, settings: Settings, app: FastAPI) -> None:
        self.app = app
        self.dashboards = settings.dashboard_origins
        self.any_dashboard = "*" in self.dashboards
        self.storefront_suffix = "." + settings.storefront_domain.strip(".").lower()
        self.storefronts: TTLCache[str, uuid.UUID | None] = TTLCache(maxsize=10_000, ttl=60)

    async def storefront_business(self, origin: str) -> uuid.UUID | None:
        """The active business whose storefront this origin is, or None."""
        if origin in self.storefronts:
            return self.storefronts[origin]
        parts = urlsplit(origin)
        host = (parts.hostname or "").lower()
        business: uuid.UUID | None = None
        if parts.scheme == "https" and host and parts.path in ("", "/"):
            subdomain = host[: -len(self.storefront_suffix)] if host.endswith(self.storefront_suffix) else None
            pool = getattr(self.app.state, "pool", None)
            if pool is not None:
                async with transaction_as(pool, Claims.service()) as conn:
                    row = await (await conn.execute(queries.get("storefront_origin"),
                                                    {"custom_domain": host, "subdomain": subdomain})).fetchone()
                business = row["business_id"] if row else None
        self.storefronts[origin] = business
        return business

    async def allow(self, origin: str, function: str) -> tuple[str | None, uuid.UUID | None]:
        """The Access-Control-Allow-Origin value for this origin and function (None: refused), and the
        business when the origin is a storefront (its calls may only concern that business)."""
        normal = origin.rstrip("/").lower()
        if function in GUEST_FUNCTIONS | MERCHANT_FUNCTIONS and normal in self.dashboards:
            return origin, None
        if function in GUEST_FUNCTIONS:
            business = await self.storefront_business(normal)
            if business is not None:
                return origin, business
        if function in GUEST_FUNCTIONS | MERCHANT_FUNCTIONS and self.any_dashboard:
            return "*", None
        return None, None


def ensure_origin_business(request: Request, business_id: uuid.UUID | None) -> None:
    """403 when a storefront's browser asks about another business's order or booking."""
    storefront = getattr(request.state, "storefront_business", None)
    if storefront is not None and business_id is not None and business_id != storefront:
        raise Forbidden("this storefront may only pay for its own business's orders and bookings", hint="origin_not_allowed")


def _headers(allowed: str) -> dict[str, str]:
    headers = {"Access-Control-Allow-Origin": allowed, "Access-Control-Expose-Headers": EXPOSE_HEADERS}
    if allowed != "*":
        headers["Vary"] = "Origin"
        headers["Access-Control-Allow-Credentials"] = "true"
    return headers


class Cors:
    """Pure ASGI middleware (see functions.app.RequestContext for why not @app.middleware): answers
    preflights and adds the CORS headers to the answers of allowed origins."""

    def __init__(self, app: ASGIApp, settings: Settings, policy: OriginPolicy) -> None:
        self.app, self.settings, self.policy = app, settings, policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        origin = request.headers.get("origin")
        function = function_of(scope["path"])
        if not origin or function is None or function not in GUEST_FUNCTIONS | MERCHANT_FUNCTIONS:
            await self.app(scope, receive, send)  # not a browser call, or a webhook: no CORS
            return
        allowed, business = await self.policy.allow(origin, function)
        request.state.storefront_business = business
        if request.method == "OPTIONS" and "access-control-request-method" in request.headers:
            if allowed is None:
                log.info("cors refused", extra={"action": "cors_refused", "origin": origin[:200], "function": function})
                answer: Response = JSONResponse({"error": "origin_not_allowed", "message": "this origin may not call this function",
                                                 "request_id": None}, status_code=403)
            else:
                answer = Response(status_code=204, headers={
                    **_headers(allowed), "Access-Control-Allow-Methods": ALLOW_METHODS,
                    "Access-Control-Allow-Headers": ALLOW_HEADERS,
                    "Access-Control-Max-Age": str(self.settings.cors_max_age)})
            await answer(scope, receive, send)
            return
        extra = _headers(allowed) if allowed is not None else {"Vary": "Origin"}

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in extra.items():
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_cors)


def install_cors(app: FastAPI, settings: Settings) -> None:
    """CORS outermost of the app's own middleware: preflights are answered before anything else runs."""
    app.add_middleware(Cors, settings=settings, policy=OriginPolicy(settings, app))
