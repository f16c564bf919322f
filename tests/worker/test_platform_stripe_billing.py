"""Stripe Billing, outbound: plan and module changes of a Stripe-billed business reach the Stripe
subscription as item additions and deletions (with prorations), once, through the official SDK
against a fake that answers like Stripe's /v1/subscriptions/{id}."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import psycopg

from brigade.settings import Settings
from tests.conftest import Tenant
from tests.fakes.http import FakeServer, Recorded, Reply
from worker import main as worker_main


class FakeStripeSubscriptions:
    def __init__(self, server: FakeServer) -> None:
        self.items: list[dict[str, Any]] = []
        self.counter = itertools.count(1)
        self.by_key: dict[str, Reply] = {}
        server.route("POST", r"/v1/subscriptions/(?P<sid>sub_[A-Za-z0-9]+)", self._update)

    def _update(self, req: Recorded, match: Any) -> Reply:
        key = req.headers.get("idempotency-key", "")
        if key in self.by_key:
            return self.by_key[key]
        form = {k: v[0] for k, v in req.form.items()}
        n = 0
        while f"items[{n}][id]" in form or f"items[{n}][price]" in form:
            if form.get(f"items[{n}][deleted]") == "true":
                self.items = [i for i in self.items if i["id"] != form[f"items[{n}][id]"]]
            elif f"items[{n}][price]" in form:
                self.items.append({"id": f"si_{next(self.counter)}", "object": "subscription_item",
                                   "price": {"id": form[f"items[{n}][price]"], "object": "price"}})
            n += 1
        reply = Reply(200, {"id": match["sid"], "object": "subscription", "status": "active",
                            "items": {"object": "list", "data": list(self.items), "has_more": False}})
        self.by_key[key] = reply
        return reply


def test_plan_and_module_changes_reach_the_stripe_subscription(conn: psycopg.Connection[dict[str, Any]], tenant: Tenant,
                                                               settings: Settings) -> None:
    b = tenant.business_id
    for table, key in (("plans", "starter"), ("plans", "growth"), ("modules", "ordering"), ("modules", "crm")):
        conn.execute(f"update public.{table} set stripe_price_id = %s where key = %s", (f"price_{key}", key))
    conn.execute("update public.business_subscriptions set billing_provider = 'stripe', stripe_subscription_id = 'sub_9' "
                 "where business_id = %s", (b,))
    with FakeServer() as server:
        fake = FakeStripeSubscriptions(server)
        stripe_settings = settings.model_copy(update={"payments_provider": "stripe", "stripe_secret_key": "sk_test_brigade",
                                                      "stripe_api_base": server.url})

        def drain() -> None:
            asyncio.run(worker_main.run(stripe_settings, drain=True))

        conn.execute("select app.change_plan(%s, 'growth')", (b,))
        drain()
        calls = server.calls("POST", r"/v1/subscriptions/sub_9")
        assert len(calls) == 1, "two line events, one sync: the second finds nothing left to do"
        form = {k: v[0] for k, v in calls[0].form.items()}
        assert form["proration_behavior"] == "create_prorations"
        assert [form["items[0][price]"], form["items[1][price]"]] == ["price_growth", "price_ordering"]
        assert sorted(i["price"]["id"] for i in fake.items) == ["price_growth", "price_ordering"]

        conn.execute("select app.set_business_module(%s, 'crm', true)", (b,))
        conn.execute("select app.change_plan(%s, 'starter')", (b,))
        drain()
        assert sorted(i["price"]["id"] for i in fake.items) == ["price_crm", "price_ordering", "price_starter"]
        lines = conn.execute("select item_key, ends_at is null as open, stripe_item_id, stripe_item_removed_at is not null as removed "
                             "from public.business_subscription_lines where business_id = %s order by starts_at, item_key", (b,)).fetchall()
        on_stripe = {i["id"] for i in fake.items}
        assert {line["stripe_item_id"] for line in lines if line["open"]} == on_stripe
        growth = [line for line in lines if line["item_key"] == "growth"]
        assert growth and growth[0]["removed"] is True and growth[0]["stripe_item_id"] not in on_stripe
        before = len(server.calls("POST", r"/v1/subscriptions/.*"))
        drain()
        assert len(server.calls("POST", r"/v1/subscriptions/.*")) == before, "in sync: nothing is sent"
