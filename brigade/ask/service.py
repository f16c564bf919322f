"""Answering one question: who is asking (public.ask_context, as the caller), the backend's tool calls
run one by one in read-only transactions under the caller's own role and claims (so RLS shapes every
number), the answer composed from the rows only, and the question logged in admin_questions."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from brigade import queries
from brigade.ask.tools import TOOLS, Context, Refused, capabilities
from brigade.ask.understand import Asker, AskerFailed, CallResult, Plan, RuleAsker, jsonable
from brigade.auth import Claims
from brigade.db import transaction_as
from brigade.errors import from_psycopg, wrap_exceptions

CANNOT = "I can't answer that from Brigade's data."
TOOL_TIMEOUT = "8s"  # the authenticated role's statement timeout on Supabase
MAX_CALLS = 8  # tool calls per question; a model asking for more is refused the rest
RESPONSE_ROWS = 1000  # rows of one tool call in the HTTP answer (row_count says how many there are)


@dataclass
class Answer:
    question_id: uuid.UUID | None
    question: str
    answer: str
    backend: str
    refused: bool
    calls: list[CallResult] = field(default_factory=list)
    duration_ms: int = 0

    def as_json(self) -> dict[str, Any]:
        return jsonable({"question_id": self.question_id, "question": self.question, "answer": self.answer,
                         "backend": self.backend, "refused": self.refused,
                         "tool_calls": [{"tool": c.tool, "arguments": c.arguments, "status": c.status, "reason": c.reason,
                                         "message": c.message, "rows": c.rows[:RESPONSE_ROWS], "row_count": len(c.rows)}
                                        for c in self.calls]})


class ToolRunner:
    """Runs validated tool calls as the caller, each in a read-only transaction, and keeps the record."""

    def __init__(self, pool: AsyncConnectionPool, claims: Claims, ctx: Context) -> None:
        self.pool = pool
        self.claims = claims
        self.ctx = ctx
        self.calls: list[CallResult] = []

    async def run(self, name: str, raw: Any) -> CallResult:
        result = await self._run(name, raw)
        self.calls.append(result)
        return result

    async def _run(self, name: str, raw: Any) -> CallResult:
        tool = TOOLS.get(name)
        shown = raw if isinstance(raw, dict) else {"raw": str(raw)}
        if len(self.calls) >= MAX_CALLS:
            return CallResult(name, shown, "refused", reason="too_many_calls", message=f"at most {MAX_CALLS} tool calls per question")
        if tool is None:
            return CallResult(name, shown, "refused", reason="unknown_tool",
                              message=f"{name} is not one of the tools; the assistant only reads Brigade's data")
        if not self.ctx.modules.get(tool.module, False):
            return CallResult(name, shown, "refused", reason="module_disabled", message=f"the {tool.module} module is off")
        try:
            args = tool.arguments(raw, self.ctx)
        except Refused as exc:
            return CallResult(name, shown, "refused", reason=exc.reason, message=exc.message)
        try:
            async with transaction_as(self.pool, self.claims) as conn:
                await conn.execute(queries.get("ask_read_only"))
                await conn.execute("select set_config('statement_timeout', %s, true)", (TOOL_TIMEOUT,))
                rows = await (await conn.execute(queries.get(tool.query), {**args, "business_id": self.ctx.business_id})).fetchall()
        except psycopg.Error as exc:
            mapped = from_psycopg(exc)
            return CallResult(name, args, "error", reason=mapped.code if mapped else exc.sqlstate,
                              message=mapped.message if mapped else "the tool failed")
        rows = [dict(r) for r in rows]
        return CallResult(name, args, "ok", rows=rows, text=tool.render(rows, args, self.ctx))


def compose(plan: Plan, calls: list[CallResult], ctx: Context) -> tuple[str, bool]:
    """The answer from the tools' rows only (never the model's prose), and whether it is a refusal."""
    ok = [c for c in calls if c.status == "ok"]
    if ok:
        text = " ".join(c.text for c in ok)
        not_run = [c.message for c in calls if c.status != "ok" and c.message]
        if not_run:
            text += " Not answered: " + "; ".join(not_run) + "."
        return text, False
    reasons = [c.message for c in calls if c.message] or ([plan.message] if plan.message else [])
    why = f" ({'; '.join(reasons)})" if reasons else ""
    can = capabilities(ctx)
    return f"{CANNOT}{why} I can answer: " + "; ".join(can) + ".", True


def named_customers(calls: list[CallResult]) -> list[uuid.UUID]:
    """The customers an answer names (so erasing one reaches the log)."""
    return sorted({r["customer_id"] for c in calls if c.status == "ok" for r in c.rows if r.get("customer_id")})


async def load_context(pool: AsyncConnectionPool, claims: Claims, business_id: uuid.UUID) -> Context:
    """The caller as ask_context sees them; 403 for staff, drivers and strangers, 404 for no business."""
    async with wrap_exceptions(), transaction_as(pool, claims) as conn:
        row = await (await conn.execute(queries.get("ask_context"), {"business_id": business_id})).fetchone()
    assert row is not None
    return Context.from_json(row["ctx"])


async def ask(pool: AsyncConnectionPool, claims: Claims, business_id: uuid.UUID, question: str, asker: Asker,
              *, log: bool = True) -> Answer:
    """Answer one question for the caller, falling back to the rules when the model fails."""
    started = time.perf_counter()
    ctx = await load_context(pool, claims, business_id)
    runner = ToolRunner(pool, claims, ctx)
    backend = asker.name
    try:
        plan = await asker.answer(question, ctx, runner.run)
    except AskerFailed:
        runner.calls.clear()
        backend = "rules-fallback"
        plan = await RuleAsker().answer(question, ctx, runner.run)
    text, refused = compose(plan, runner.calls, ctx)
    answer = Answer(None, question, text, backend, refused, runner.calls, int((time.perf_counter() - started) * 1000))
    if log:
        async with transaction_as(pool, Claims.service()) as conn:
            row = await (await conn.execute(queries.get("ask_log_question"), {
                "business_id": business_id, "asked_by": claims.user_id, "question": question, "backend": backend,
                "tool_calls": Jsonb(jsonable([c.for_log() for c in runner.calls])), "answer": text, "refused": refused,
                "customer_ids": named_customers(runner.calls), "duration_ms": answer.duration_ms})).fetchone()
        answer.question_id = row["id"] if row else None
    return answer
