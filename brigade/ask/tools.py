"""The tools the conversational admin answers with: each a read-only SQL RPC (brigade/queries/ask.sql),
its arguments with their types, ranges and defaults (the JSON schema a model is offered), the module
it belongs to, and how its rows read as a sentence. Arguments are validated here before anything
runs: an unknown tool, an unknown argument, a wrong type or another business's id is refused."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

PERIODS = ("today", "yesterday", "this_week", "last_week", "this_month", "last_month", "last_7_days", "last_30_days", "all_time")
PERIOD_WORDS = {"today": "today", "yesterday": "yesterday", "this_week": "this week", "last_week": "last week",
                "this_month": "this month", "last_month": "last month", "last_7_days": "in the last 7 days",
                "last_30_days": "in the last 30 days", "all_time": "in total"}


class Refused(Exception):
    """A tool call that is not run: the reason is a stable code, the message is for people."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class Param:
    name: str
    kind: str  # "int", "period", "venue"
    description: str
    default: Any = None
    minimum: int | None = None
    maximum: int | None = None

    def schema(self) -> dict[str, Any]:
        if self.kind == "int":
            return {"type": "integer", "minimum": self.minimum, "maximum": self.maximum, "default": self.default,
                    "description": self.description}
        if self.kind == "period":
            return {"type": "string", "enum": list(PERIODS), "default": self.default, "description": self.description}
        return {"type": ["string", "null"], "format": "uuid", "description": self.description}

    def check(self, value: Any, venues: dict[str, str]) -> Any:
        if value is None:
            return self.default
        if self.kind == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                raise Refused("invalid_arguments", f"{self.name} must be a whole number")
            if not (self.minimum or 0) <= value <= (self.maximum or value):
                raise Refused("invalid_arguments", f"{self.name} must be between {self.minimum} and {self.maximum}")
            return value
        if self.kind == "period":
            if value not in PERIODS:
                raise Refused("invalid_arguments", f"{self.name} must be one of {', '.join(PERIODS)}")
            return value
        try:
            venue = str(uuid.UUID(str(value)))
        except ValueError as exc:
            raise Refused("invalid_arguments", f"{self.name} must be a venue id") from exc
        if venue not in venues:
            raise Refused("unknown_venue", "that venue is not one you can ask about")
        return venue


def money(cents: int | None, currency: str) -> str:
    return f"{(cents or 0) / 100:,.2f} {currency}"


LISTED = 20  # an answer names at most this many rows; the rest are counted


def _names(rows: list[dict[str, Any]], fmt: Callable[[dict[str, Any]], str]) -> str:
    text = "; ".join(f"{i}. {fmt(r)}" for i, r in enumerate(rows[:LISTED], 1))
    return text + (f"; and {len(rows) - LISTED} more" if len(rows) > LISTED else "")


@dataclass(frozen=True)
class Tool:
    name: str
    module: str
    description: str        # what the model is told
    can_answer: str         # the line of the refusal's "what I can answer" list
    params: tuple[Param, ...]
    render: Callable[[list[dict[str, Any]], dict[str, Any], "Context"], str]

    @property
    def query(self) -> str:
        return f"ask_tool_{self.name}"

    def schema(self) -> dict[str, Any]:
        """The OpenAI tool definition (business_id is not a parameter: the server supplies the caller's)."""
        return {"type": "function", "function": {
            "name": self.name, "description": self.description,
            "parameters": {"type": "object", "additionalProperties": False,
                           "properties": {p.name: p.schema() for p in self.params}}}}

    def arguments(self, raw: Any, ctx: "Context") -> dict[str, Any]:
        """The validated arguments with defaults filled in; Refused for anything else."""
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise Refused("invalid_arguments", "arguments must be an object")
        raw = dict(raw)
        if "business_id" in raw:  # a model may try; only the caller's own business is ever asked about
            if str(raw.pop("business_id")) != str(ctx.business_id):
                raise Refused("other_business", "a tool may only be called for your own business")
        known = {p.name for p in self.params}
        extra = sorted(set(raw) - known)
        if extra:
            raise Refused("invalid_arguments", f"unknown argument(s) {', '.join(extra)} for {self.name}")
        return {p.name: p.check(raw.get(p.name), ctx.venues) for p in self.params}


