"""Supabase-style JWTs: the claims PostgREST reads, signing (local tokens, tests) and verifying."""

from __future__ import annotations

import time
import uuid
from typing import Any

import jwt
from pydantic import BaseModel, Field

from brigade.errors import Unauthorized

PLATFORM_ADMIN = "platform_admin"
# The audience Supabase Auth puts in every user token; the API keys (anon, service_role) carry none.
AUDIENCE = "authenticated"


class Claims(BaseModel):
    """The JWT claims of a caller, as Supabase issues them."""

    role: str = "anon"
    sub: str | None = None
    email: str | None = None
    phone: str | None = None
    aud: str | None = None
    iss: str = "supabase"
    app_metadata: dict[str, Any] = Field(default_factory=dict)
    user_metadata: dict[str, Any] = Field(default_factory=dict)
    exp: int | None = None
    iat: int | None = None

    @property
    def user_id(self) -> uuid.UUID | None:
        return uuid.UUID(self.sub) if self.sub else None

    @property
    def is_platform_admin(self) -> bool:
        return self.role == "authenticated" and self.app_metadata.get("app_role") == PLATFORM_ADMIN

    def as_dict(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)

    @classmethod
    def anon(cls) -> "Claims":
        return cls(role="anon")

    @classmethod
    def service(cls) -> "Claims":
        return cls(role="service_role")

    @classmethod
    def user(cls, user_id: uuid.UUID | str, *, email: str | None = None, app_role: str | None = None) -> "Claims":
        meta = {"provider": "email", **({"app_role": app_role} if app_role else {})}
        return cls(role="authenticated", sub=str(user_id), email=email, aud="authenticated", app_metadata=meta)


def sign(claims: Claims, secret: str, *, expires_in: int = 3600) -> str:
    """An HS256 token for the claims (local tokens and tests; Supabase Auth issues real ones)."""
    now = int(time.time())
    body = claims.as_dict() | {"iat": now, "exp": now + expires_in}
    return jwt.encode(body, secret, algorithm="HS256")


def verify(token: str, secret: str) -> Claims:
    """Claims of a valid token; Unauthorized for a missing, forged or expired one, or one for another
    audience (a user token must say aud = authenticated, as Supabase Auth issues it)."""
    try:
        # aud is checked below: PyJWT's own check cannot accept the audience-less API keys
        body = jwt.decode(token, secret, algorithms=["HS256"], options={"verify_aud": False, "require": ["exp"]})
    except jwt.ExpiredSignatureError as exc:
        raise Unauthorized("token expired", hint="token_expired") from exc
    except jwt.PyJWTError as exc:
        raise Unauthorized(f"invalid token: {exc}", hint="invalid_token") from exc
    aud = body.get("aud")
    audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else [] if aud is None else [None]
    if (aud is not None or body.get("role") == AUDIENCE) and AUDIENCE not in audiences:
        raise Unauthorized(f"token audience must be {AUDIENCE!r}", hint="invalid_audience")
    if aud is not None:
        body["aud"] = AUDIENCE
    try:
        return Claims.model_validate(body)
    except ValueError as exc:
        raise Unauthorized("invalid token claims", hint="invalid_token") from exc
