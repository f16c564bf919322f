"""Rows for the two-tenant RLS walk, one file per module.

`tests/db/test_tenancy_rls.py` builds two businesses with the core rows (menu, orders, payments,
refunds, CRM dossier, rewards), then calls `seed(ctx)` of every module file in this package for each
tenant. A module that adds tables to `public` adds a file here that puts rows in them for the tenant
it is given, and declares which of its tables are platform catalogues, service-only, or anon-readable.

A module file may define:
    CATALOGUE: set[str]              readable by everyone, writable by no API role
    SERVICE_ONLY: set[str]           no API role holds any privilege
    ANON_READABLE: dict[str, str]    table -> SQL filter that must hold for every row anon sees
    def seed(ctx: TenantRows) -> None
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from types import ModuleType
from typing import Any
from uuid import UUID

import psycopg

from tests.conftest import Api, Factory, Tenant


@dataclass
class TenantRows:
    conn: psycopg.Connection[dict[str, Any]]
    api: Api
    factory: Factory
    tenant: Tenant
    menu: Any            # tests.ordering_kit.Menu of this tenant
    orders: list[dict[str, Any]]  # two paid orders (main venue, back venue) as place_order returned them
    customer: UUID       # the customer of the first order


def modules() -> list[ModuleType]:
    return [importlib.import_module(f"{__name__}.{m.name}") for m in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name)]


def declared(name: str) -> Any:
    """The union of one declaration (CATALOGUE, SERVICE_ONLY or ANON_READABLE) over all module files."""
    out: Any = {} if name == "ANON_READABLE" else set()
    for mod in modules():
        out.update(getattr(mod, name, None) or ())
    return out
