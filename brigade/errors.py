"""One error hierarchy, and the one place SQLSTATEs become domain errors (docs/errors.md)."""

from __future__ import annotations

import json
from contextlib import asynccontextmanager
from typing import AsyncIterator

import psycopg


class BrigadeError(Exception):
    """Base of every error Brigade raises on purpose; carries an HTTP status and a stable code."""

    status = 500
    code = "internal"

    def __init__(self, message: str, *, code: str | None = None, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.hint = hint

    def to_json(self) -> dict[str, str | None]:
        """The JSON error body functions answer with."""
        return {"error": self.hint or self.code, "code": self.code, "message": self.message}


class InvalidInput(BrigadeError):
    status = 400
    code = "invalid_input"


class Unauthorized(BrigadeError):
    status = 401
    code = "unauthorized"


class Forbidden(BrigadeError):
    status = 403
    code = "forbidden"


class ModuleDisabled(Forbidden):
    code = "PT403"


class NotFound(BrigadeError):
    status = 404
    code = "not_found"


class Conflict(BrigadeError):
    status = 409
    code = "conflict"


class RateLimited(BrigadeError):
    """PT429 from app.enforce_rate_limits: answered 429 with Retry-After."""

    status = 429
    code = "PT429"

    def __init__(self, message: str, *, code: str | None = None, hint: str | None = None, retry_after: int = 1) -> None:
        super().__init__(message, code=code, hint=hint or "rate_limited")
        self.retry_after = max(1, retry_after)


# SQLSTATE → error class. Codes not listed here but raised by Brigade's SQL (class BR…, 22…) are bad
# input (400), as PostgREST answers them.
_BY_SQLSTATE: dict[str, type[BrigadeError]] = {
    "42501": Forbidden,
    "PT401": Unauthorized,
    "PT403": ModuleDisabled,
    "PT404": NotFound,
    "PT409": Conflict,
    "PT429": RateLimited,
    "23505": Conflict,
    "23503": Conflict,
    "40001": Conflict,
    "40P01": Conflict,
}


def from_psycopg(exc: psycopg.Error) -> BrigadeError | None:
    """The domain error for a database error, or None if it is not one Brigade raises on purpose."""
    sqlstate = exc.sqlstate or ""
    diag = exc.diag
    message = diag.message_primary or str(exc)
    hint = diag.message_hint
    cls = _BY_SQLSTATE.get(sqlstate)
    if cls is None and (sqlstate.startswith("BR") or sqlstate.startswith("22") or sqlstate.startswith("23")
                        or sqlstate == "P0001"):
        cls = InvalidInput
    if cls is None:
        return None
    if cls is RateLimited:
        try:
            retry_after = int(json.loads(diag.message_detail or "{}").get("retry_after", 1))
        except (ValueError, AttributeError):
            retry_after = 1
        return RateLimited(message, code=sqlstate, hint=hint, retry_after=retry_after)
    return cls(message, code=sqlstate, hint=hint)


@asynccontextmanager
async def wrap_exceptions() -> AsyncIterator[None]:
    """Re-raise database errors that carry a Brigade meaning as BrigadeError."""
    try:
        yield
    except psycopg.Error as exc:
        mapped = from_psycopg(exc)
        if mapped is None:
            raise
        raise mapped from exc
