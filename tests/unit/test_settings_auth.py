"""Settings precedence and JWT verification."""

from __future__ import annotations

import time

import jwt as pyjwt
import pytest

from brigade import auth
from brigade.auth import Claims
from brigade.errors import Unauthorized
from brigade.settings import Settings

SECRET = "test-secret-with-at-least-32-characters!!"


def test_toml_defaults_then_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("BRIGADE_DATABASE_URL", raising=False)
    defaults = Settings()
    assert defaults.db_port == 54322 and defaults.functions_port == 54321
    assert defaults.embedded and defaults.dsn.endswith(":54322/postgres")
    monkeypatch.setenv("BRIGADE_WORKER_MAX_ATTEMPTS", "9")
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@db.example:5432/postgres")
    changed = Settings()
    assert changed.worker_max_attempts == 9
    assert not changed.embedded and changed.dsn == "postgresql://u@db.example:5432/postgres"


def test_signed_token_round_trips() -> None:
    claims = Claims.user("00000000-0000-4000-8000-000000000123", email="a@b.test", app_role="platform_admin")
    back = auth.verify(auth.sign(claims, SECRET), SECRET)
    assert back.sub == claims.sub and back.is_platform_admin


def test_platform_admin_only_from_app_metadata() -> None:
    token = pyjwt.encode({"role": "authenticated", "sub": "00000000-0000-4000-8000-000000000123",
                          "user_metadata": {"app_role": "platform_admin"}, "exp": int(time.time()) + 60}, SECRET)
    assert not auth.verify(token, SECRET).is_platform_admin


@pytest.mark.parametrize("token", [
    pyjwt.encode({"role": "authenticated", "exp": int(time.time()) + 60}, "another-secret-that-is-32-chars-long!!"),
    pyjwt.encode({"role": "authenticated", "exp": int(time.time()) - 10}, SECRET),
    pyjwt.encode({"role": "authenticated"}, SECRET),
    "not-a-jwt",
])
def test_bad_tokens_are_unauthorized(token: str) -> None:
    with pytest.raises(Unauthorized):
        auth.verify(token, SECRET)
