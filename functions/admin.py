"""The platform operator's function: businesses (create, list, suspend, plan, modules), platform metrics,
payouts, dead events, workers. Operator JWT only; every action is audited by the SQL it calls."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, Depends, Path
from fastapi import Query
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field

from brigade import queries
from brigade.errors import NotFound
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


@router.get("/alerts")
async def list_alerts(conn: Conn, status: str = Query(default="open", pattern="^(open|all)$"), limit: int = 100) -> Any:
    """Alerts the rules opened (app.alert_rules), newest first: open ones, or all."""
    row = await (await conn.execute(queries.get("list_alerts"), {"open": status == "open", "limit": limit})).fetchone()
    return {"alerts": row["alerts"] if row else []}


@router.post("/alerts/{alert_id}/ack")
async def acknowledge_alert(alert_id: int, conn: Conn) -> Any:
    """Acknowledge an alert: no more reminders; it closes by itself when its condition clears."""
    row = await (await conn.execute(queries.get("acknowledge_alert"), {"id": alert_id})).fetchone()
    return row["alert"] if row else None


@router.get("/workers")
async def workers(pool: Annotated[AsyncConnectionPool, Depends(get_pool)]) -> Any:
    """Worker copies and outbox depth (operational data, read with the function's own role)."""
    async with pool.connection() as conn:
        rows = await (await conn.execute(queries.get("list_workers"))).fetchall()
        stats = await (await conn.execute(queries.get("outbox_stats"))).fetchone()
    return {"workers": rows, "outbox": stats}


# -- businesses (issue 9) ---------------------------------------------------------------------------

SLUG = r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$"


class NewBusiness(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    slug: str = Field(pattern=SLUG)
    plan: str = "starter"
    modules: dict[str, bool] = Field(default_factory=lambda: {"ordering": True})
    owner_email: str | None = Field(default=None, max_length=320)
    currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$")
    time_zone: str = "UTC"


class StatusChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(default="", max_length=500)


class PlanChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    plan: str = Field(pattern=r"^[a-z][a-z0-9_]{1,30}$")


class SubscriptionStatus(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: str = Field(pattern=r"^(trial|active|past_due|canceled)$")


class PaymentAccount(BaseModel):
    model_config = ConfigDict(extra="forbid")
    stripe_account_id: str = Field(max_length=80)


class PayoutRun(BaseModel):
    model_config = ConfigDict(extra="forbid")
    period_start: str
    period_end: str
    business_id: uuid.UUID | None = None


async def _one(conn: psycopg.AsyncConnection[Any], sql: str, params: Any) -> Any:
    row = await (await conn.execute(sql, params)).fetchone()
    return next(iter(row.values())) if row else None


@router.get("/businesses")
async def list_businesses(conn: Conn, q: Annotated[str, Query(max_length=100)] = "",
                          limit: Annotated[int, Query(ge=1, le=500)] = 100) -> Any:
    """Businesses with plan, modules, MRR, orders and GMV; `q` searches name, slug, subdomain and owner email."""
    rows = await (await conn.execute(queries.get("operator_list_businesses"), {"q": q, "limit": limit})).fetchall()
    return {"businesses": rows}


@router.post("/businesses", status_code=201)
async def create_business(body: NewBusiness, conn: Conn) -> Any:
    """A business with its plan, modules, storefront on its slug and the owner's invitation (audited)."""
    return await _one(conn, "select public.admin_create_business(%s) as r", (body.model_dump_json(),))


@router.get("/businesses/{business_id}")
async def get_business(business_id: uuid.UUID, conn: Conn) -> Any:
    row = await (await conn.execute("select * from public.operator_businesses where id = %s", (business_id,))).fetchone()
    if row is None:
        raise NotFound("business not found", hint="not_found")
    onboarding = await _one(conn, "select public.onboarding_status(%s) as r", (business_id,))
    billing = await _one(conn, "select public.billing_overview(%s) as r", (business_id,))
    audit = await (await conn.execute(queries.get("operator_recent_audit"), {"business_id": business_id})).fetchall()
    return {"business": row, "onboarding": onboarding, "billing": billing, "audit": audit}


@router.post("/businesses/{business_id}/suspend")
async def suspend(business_id: uuid.UUID, body: StatusChange, conn: Conn) -> Any:
    return await _one(conn, "select public.admin_set_business_status(%s, 'suspended', %s) as r", (business_id, body.reason))


@router.post("/businesses/{business_id}/reinstate")
async def reinstate(business_id: uuid.UUID, body: StatusChange, conn: Conn) -> Any:
    return await _one(conn, "select public.admin_set_business_status(%s, 'active', %s) as r", (business_id, body.reason))


@router.put("/businesses/{business_id}/plan")
async def set_plan(business_id: uuid.UUID, body: PlanChange, conn: Conn) -> Any:
    return await _one(conn, "select public.change_plan(%s, %s) as r", (business_id, body.plan))


@router.put("/businesses/{business_id}/subscription-status")
async def set_subscription_status(business_id: uuid.UUID, body: SubscriptionStatus, conn: Conn) -> Any:
    return await _one(conn, "select app.set_subscription_status(%s, %s) as r", (business_id, body.status))


@router.put("/businesses/{business_id}/payment-account")
async def set_payment_account(business_id: uuid.UUID, body: PaymentAccount, conn: Conn) -> Any:
    return await _one(conn, "select public.set_payment_account(%s, %s) as r", (business_id, body.stripe_account_id))


@router.get("/metrics")
async def metrics(conn: Conn) -> Any:
    """Active businesses, MRR, churn, orders, GMV, messaging and voice cost."""
    row = await (await conn.execute("select * from public.operator_platform_metrics")).fetchone()
    return {"metrics": row}


@router.get("/audit")
async def audit(conn: Conn, business_id: uuid.UUID | None = None, limit: Annotated[int, Query(ge=1, le=1000)] = 200) -> Any:
    rows = await (await conn.execute(queries.get("operator_audit"), {"business_id": business_id, "limit": limit})).fetchall()
    return {"audit": rows}


@router.post("/payouts")
async def run_payouts(body: PayoutRun, conn: Conn) -> Any:
    """Compute (or recompute, while pending) the payouts of a period, for one business or all (audited)."""
    return await _one(conn, "select public.generate_payouts(%s::timestamptz, %s::timestamptz, %s) as r",
                      (body.period_start, body.period_end, body.business_id))


@router.get("/payouts.csv", response_class=PlainTextResponse)
async def payouts_csv(conn: Conn, business_id: uuid.UUID | None = None, since: str | None = Query(default=None, alias="from"),
                      until: str | None = Query(default=None, alias="to")) -> PlainTextResponse:
    """Payouts as CSV (gross, platform fees, refunds, delivery costs, net) for every business or one."""
    text = await _one(conn, "select public.payouts_csv(%s, %s::timestamptz, %s::timestamptz) as r", (business_id, since, until))
    return PlainTextResponse(text or "", media_type="text/csv",
                             headers={"content-disposition": 'attachment; filename="payouts.csv"'})
