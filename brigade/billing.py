"""Stripe Billing, outbound: the subscription's items follow the business's open subscription lines.

The database decides what should be billed (business_subscription_lines, app.stripe_billing_diff);
this client only asks Stripe to add and delete items, letting Stripe prorate.
"""

from __future__ import annotations

import asyncio
from typing import Any

from brigade.providers import ProviderError
from brigade.settings import Settings


class StripeBilling:
    """The official SDK pointed at settings.stripe_api_base (a fake in tests)."""

    def __init__(self, settings: Settings) -> None:
        import stripe

        self.stripe = stripe
        bases = {"api": settings.stripe_api_base.rstrip("/")} if settings.stripe_api_base else None
        self.client = stripe.StripeClient(settings.stripe_secret_key, base_addresses=bases or {}, max_network_retries=2)

    async def update_items(self, subscription_id: str, items: list[dict[str, Any]], *, idempotency_key: str) -> list[dict[str, Any]]:
        """Add and delete subscription items with prorations; returns the subscription's items as {id, price: {id}}."""
        params: dict[str, Any] = {"items": items, "proration_behavior": "create_prorations"}
        try:
            sub = await asyncio.to_thread(self.client.v1.subscriptions.update, subscription_id, params=params,
                                          options={"idempotency_key": idempotency_key})
        except self.stripe.StripeError as exc:
            raise ProviderError(f"Stripe refused the subscription update: {exc.user_message or exc}", hint="billing_sync_failed") from exc
        return [{"id": item["id"], "price": {"id": item["price"]["id"]}} for item in sub["items"]["data"]]
