"""Fixtures for the order flow: fakes of Stripe, Twilio and Resend, the functions server and settings
pointed at them, a tenant with a menu. Registered for every test folder by the root conftest."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest

from brigade.settings import Settings
from functions.app import create_app
from tests.conftest import Factory, ServerThread, Tenant
from tests.fakes.http import FakeServer
from tests.ordering_kit import FakeResend, FakeStripe, FakeTwilio, Menu, build_menu, provider_settings


@dataclass
class Outside:
    stripe: FakeStripe
    twilio: FakeTwilio
    resend: FakeResend
    settings: Settings
    functions: ServerThread


@pytest.fixture
def outside(settings: Settings) -> Iterator[Outside]:
    with FakeServer() as s, FakeServer() as t, FakeServer() as r:
        psettings = provider_settings(settings, s.url, t.url, r.url)
        fakes = FakeStripe(s), FakeTwilio(t, psettings.twilio_account_sid), FakeResend(r)
        with ServerThread(create_app(psettings)) as server:
            yield Outside(*fakes, psettings, server)


@pytest.fixture
def tenant(factory: Factory) -> Tenant:
    return factory.tenant("Cafe Nova", {"ordering": True})


@pytest.fixture
def menu(conn: psycopg.Connection[dict[str, Any]], tenant: Tenant) -> Menu:
    return build_menu(conn, tenant)
