"""Platform topics and maintenance jobs."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import httpx

from psycopg.types.json import Jsonb

from brigade import i18n, queries
from brigade.billing import StripeBilling
from brigade.connect import StripeConnect, TransferRefused
from brigade.providers import ProviderError
from brigade.events import Event
from worker.notify import deliver, mark
from worker.registry import Context, registry


@registry.on("business.module_changed")
async def module_changed(event: Event, ctx: Context) -> None:
    """Log the switch; module setup/teardown of later modules hooks in here."""
    ctx.log.info(
        "module switched",
        extra={"action": "module_changed", "business_id": str(event.business_id), **event.payload},
    )


@registry.scheduled("maintenance.prune", "15 4 * * *")
async def prune(ctx: Context) -> None:
    """Forget old scheduled-run claims, workers gone for an hour and rate-limit hits past their window."""
    await ctx.conn.execute(queries.get("prune_runs"), {"days": 30})
    await ctx.conn.execute(queries.get("prune_workers"))
    await ctx.conn.execute(queries.get("prune_rate_limit_hits"))


# -- issue 9: invitations, claim codes and billing periods -----------------------------------------

async def _send_once(event: Event, ctx: Context, event_key: str, channel: str, recipient: str, template: str,
                     subject: str, text: str) -> bool:
    """Send one message at most once per (event_key, channel, recipient) through notification_log."""
    row = await (await ctx.conn.execute(queries.get("notification_once"), {
        "business_id": event.business_id, "event_key": event_key, "channel": channel, "recipient": recipient,
        "template": template})).fetchone()
    if row is None:
        return False
    try:
        sent = await deliver(ctx, channel, recipient, subject, text, idempotency_key=f"{event_key}:{row['id']}",
                             business_id=event.business_id)
    except ProviderError as exc:
        await mark(ctx, event.business_id, row["id"], None, exc.message)
        raise
    await mark(ctx, event.business_id, row["id"], sent, None)
    return True


@registry.on("staff.invited")
async def staff_invited(event: Event, ctx: Context) -> None:
    """Email the invitation link (the token travels only in the event and the email)."""
    p = event.payload
    base = (ctx.settings.public_url or "http://127.0.0.1:3000").rstrip("/")
    link = f"{base}/invitations/accept?token={p['token']}"
    text = (f"You are invited to join {p['business_name']} on Brigade as {p['role']}.\n"
            f"Accept before {p['expires_at']}: {link}\nSign in with this email address ({p['email']}).")
    await _send_once(event, ctx, f"staff.invited:{p['invitation_id']}", "email", p["email"], "staff_invitation",
                     f"Join {p['business_name']} on Brigade", text)


@registry.on("customer.claim_requested")
async def claim_requested(event: Event, ctx: Context) -> None:
    """Send the one-time code that lets a signed-in customer claim their guest orders."""
    p = event.payload
    row = await (await ctx.conn.execute(queries.get("claim_code_locale"), {"business_id": event.business_id,
                                                                          "claim_id": p["claim_id"]})).fetchone()
    loc = row["locale"] if row else None
    text = i18n.text(loc, "claim.code", business=p["business_name"], code=p["code"])
    await _send_once(event, ctx, f"customer.claim:{p['claim_id']}", p["channel"], p["destination"], "order_claim_code",
                     i18n.text(loc, "claim.subject", business=p["business_name"]), text)


@registry.scheduled("billing.close_periods", "5 0 * * *")
async def close_billing_periods(ctx: Context) -> None:
    """Finalise the invoices of periods that ended and open the next period's draft."""
    await ctx.conn.execute("select app.close_due_billing_periods(now())")


@registry.scheduled("platform.payouts", "30 1 * * *")
async def scheduled_payouts(ctx: Context) -> None:
    """Each business's weekly or monthly payout for its last complete period (recomputed while pending);
    then every pending scheduled payout whose period is over is sent (payout.transfer_requested) or carried
    forward; then each driver's pending earnings are rolled into a driver payout (transfer or manual)."""
    row = await (await ctx.conn.execute(queries.get("run_scheduled_payouts"))).fetchone()
    sent = await (await ctx.conn.execute(queries.get("prepare_due_payouts"))).fetchone()
    drivers = await (await ctx.conn.execute(queries.get("run_driver_payouts"))).fetchone()
    ctx.log.info("scheduled payouts", extra={"action": "platform_payouts", "computed": row["n"] if row else 0,
                                             "sent": len(sent["payouts"]) if sent else 0,
                                             "driver_payouts": len(drivers["payouts"]) if drivers else 0})


async def _transfer(event: Event, ctx: Context, payout_id: str, request_query: str, record_query: str) -> None:
    """Create the Stripe transfer the database asks for (none once sent, paid or failed) and record the answer."""
    if ctx.settings.payments_provider != "stripe":
        return
    ids = {"business_id": event.business_id, "payout_id": payout_id}
    row = await (await ctx.conn.execute(queries.get(request_query), ids)).fetchone()
    request = row["request"] if row else None
    if not request:
        return
    try:
        transfer = await StripeConnect(ctx.settings).transfer(request)
        outcome = {"transfer_id": transfer["id"], "error": None}
    except TransferRefused as exc:
        outcome = {"transfer_id": None, "error": f"{exc.code or 'refused'}: {exc}"}
    status = await (await ctx.conn.execute(queries.get(record_query), {**ids, **outcome})).fetchone()
    ctx.log.info("payout transfer", extra={"action": "payout_transfer", "topic": event.topic, "business_id": str(event.business_id),
                                           "payout_id": payout_id, "transfer_id": outcome["transfer_id"],
                                           "error": outcome["error"], "status": status["status"] if status else None})


