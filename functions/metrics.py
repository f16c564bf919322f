"""GET /functions/v1/metrics: the Prometheus exposition, for a scraper holding the metrics token
(`Authorization: Bearer <BRIGADE_METRICS_TOKEN>`; 404 while no token is configured, 401 for a wrong
one). This copy's request counters and latency histogram per function and status, then the figures
every copy shares from the database: outbox depth and dead letters, events handled per topic and
outcome with handler time (the worker writes them), provider refusals in the last hour."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from psycopg_pool import AsyncConnectionPool

from brigade import queries
from brigade.errors import NotFound, Unauthorized
from brigade.metrics import worker_families
from brigade.settings import Settings
from functions.deps import get_pool, get_settings

router = APIRouter()


class _Families:
    def __init__(self, families: list[object]) -> None:
        self.families = families

    def collect(self):  # type: ignore[no-untyped-def]
        return iter(self.families)


@router.get("/metrics")
async def metrics(request: Request, pool: Annotated[AsyncConnectionPool, Depends(get_pool)],
                  settings: Annotated[Settings, Depends(get_settings)]) -> Response:
    if not settings.metrics_token:
        raise NotFound("metrics are off: set BRIGADE_METRICS_TOKEN", hint="metrics_disabled")
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), settings.metrics_token.encode()):
        raise Unauthorized("the metrics token is missing or wrong", hint="invalid_metrics_token")
    async with pool.connection() as conn:
        row = await (await conn.execute(queries.get("worker_metrics"))).fetchone()
    shared = CollectorRegistry()
    shared.register(_Families(worker_families(row["stats"] if row else {"outbox": {}, "handlers": [], "handler_time": [],
                                                                             "provider_errors": []})))  # type: ignore[arg-type]
    body = generate_latest(request.app.state.request_stats.registry) + generate_latest(shared)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
