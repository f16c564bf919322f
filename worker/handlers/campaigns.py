"""Campaigns & automations: the dormancy evaluator, campaign launches, and every marketing send.

A send is a `campaign_sends` row created by the database when a trigger matched a rule (or a
campaign went out); its `automation.due` / `campaign.send` event arrives after the rule's delay.
`app.claim_marketing_sends` locks the event's send and up to `marketing_claim_batch` - 1 other due
ones (SKIP LOCKED) and re-checks consent, deletion, blocks, suppression, allergens, critical stock,
the frequency cap and quiet hours for all of them at once; it commits before any provider is called,
leaving the sends to go out in `sending`. Each is then marked handed over (committed) just before its
provider call, and recorded by `app.complete_marketing_sends` in the same commit that hands over the
next; a duplicate event or a second worker finds the row taken.
A crash never sends one twice: the `campaigns.recover` job makes a stale claim that was never handed
over due again and fails one that was (`interrupted`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from brigade import i18n, queries
from brigade.events import Event
from brigade.providers import ProviderError
from worker.notify import deliver
from worker.push import push_to
from worker.registry import Context, registry

PLACEHOLDER = re.compile(r"\{\{\s*([a-z_]+)\s*\}\}")


def fill(template: str, variables: dict[str, Any]) -> str:
    """`{{name}}` placeholders from the send's variables; an unknown one renders empty."""
    return PLACEHOLDER.sub(lambda m: str(variables.get(m.group(1), "")), template)


def unsubscribe_url(ctx: Context, claim: dict[str, Any], business_id: Any) -> str:
    query = urlencode({"b": str(business_id), "c": claim["customer_id"], "ch": claim["unsubscribe_channel"], "t": claim["unsubscribe_token"]})
    return f"{ctx.settings.functions_url}/consent/unsubscribe?{query}"


