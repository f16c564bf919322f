"""POST /functions/v1/ask: an owner or manager asks a question about their business in plain words and
gets an answer with the rows it came from. The backend (rules or an OpenAI-compatible model) only
chooses tools; each runs read only under the caller's own role and claims, so RLS limits the answer
exactly as it limits the dashboard. Staff, drivers and strangers get 403; every question is logged
in admin_questions."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel, ConfigDict, Field

from brigade.ask.service import ask as answer_question
from brigade.ask.understand import Asker, asker_from_settings
from brigade.auth import Claims
from brigade.errors import Forbidden
from functions.deps import caller, get_pool

router = APIRouter()


class AskRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    business_id: uuid.UUID
    question: str = Field(min_length=1, max_length=1000)


async def get_asker(request: Request) -> Asker:
    """The backend the settings choose, made once per app."""
    state = request.app.state
    if getattr(state, "asker", None) is None:
        state.asker = asker_from_settings(state.settings)
    return state.asker  # type: ignore[no-any-return]


@router.post("/ask")
async def ask(
    body: AskRequest,
    claims: Annotated[Claims, Depends(caller)],
    pool: Annotated[AsyncConnectionPool, Depends(get_pool)],
    asker: Annotated[Asker, Depends(get_asker)],
) -> dict[str, Any]:
    if claims.role != "authenticated" or claims.user_id is None:
        raise Forbidden("ask is for a business's owners and managers", hint="not_manager")
    answer = await answer_question(pool, claims, body.business_id, body.question.strip() or body.question, asker)
    return answer.as_json()