@registry.on("payout.transfer_requested")
async def transfer_payout(event: Event, ctx: Context) -> None:
    """One Stripe transfer per business payout to its connected account, keyed `payout:<id>`: a retry
    (crash between Stripe's answer and the commit) gets Stripe's first answer back, never a second
    transfer. The payout turns paid on Stripe's transfer.created webhook."""
    await _transfer(event, ctx, event.payload["payout_id"], "payout_transfer_request", "record_payout_transfer")


@registry.on("driver_payout.transfer_requested")
async def transfer_driver_payout(event: Event, ctx: Context) -> None:
    """One Stripe transfer per driver payout to the driver's Connect Express account, keyed
    `driver-payout:<id>`; a refusal sends the payout to manual payment."""
    await _transfer(event, ctx, event.payload["driver_payout_id"], "driver_payout_transfer_request", "record_driver_payout_transfer")


@registry.on("billing.sync_requested")
async def sync_stripe_billing(event: Event, ctx: Context) -> None:
    """Bring the Stripe subscription's items in line with the open subscription lines (Stripe prorates).
    Serialised per business by the subscription row lock; the same diff is the same idempotency key."""
    if ctx.settings.payments_provider != "stripe":
        return
    await ctx.conn.execute("select 1 from public.business_subscriptions where business_id = %s for update", (event.business_id,))
    row = await (await ctx.conn.execute("select app.stripe_billing_diff(%s) as d", (event.business_id,))).fetchone()
    diff = row["d"] if row else None
    if not diff or (not diff["delete"] and not diff["add"]):
        return
    items = [{"id": d["stripe_item_id"], "deleted": True} for d in diff["delete"]] + [{"price": a["price"]} for a in diff["add"]]
    key = "billing-sync:" + hashlib.sha256(json.dumps(diff, sort_keys=True).encode()).hexdigest()[:32]
    result = await StripeBilling(ctx.settings).update_items(diff["subscription_id"], items, idempotency_key=key)
    await ctx.conn.execute("select app.record_stripe_billing_sync(%s, %s, %s)", (event.business_id, Jsonb(diff), Jsonb(result)))
    ctx.log.info("stripe billing synced", extra={"action": "billing_synced", "business_id": str(event.business_id),
                                                  "added": len(diff["add"]), "deleted": len(diff["delete"])})


@registry.scheduled("platform.retention", "40 4 * * *")
async def retention(ctx: Context) -> None:
    """Nightly (04:40 UTC): the retention policy (app.retention_policies) applied to every business."""
    row = await (await ctx.conn.execute(queries.get("apply_retention"))).fetchone()
    ctx.log.info("retention applied", extra={"action": "platform_retention", **(row["result"] if row else {})})


def alert_text(alert: dict[str, Any]) -> tuple[str, str]:
    """(subject, text) of an alert notification."""
    what = alert["description"] + (f" [{alert['subject']}]" if alert["subject"] else "")
    if alert["action"] == "closed":
        return f"[Brigade] resolved: {alert['rule']}", f"Resolved: {what} (alert #{alert['alert_id']})."
    again = " (reminder %d)" % (alert["notifications"] - 1) if alert["action"] == "renotified" else ""
    return (f"[Brigade] alert: {alert['rule']}{again}",
            f"Alert #{alert['alert_id']}{again}: {what} — value {alert['value']} reached the threshold {alert['threshold']}. "
            f"Acknowledge it with POST /functions/v1/admin/alerts/{alert['alert_id']}/ack.")


async def notify_alert(ctx: Context, alert: dict[str, Any]) -> list[str]:
    """Email and webhook (Slack's incoming-webhook JSON: {"text": ...}) for one alert; returns where it went.
    A refusal is logged: the alert's state has moved on, the next reminder tries again."""
    subject, text = alert_text(alert)
    emails = alert["emails"] or [e.strip() for e in ctx.settings.alert_emails.split(",") if e.strip()]
    hooks = alert["webhooks"] or ([ctx.settings.alert_webhook_url] if ctx.settings.alert_webhook_url else [])
    told: list[str] = []
    for email in emails:
        try:
            await ctx.providers.email.send(email, subject, text,
                                           idempotency_key=f"alert:{alert['alert_id']}:{alert['action']}:{alert['notifications']}:{email}")
            told.append(email)
        except ProviderError as exc:
            ctx.log.warning("alert email refused", extra={"action": "alert_notify_failed", "alert_id": alert["alert_id"], "error": exc.message})
    async with httpx.AsyncClient(timeout=10) as client:
        for url in hooks:
            try:
                r = await client.post(url, json={"text": f"{subject}\n{text}", "alert": alert})
                r.raise_for_status()
                told.append(url)
            except httpx.HTTPError as exc:
                ctx.log.warning("alert webhook failed", extra={"action": "alert_notify_failed", "alert_id": alert["alert_id"],
                                                                "error": str(exc)})
    return told


@registry.scheduled("platform.alerts", "* * * * *")
async def alerts(ctx: Context) -> None:
    """Every minute: evaluate the alert rules (app.evaluate_alerts) and tell the operator what opened,
    is still open on its reminder schedule, or cleared."""
    row = await (await ctx.conn.execute(queries.get("evaluate_alerts"))).fetchone()
    for alert in (row["alerts"] if row else []):
        told = await notify_alert(ctx, alert)
        ctx.log.info("alert", extra={"action": f"alert_{alert['action']}", "alert_id": alert["alert_id"], "rule": alert["rule"],
                                     "subject": alert["subject"], "told": told})
