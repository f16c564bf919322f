"""Settings precedence and JWT verification."""

from __future__ import annotations

import time

import jwt as pyjwt
import pytest

from brigade import auth
from brigade.auth import Claims
from brigade.errors import Unauthorized
from brigade.settings import LOCAL_JWT_SECRET, Settings, UnsafeSettings

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
    token = pyjwt.encode({"role": "authenticated", "aud": "authenticated", "sub": "00000000-0000-4000-8000-000000000123",
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


def _token(**claims: object) -> str:
    return pyjwt.encode({"exp": int(time.time()) + 60, **claims}, SECRET)


@pytest.mark.parametrize("claims", [
    {"role": "authenticated", "sub": "00000000-0000-4000-8000-000000000123", "app_metadata": {"app_role": "platform_admin"}},
    {"role": "authenticated", "aud": "postgrest", "sub": "00000000-0000-4000-8000-000000000123"},
    {"role": "service_role", "aud": "some-other-service"},
    {"role": "authenticated", "aud": ["storage", "realtime"]},
    {"role": "authenticated", "aud": 7},
])
def test_tokens_for_another_audience_are_unauthorized(claims: dict[str, object]) -> None:
    with pytest.raises(Unauthorized) as refused:
        auth.verify(_token(**claims), SECRET)
    assert refused.value.hint == "invalid_audience"


def test_user_tokens_for_authenticated_and_audience_less_api_keys_pass() -> None:
    user = auth.verify(_token(role="authenticated", aud="authenticated", sub="00000000-0000-4000-8000-000000000123"), SECRET)
    assert (user.role, user.aud) == ("authenticated", "authenticated")
    listed = auth.verify(_token(role="authenticated", aud=["authenticated", "realtime"], sub="00000000-0000-4000-8000-000000000123"), SECRET)
    assert listed.aud == "authenticated"
    assert auth.verify(_token(role="service_role"), SECRET).role == "service_role"  # Supabase's API keys carry no aud
    assert auth.verify(_token(role="anon"), SECRET).role == "anon"


@pytest.mark.parametrize("url", ["postgresql://postgres:pw@db.abcdefgh.supabase.co:5432/postgres",
                                 "postgresql://u@localhost,db.example:5432/postgres"])
def test_the_local_jwt_secret_is_refused_off_a_local_database(url: str) -> None:
    from functions.app import create_app

    with pytest.raises(UnsafeSettings):
        Settings(database_url=url, jwt_secret=LOCAL_JWT_SECRET).require_safe_jwt_secret()
    with pytest.raises(UnsafeSettings):
        create_app(Settings(database_url=url, jwt_secret=LOCAL_JWT_SECRET))
    create_app(Settings(database_url=url, jwt_secret="the-projects-own-secret-of-32-characters-or-more"))


@pytest.mark.parametrize("url", ["", "postgresql://postgres@127.0.0.1:54322/postgres", "postgresql:///postgres",
                                 "host=/var/run/postgresql dbname=postgres"])
def test_the_local_jwt_secret_is_fine_on_a_local_database(url: str) -> None:
    settings = Settings(database_url=url, jwt_secret=LOCAL_JWT_SECRET)
    assert settings.local_database
    settings.require_safe_jwt_secret()
