"""POST /functions/v1/refund: a manager refunds an order — all of what is left, an amount, or chosen
lines — through Stripe with an idempotency key. Of an order paid partly by gift card, Stripe gets back
the card part first and the rest goes back to the gift card (in SQL, when the refund succeeds); a refund
that is all gift card never calls Stripe. The request is recorded first (so a retry reuses
its key), Stripe's answer second; the webhook reconciles whatever Stripe says later. Where the business
requires PIN re-authentication, the caller's X-Brigade-Reauth / X-Brigade-Device headers are forwarded
to SQL, which refuses the refund without a fresh grant (BR820 / BR821, 400 as PostgREST answers them)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel, ConfigDict, Field

from brigade import queries
from brigade.auth import Claims
from brigade.db import transaction_as
from brigade.errors import Forbidden, wrap_exceptions
from brigade.providers import ProviderError, Providers
from functions.deps import caller, get_pool, get_providers, reauth_proof

router = APIRouter()


class RefundRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    order_id: uuid.UUID
    amount_cents: int | None = Field(default=None, gt=0)
    lines: dict[uuid.UUID, int] | None = Field(default=None, description="order_item_id -> quantity")
    reason: str = Field(default="", max_length=500)
    restock: bool = False


async def _record(pool: AsyncConnectionPool, req: dict[str, Any], refund_id: str | None, status: str,
                  failure: str | None) -> None:
    async with transaction_as(pool, Claims.service()) as conn:
        await conn.execute("select app.record_refund(%s, %s, %s, %s, %s, %s, %s)",
                           (req["business_id"], req["order_id"], req["refund_id"], refund_id, status,
                            req["amount_cents"], failure))


@router.post("/refund")
async def refund(
    request: Request,
    body: RefundRequest,
    claims: Annotated[Claims, Depends(caller)],
    pool: Annotated[AsyncConnectionPool, Depends(get_pool)],
    providers: Annotated[Providers, Depends(get_providers)],
) -> dict[str, Any]:
    lines = {str(k): v for k, v in body.lines.items()} if body.lines else None
    async with wrap_exceptions(), transaction_as(pool, claims, reauth_proof(request)) as conn:
        row = await (await conn.execute(
            "select public.request_refund(%s, %s, %s, %s, %s) as r",
            (body.order_id, body.amount_cents, Jsonb(lines) if lines else None, body.reason, body.restock))).fetchone()
    req = row["r"] if row else {}
    if req.get("error") == "permission_denied":  # answered without a raise so that the audit row committed
        raise Forbidden(req["message"], code=req["code"], hint="permission_denied")
    whole = {"refund_id": req["refund_id"], "order_id": req["order_id"], "amount_cents": req.get("refund_cents", req["amount_cents"]),
             "gift_card_cents": req.get("gift_card_cents", 0)}
    if req["amount_cents"] == 0:  # all of it went back to the gift card, in SQL: nothing for Stripe
        return {**whole, "provider_refund_id": None, "status": req.get("status", "succeeded")}
    params = {"payment_intent": req["payment_intent_id"], "amount": req["amount_cents"],
              "metadata": {"refund_id": req["refund_id"], "order_id": req["order_id"], "business_id": req["business_id"]}}
    async with transaction_as(pool, Claims.service()) as conn:
        account = await (await conn.execute(queries.get("refund_stripe_account"), {"business_id": req["business_id"]})).fetchone()
    try:
        # A Connect business's charge lives on its own account: the refund must be made there too.
        result = await providers.payments.create_refund(params, idempotency_key=req["idempotency_key"],
                                                        stripe_account=account["stripe_account_id"] if account else None)
    except ProviderError as exc:
        await _record(pool, req, None, "failed", exc.message)
        raise
    await _record(pool, req, result.id, result.status, result.failure_reason)
    return {**whole, "provider_refund_id": result.id, "status": result.status}