def render(ctx: Context, claim: dict[str, Any], business_id: Any) -> tuple[str, str, dict[str, str]]:
    """(subject, text, email headers). Marketing email always carries the signed unsubscribe link
    (in the text and as List-Unsubscribe, one-click); marketing SMS always says how to stop."""
    variables = dict(claim["vars"])
    headers: dict[str, str] = {}
    if claim["marketing"]:
        link = unsubscribe_url(ctx, claim, business_id)
        variables["unsubscribe_url"] = link
        if claim["channel"] == "email":
            headers = {"List-Unsubscribe": f"<{link}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}
    text = fill(claim["body"], variables).strip()
    subject = fill(claim["subject"] or "", variables).strip() or str(variables.get("business_name", ""))
    loc = claim.get("locale")
    if variables.get("review_url") and variables["review_url"] not in text:
        text += f"\n{variables['review_url']}" if claim["channel"] == "email" else " " + i18n.text(loc, "marketing.review_link", url=variables["review_url"])
    if claim["marketing"] and claim["channel"] == "email" and variables["unsubscribe_url"] not in text:
        text += "\n\n--\n" + i18n.text(loc, "marketing.email_footer", business=variables.get("business_name", ""), url=variables["unsubscribe_url"])
    if claim["marketing"] and claim["channel"] == "sms" and "STOP" not in text.upper():
        text += " " + i18n.text(loc, "marketing.sms_stop")
    return subject, text, headers


def localise(claim: dict[str, Any], language: dict[str, Any] | None) -> None:
    """The rule's own text in the customer's language when it has one (else its base text), and the
    locale the fixed footers use."""
    if not language:
        return
    claim["locale"] = language["locale"]
    translations = language["translations"] or {}
    wanted = language["locale"] or ""
    version = translations.get(wanted) or translations.get(wanted.split("-")[0])
    if version:
        claim["body"] = version["body"]
        claim["subject"] = version.get("subject") or claim["subject"]


async def send(event: Event, ctx: Context) -> None:
    """The event's send and up to marketing_claim_batch - 1 other due ones, claimed and checked in one call
    that commits before any provider is called; then one commit between provider calls records the last
    outcome and marks the next send handed over. That work runs on a second connection: the event's
    transaction only acknowledges the event."""
    send_id = event.payload["send_id"]
    async with ctx.pool.connection() as own:
        rows = await (await own.execute(queries.get("claim_marketing_sends"), {
            "business_id": event.business_id, "send_id": send_id, "batch": ctx.settings.marketing_claim_batch})).fetchall()
        await own.commit()
        ready: list[Prepared] = []
        for row in rows:
            claim: dict[str, Any] = row["claim"]
            if claim["action"] == "send":
                ready.append(await prepare(ctx, own, claim))
            else:
                ctx.log.info("marketing send not sent", extra={"action": "marketing_" + claim["action"], "send_id": claim["send_id"],
                                                                "business_id": claim["business_id"], "reason": claim.get("reason")})
        await own.commit()
        done: list[dict[str, Any]] = []
        for item in ready:
            if not await step(own, done, item.claim):
                ctx.log.warning("marketing send no longer ours", extra={"action": "marketing_lost_claim", "send_id": item.claim["send_id"],
                                                                         "business_id": item.claim["business_id"]})
                continue
            done = [await deliver_one(ctx, item)]
        if done:
            await step(own, done, None)


@dataclass
class Prepared:
    claim: dict[str, Any]
    subject: str
    text: str
    headers: dict[str, str]
    subs: list[Any]


async def step(own: Any, done: list[dict[str, Any]], claim: dict[str, Any] | None) -> bool:
    """One commit: the outcomes known so far recorded, the next send marked handed over (False: not ours)."""
    row = await (await own.execute(queries.get("marketing_send_step"), {
        "results": json.dumps(done), "business_id": claim and claim["business_id"], "send_id": claim and claim["send_id"]})).fetchone()
    await own.commit()
    return bool(row and row["started"])


async def prepare(ctx: Context, own: Any, claim: dict[str, Any]) -> Prepared:
    """A claimed send rendered in the customer's language, with its push subscriptions (read only)."""
    business_id = claim["business_id"]
    if claim["trigger"] == "order.review_request" and claim["vars"].get("order_id"):
        # the review page needs the order's access token: the proof submit_review asks for
        order = await (await own.execute(queries.get("review_request_order"), {
            "business_id": business_id, "order_id": claim["vars"]["order_id"]})).fetchone()
        if order:
            claim["vars"]["review_url"] = ctx.settings.review_url.format(order_id=order["id"], access_token=order["access_token"])
    localise(claim, await (await own.execute(queries.get("marketing_language"), {
        "business_id": business_id, "send_id": claim["send_id"]})).fetchone())
    subject, text, headers = render(ctx, claim, business_id)
    subs: list[Any] = []
    if claim["channel"] == "push":
        claim["recipient"] = f"customer:{claim['customer_id']}"
        subs = await (await own.execute(queries.get("push_subscriptions_of_customer"), {
            "business_id": business_id, "customer_id": claim["customer_id"]})).fetchall()
    return Prepared(claim, subject, text, headers, subs)


async def deliver_one(ctx: Context, item: Prepared) -> dict[str, Any]:
    """Hands one send to its provider; its outcome for app.complete_marketing_sends."""
    claim = item.claim
    business_id, send_id = claim["business_id"], claim["send_id"]
    outcome = {"business_id": business_id, "send_id": send_id, "recipient": claim["recipient"], "template": claim["trigger"]}
    try:
        if claim["channel"] == "push":
            payload = {"title": item.subject, "body": item.text, "tag": f"marketing-{send_id}",
                       **({"unsubscribe_url": unsubscribe_url(ctx, claim, business_id)} if claim["marketing"] else {})}
            sent = await push_to(ctx, business_id, item.subs, payload)
        else:
            sent = await deliver(ctx, claim["channel"], claim["recipient"], item.subject, item.text, idempotency_key=f"marketing:{send_id}",
                                 business_id=business_id, status_callback=f"{ctx.settings.functions_url}/twilio-sms/status",
                                 headers=item.headers or None)
    except ProviderError as exc:
        ctx.log.warning("marketing send failed", extra={"action": "marketing_failed", "send_id": send_id, "error": exc.message})
        return {**outcome, "provider": None, "message_id": None, "cost_cents": 0, "error": exc.message}
    ctx.log.info("marketing sent", extra={"action": "marketing_sent", "send_id": send_id, "channel": claim["channel"],
                                          "business_id": business_id})
    return {**outcome, "provider": sent.provider, "message_id": sent.message_id, "cost_cents": sent.cost_cents, "error": None}


registry.on("automation.due")(send)
registry.on("campaign.send")(send)


@registry.on("campaign.due")
async def campaign_due(event: Event, ctx: Context) -> None:
    """A scheduled campaign's time: its segment becomes sends (nothing if it moved or was cancelled)."""
    row = await (await ctx.conn.execute(queries.get("launch_campaign"), {"business_id": event.business_id,
                                                                         "campaign_id": event.payload["campaign_id"]})).fetchone()
    ctx.log.info("campaign launched", extra={"action": "campaign_launched", "campaign_id": event.payload["campaign_id"],
                                             "recipients": row["recipients"] if row else 0})


@registry.scheduled("campaigns.dormant", "45 3 * * *")
async def dormant(ctx: Context) -> None:
    """After the CRM nightly (03:30 UTC): every dormant-N-days rule, set-based; sends are enqueued."""
    row = await (await ctx.conn.execute(queries.get("evaluate_dormant_automations"))).fetchone()
    ctx.log.info("dormant automations", extra={"action": "campaigns_dormant", "sends": row["sends"] if row else 0})


@registry.scheduled("campaigns.recover", "*/5 * * * *")
async def recover(ctx: Context) -> None:
    """Every 5 minutes: sends a crashed worker left in flight past their lease (app.recover_marketing_sends)."""
    row = await (await ctx.conn.execute(queries.get("recover_marketing_sends"))).fetchone()
    if row and row["recovered"]:
        ctx.log.warning("marketing sends recovered", extra={"action": "campaigns_recovered", "sends": row["recovered"]})


@registry.scheduled("campaigns.abandoned_carts", "*/10 * * * *")
async def abandoned_carts(ctx: Context) -> None:
    """Every 10 minutes: carts idle past a cart.abandoned rule's minutes become one send per cart."""
    row = await (await ctx.conn.execute(queries.get("evaluate_abandoned_carts"))).fetchone()
    ctx.log.info("abandoned carts", extra={"action": "campaigns_abandoned_carts", "sends": row["sends"] if row else 0})
