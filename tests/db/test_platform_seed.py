"""The demo seed leaves the demo café's storefront live (issue 9's seed section), idempotently."""

from __future__ import annotations


import psycopg

from brigade.auth import Claims
from brigade.migrate import apply_seed
from tests.conftest import Api


def test_the_demo_storefront_is_live_after_seeding_twice(api: Api, db_dsn: str) -> None:
    with psycopg.connect(db_dsn, autocommit=True) as c:
        apply_seed(c)
        apply_seed(c)
    front = api.run(Claims.anon(), "select public.get_storefront('demo-cafe') as s")[0]["s"]
    assert front["business"]["slug"] == "demo-cafe" and front["storefront"]["theme_colors"]["primary"] == "#6F4E37"
    assert front["venues"], "the demo café shows its published venues"
    status = api.run(Claims.service(), "select public.onboarding_status('00000000-0000-4000-8000-000000000001') as s")[0]["s"]
    assert status["ready"] is True and status["published"] is True
    sub = api.run(Claims.service(), "select plan_key, status from public.business_subscriptions "
                                    "where business_id = '00000000-0000-4000-8000-000000000001'")
    assert sub == [{"plan_key": "professional", "status": "active"}]
