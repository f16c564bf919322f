"""Stripe Connect, outbound: transfers of the platform's balance to a business's connected account.

The database decides what is owed and freezes it (app.prepare_due_payouts); this client only asks
Stripe for the transfer, with the payout's own idempotency key so a retried job can never pay twice.
"""

from __future__ import annotations

import asyncio
from typing import Any

from brigade.settings import Settings


class TransferRefused(Exception):
    """Stripe answered the transfer with a 4xx other than 429: retrying the same request cannot help."""

    def __init__(self, message: str, code: str | None) -> None:
        super().__init__(message)
        self.code = code


class StripeConnect:
    """The official SDK pointed at settings.stripe_api_base (a fake in tests)."""

    def __init__(self, settings: Settings) -> None:
        import stripe

        self.stripe = stripe
        bases = {"api": settings.stripe_api_base.rstrip("/")} if settings.stripe_api_base else None
        self.client = stripe.StripeClient(settings.stripe_secret_key, base_addresses=bases or {}, max_network_retries=2)

    async def transfer(self, request: dict[str, Any]) -> dict[str, Any]:
        """Create the transfer described by app.payout_transfer_request; returns {id, amount, destination}.
        Raises TransferRefused for a definitive refusal; other Stripe errors propagate (the event is retried)."""
        params = {k: request[k] for k in ("amount", "currency", "destination", "transfer_group", "description", "metadata")}
        try:
            # Stripe keeps idempotency keys for 24 hours: a retry later than that (a dead letter replayed)
            # finds the first transfer by its group instead of making a second one
            existing = await asyncio.to_thread(self.client.v1.transfers.list,
                                               params={"transfer_group": request["transfer_group"], "limit": 1})
            if existing.data:
                found = existing.data[0]
                return {"id": found["id"], "amount": found["amount"], "destination": found["destination"]}
            transfer = await asyncio.to_thread(self.client.v1.transfers.create, params=params,
                                               options={"idempotency_key": request["idempotency_key"]})
        except self.stripe.StripeError as exc:
            status = exc.http_status or 0
            if 400 <= status < 500 and status != 429:
                raise TransferRefused(str(exc.user_message or exc), exc.code) from exc
            raise
        return {"id": transfer["id"], "amount": transfer["amount"], "destination": transfer["destination"]}
