"""`brigade voice-demo` against the functions app with the local (`log`) providers and the seed."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest

from brigade.migrate import apply_seed
from brigade.settings import Settings
from brigade.voice import demo
from functions.app import create_app
from tests.conftest import Factory, ServerThread


def test_voice_demo_places_a_phone_order_with_the_log_providers(conn: psycopg.Connection[dict[str, Any]], factory: Factory,
                                                                 settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    apply_seed(conn)
    apply_seed(conn)  # the seed is idempotent: the welcome credits are granted once
    assert conn.execute("select balance from public.voice_credit_balances").fetchall() == [{"balance": 1000}]
    local = settings.model_copy(update={"twilio_auth_token": "local-token"})
    with ServerThread(create_app(local)) as server:
        assert demo.run(local.model_copy(update={"functions_port": server.port})) == 0
    out = capsys.readouterr().out
    assert "texted a payment link" in out and "'outcome': 'ordered'" in out and "credit balance now 980" in out
    order = conn.execute("select channel, payment_status, checkout_url from public.orders").fetchone()
    assert order and order["channel"] == "phone" and order["payment_status"] == "unpaid"
    sms = [json.loads(line) for line in local.outbox_file.read_text().splitlines() if '"sms"' in line]
    assert sms and order["checkout_url"] in sms[-1]["body"]


def test_voice_demo_needs_the_token(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert demo.run(settings.model_copy(update={"twilio_auth_token": ""})) == 2
    assert "BRIGADE_TWILIO_AUTH_TOKEN" in capsys.readouterr().out