@dataclass
class Context:
    """The caller, as public.ask_context describes them."""

    business_id: uuid.UUID
    name: str
    role: str
    currency: str
    time_zone: str
    venues: dict[str, str] = field(default_factory=dict)  # id -> name
    modules: dict[str, bool] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Context":
        return cls(uuid.UUID(str(data["business_id"])), data.get("name") or "", data.get("role") or "manager",
                   data.get("currency") or "USD", data.get("time_zone") or "UTC",
                   {str(v["id"]): v["name"] for v in data.get("venues") or []}, dict(data.get("modules") or {}))

    def venue_name(self, venue_id: str | None) -> str:
        return self.venues.get(str(venue_id), "") if venue_id else ""

    def tools(self) -> list[Tool]:
        """The tools this business can use: those of the modules it has on."""
        return [t for t in TOOLS.values() if self.modules.get(t.module, False)]


def _at(args: dict[str, Any], ctx: Context) -> str:
    name = ctx.venue_name(args.get("venue_id"))
    return f" at {name}" if name else ""


def _top(rows: list[dict[str, Any]], args: dict[str, Any], ctx: Context) -> str:
    if not rows:
        return f"No customers with orders yet{_at(args, ctx)}."
    return f"Top {len(rows)} customers by spend{_at(args, ctx)}: " + _names(
        rows, lambda r: f"{r['full_name'] or 'Guest'}, {money(r['total_spent_cents'], ctx.currency)} over {r['total_orders']} orders")


def _top_visits(rows: list[dict[str, Any]], args: dict[str, Any], ctx: Context) -> str:
    if not rows:
        return f"No customers with orders yet{_at(args, ctx)}."
    return f"Top {len(rows)} customers by visits{_at(args, ctx)}: " + _names(
        rows, lambda r: f"{r['full_name'] or 'Guest'}, {r['total_orders']} orders ({money(r['total_spent_cents'], ctx.currency)})")


def _not_seen(rows: list[dict[str, Any]], args: dict[str, Any], ctx: Context) -> str:
    if not rows:
        return f"Every customer{_at(args, ctx)} has ordered in the last {args['days']} days."
    return f"{len(rows)} customers{_at(args, ctx)} have not ordered in {args['days']} days: " + _names(
        rows, lambda r: f"{r['full_name'] or 'Guest'}, last order {r['last_order_at']:%Y-%m-%d} ({r['total_orders']} orders)")


def _segments(rows: list[dict[str, Any]], args: dict[str, Any], ctx: Context) -> str:
    if not rows:
        return f"No customers in any segment yet{_at(args, ctx)}."
    totals: dict[str, int] = {}
    for r in rows:
        totals[r["segment"]] = totals.get(r["segment"], 0) + int(r["customers"])
    parts = ", ".join(f"{seg} {n}" for seg, n in sorted(totals.items(), key=lambda kv: (-kv[1], kv[0])))
    return f"Customers per segment{_at(args, ctx)}: {parts}."


def _summary(rows: list[dict[str, Any]], args: dict[str, Any], ctx: Context) -> str:
    r = rows[0] if rows else {"orders": 0, "revenue_cents": 0, "average_order_cents": 0}
    when = PERIOD_WORDS[args["period"]]
    return (f"Revenue {when}{_at(args, ctx)}: {money(r['revenue_cents'], ctx.currency)} from {r['orders']} paid orders"
            + (f" (average {money(r['average_order_cents'], ctx.currency)})." if r["orders"] else "."))


def _by_day(rows: list[dict[str, Any]], args: dict[str, Any], ctx: Context) -> str:
    total = sum(int(r["revenue_cents"]) for r in rows)
    days = "; ".join(f"{r['day']:%a %d %b}: {money(r['revenue_cents'], ctx.currency)} ({r['orders']})" for r in rows)
    return f"Sales per day over the last {args['days']} days{_at(args, ctx)} ({money(total, ctx.currency)} in all): {days}."


def _by_venue(rows: list[dict[str, Any]], args: dict[str, Any], ctx: Context) -> str:
    when = PERIOD_WORDS[args["period"]]
    if not rows:
        return f"No paid orders {when}."
    return f"Revenue by venue {when}: " + _names(
        rows, lambda r: f"{r['venue_name']}, {money(r['revenue_cents'], ctx.currency)} from {r['orders']} orders")


def _best(rows: list[dict[str, Any]], args: dict[str, Any], ctx: Context) -> str:
    when = PERIOD_WORDS[args["period"]]
    if not rows:
        return f"Nothing sold {when}{_at(args, ctx)}."
    return f"Best sellers {when}{_at(args, ctx)}: " + _names(
        rows, lambda r: f"{r['product_name']}, {r['quantity']} sold ({money(r['revenue_cents'], ctx.currency)})")


def _qty(value: Any) -> str:
    return f"{value:f}".rstrip("0").rstrip(".") if value is not None else "0"


