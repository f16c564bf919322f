"""The Stripe event the platform builds itself: a paid checkout.session.completed, in Stripe's shape.

Used where there is no Stripe to send it: the local checkout page (payments_provider = "log"), the
demo and the benchmarks. Production events come from Stripe and are only verified and applied.
"""

from __future__ import annotations

import time
import uuid
from typing import Any


def session_completed(*, session_id: str, payment_intent: str, order_id: str, business_id: str, amount_cents: int,
                      event_id: str | None = None) -> dict[str, Any]:
    """A checkout.session.completed event for a paid session of one order."""
    return {
        "id": event_id or f"evt_{uuid.uuid4().hex}",
        "object": "event",
        "type": "checkout.session.completed",
        "created": int(time.time()),
        "livemode": False,
        "data": {"object": {
            "id": session_id, "object": "checkout.session", "payment_status": "paid", "status": "complete",
            "amount_total": amount_cents, "payment_intent": payment_intent,
            "metadata": {"order_id": order_id, "business_id": business_id},
        }},
    }


def booking_session_completed(*, session_id: str, payment_intent: str, booking_id: str, business_id: str, amount_cents: int,
                              event_id: str | None = None) -> dict[str, Any]:
    """A checkout.session.completed event for a paid session of one booking (metadata kind=booking)."""
    event = session_completed(session_id=session_id, payment_intent=payment_intent, order_id="", business_id=business_id,
                              amount_cents=amount_cents, event_id=event_id)
    event["data"]["object"]["metadata"] = {"kind": "booking", "booking_id": booking_id, "business_id": business_id}
    return event
