"""CRM: the nightly run at 03:30 UTC, and the double opt-in confirmation email."""

from __future__ import annotations

from brigade import i18n, queries
from brigade.events import Event
from brigade.providers import ProviderError
from worker.notify import deliver
from worker.registry import Context, registry




@registry.scheduled("crm.nightly", "30 3 * * *")
async def nightly(ctx: Context) -> None:
    """Deletions past their grace, RFM re-bucketing, derived preferences, segments, birthdays, dormancy."""
    row = await (await ctx.conn.execute(queries.get("crm_nightly"))).fetchone()
    ctx.log.info("crm nightly", extra={"action": "crm_nightly", **(row["result"] if row else {})})


@registry.on("consent.confirmation_requested")
async def confirmation_requested(event: Event, ctx: Context) -> None:
    """Email the double opt-in link (the token exists in clear only in this event)."""
    p = event.payload
    who = await (await ctx.conn.execute(queries.get("consent_recipient"), {"business_id": event.business_id, "customer_id": p["customer_id"],
                                                   "venue_id": p["venue_id"]})).fetchone()
    if not who or not who["email"]:
        return
    key = f"consent.confirmation_requested:{p['customer_id']}:{p['channel']}:{p['token'][:8]}"
    link = f"{ctx.settings.functions_url}/consent/confirm?token={p['token']}"
    loc = who["locale"]
    text = i18n.text(loc, "consent.confirm", business=who["business_name"], venue=who["venue_name"],
                     channel=i18n.text(loc, "consent.channel." + p["channel"].split("_")[0].lower()), url=link)
    params = {"business_id": event.business_id, "event_key": key, "recipient": who["email"], "customer_id": p["customer_id"],
              "venue_id": p["venue_id"]}
    try:
        sent = await deliver(ctx, "email", who["email"], i18n.text(loc, "consent.confirm_subject", business=who["business_name"]), text, idempotency_key=key)
    except ProviderError as exc:
        await ctx.conn.execute(queries.get("record_consent_email"), {**params, "status": "failed", "provider": None, "message_id": None, "cost": 0, "error": exc.message})
        raise
    await ctx.conn.execute(queries.get("record_consent_email"), {**params, "status": "sent", "provider": sent.provider, "message_id": sent.message_id,
                                 "cost": sent.cost_cents, "error": None})