def _stock(rows: list[dict[str, Any]], args: dict[str, Any], ctx: Context) -> str:
    if not rows:
        return f"No stock is low{_at(args, ctx)}."
    return f"{len(rows)} stock items at risk{_at(args, ctx)}: " + _names(
        rows, lambda r: f"{r['name']} at {r['venue_name']}: {_qty(r['quantity'])} {r['unit']} left ({r['status']}, critical level "
                        f"{_qty(r['critical_level'])})")


def _bookings(rows: list[dict[str, Any]], args: dict[str, Any], ctx: Context) -> str:
    r = rows[0]
    return (f"Bookings{_at(args, ctx)}: {r['today']} today, {r['this_week']} this week; booking revenue "
            f"{money(r['revenue_this_week_cents'], ctx.currency)} this week, {money(r['revenue_total_cents'], ctx.currency)} "
            f"in total; {r['pending_holds']} holds awaiting payment.")


def _deliveries(rows: list[dict[str, Any]], args: dict[str, Any], ctx: Context) -> str:
    when = PERIOD_WORDS[args["period"]]
    if not rows:
        return f"No deliveries {when}{_at(args, ctx)}."
    return f"Deliveries {when}{_at(args, ctx)}: " + "; ".join(
        f"{r['provider']}: {r['deliveries']} ({r['delivered']} delivered, {r['cancelled']} cancelled, {r['failed']} failed"
        + (f", {r['avg_minutes_to_deliver']} min on average" if r["avg_minutes_to_deliver"] is not None else "")
        + (f", rated {r['avg_rating']}" if r["avg_rating"] is not None else "") + ")" for r in rows)


def _campaigns(rows: list[dict[str, Any]], args: dict[str, Any], ctx: Context) -> str:
    if not rows:
        return "No campaigns or automations yet."
    return "Campaigns and automations by revenue: " + _names(
        rows, lambda r: f"{r['name']} ({r['kind']}, {r['channel']}): {money(r['revenue_cents'], ctx.currency)} from "
                        f"{r['orders']} orders, {r['sends']} sent")


VENUE = Param("venue_id", "venue", "Limit to one venue (an id from the venue list); omit for all your venues")


def _n(default: int, maximum: int) -> Param:
    return Param("n", "int", "How many to list", default, 1, maximum)


def _period(default: str) -> Param:
    return Param("period", "period", "The period", default)


TOOLS: dict[str, Tool] = {t.name: t for t in (
    Tool("top_customers", "crm", "The top N customers by total spend (materialized customer stats).",
         "your top customers by spend or by visits", (_n(5, 100), VENUE), _top),
    Tool("top_customers_by_visits", "crm", "The top N customers by number of orders (visits).",
         "", (_n(5, 100), VENUE), _top_visits),
    Tool("customers_not_seen", "crm", "Customers whose last order is more than N days ago (lapsed, dormant).",
         "who hasn't ordered in N days", (Param("days", "int", "Days since the last order", 60, 1, 3650), VENUE), _not_seen),
    Tool("segment_sizes", "crm", "How many customers are in each RFM segment (CHAMPION, LOYAL, POTENTIAL, NEW, AT_RISK, LOST).",
         "how many customers are in each segment", (VENUE,), _segments),
    Tool("sales_summary", "ordering", "Revenue (after refunds), paid orders and average order value in a period.",
         "revenue and orders today, yesterday, this or last week or month, the last 7 or 30 days", (_period("today"), VENUE),
         _summary),
    Tool("sales_by_day", "ordering", "Revenue and paid orders per day for the last N days.",
         "sales per day", (Param("days", "int", "How many days back, today included", 7, 1, 92), VENUE), _by_day),
    Tool("sales_by_venue", "ordering", "Revenue and paid orders per venue in a period.", "sales by venue", (_period("today"),),
         _by_venue),
    Tool("best_sellers", "ordering", "Best-selling products by units sold in a period.", "best sellers",
         (_period("this_week"), _n(5, 50), VENUE), _best),
    Tool("stock_at_risk", "ordering", "Stock items that are out, at or below their critical level, or low (up to twice it).",
         "stock that is low or running out", (VENUE,), _stock),
    Tool("booking_figures", "bookings", "Bookings today and this week, booking revenue this week and in total, pending holds.",
         "booking figures", (VENUE,), _bookings),
    Tool("delivery_performance", "dispatch", "Deliveries per provider in a period: delivered, cancelled, failed, minutes, rating.",
         "delivery performance", (_period("last_7_days"), VENUE), _deliveries),
    Tool("campaign_results", "campaigns", "Campaigns and automations ranked by attributed revenue, with sends and orders.",
         "how your campaigns and automations performed", (_n(5, 50),), _campaigns),
)}


def capabilities(ctx: Context) -> list[str]:
    """What the caller can ask, one line per answerable kind of question."""
    return [t.can_answer for t in ctx.tools() if t.can_answer]
