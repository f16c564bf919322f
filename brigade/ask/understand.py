"""Understanding an admin's question as tool calls. Two backends behind one interface, as for voice
ordering: an offline, deterministic rule-based parser for the common questions (top customers by
spend or visits, customers not seen in N days, segment sizes, revenue in a period, sales by day or
venue, best sellers, low stock, bookings, deliveries, campaigns), and an OpenAI-compatible chat
completions endpoint with tool calling, chosen by settings (`ask_backend`). The model sees the
question, the caller's venue names and what the tools return, nothing else, and it only ever
proposes calls: every one is validated and run (read only, as the caller) by the service."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import logging
import re
import uuid
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Protocol

import httpx

from brigade.ask.tools import Context
from brigade.settings import Settings

log = logging.getLogger("brigade.ask")
MODEL_ROWS = 50  # rows of one tool result sent to the model (it is told how many there are in all)


@dataclass
class CallResult:
    """One tool call as it was made: validated arguments, outcome (ok, refused, error), rows, sentence."""

    tool: str
    arguments: dict[str, Any]
    status: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    reason: str | None = None
    message: str | None = None
    text: str = ""

    def for_model(self) -> dict[str, Any]:
        """What the model is shown of the call: the rows (the first MODEL_ROWS, and how many there are), or why
        it was not run."""
        if self.status == "ok":
            shown = {"rows": self.rows[:MODEL_ROWS], "row_count": len(self.rows)}
            return shown | ({"truncated": True} if len(self.rows) > MODEL_ROWS else {})
        return {"refused" if self.status == "refused" else "error": self.reason, "message": self.message}

    def for_log(self) -> dict[str, Any]:
        return {"tool": self.tool, "arguments": self.arguments, "status": self.status, "reason": self.reason,
                "rows": len(self.rows)}


Run = Callable[[str, Any], Awaitable[CallResult]]


@dataclass
class Plan:
    """What a question asks for: tool calls (name, raw arguments), or why it cannot be answered."""

    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    refusal: str | None = None   # reason code: unsupported, write, unknown_venue, unsupported_period
    message: str | None = None


class AskerFailed(Exception):
    """The backend could not understand the question (the endpoint failed or answered nonsense)."""


class Asker(Protocol):
    name: str

    async def answer(self, question: str, ctx: Context, run: Run) -> Plan: ...


# ---- words ---------------------------------------------------------------------------------------

NUMBERS = {"one": 1, "a": 1, "an": 1, "single": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
           "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "fifteen": 15, "twenty": 20, "thirty": 30,
           "forty": 40, "fifty": 50, "sixty": 60, "ninety": 90, "hundred": 100, "couple": 2, "few": 3}
UNIT_DAYS = {"day": 1, "week": 7, "fortnight": 14, "month": 30, "year": 365}
NUM = r"(\d+|" + "|".join(sorted(NUMBERS, key=len, reverse=True)) + r")"

WRITE_START = re.compile(
    r"^(?:(?:please|pls|hey|ok|okay|now|just|and|also)\s+)*(?:(?:can|could|would|will) you\s+(?:please\s+)?|i want you to\s+"
    r"|go ahead and\s+|i need you to\s+|you should\s+)?"
    r"(delete|remove|erase|drop|update|change|set|send|refund|cancel|create|add|insert|email|text|sms|message|ban|block|edit"
    r"|rename|disable|enable|mark|reset|wipe|truncate|purge|grant|award|apply|schedule|launch|book|order|restock|"
    r"reorder|adjust|increase|decrease|raise|lower|move|merge|unsubscribe|subscribe|tag|note)\b")
WRITE_ANYWHERE = re.compile(r"\bgive (\w+ ){0,4}(discounts?|points|credits?|vouchers?|refunds?|coupons?|rewards?)\b|\b(drop table|delete from|truncate|insert into|update \w+ set|alter table|grant all)\b|;\s*--")
UNSUPPORTED_PERIOD = re.compile(r"\b(this|last|next|previous) (year|quarter)\b|\b(19|20)\d\d\b|\btomorrow\b|\bnext (week|month|weekend)\b"
                                r"|\b(january|february|march|april|june|july|august|september|october|november|december)\b"
                                r"|\b(monday|tuesday|wednesday|thursday|friday|saturday|sunday)s?\b|\bytd\b|\byear to date\b")
NOT_VENUES = {"january", "february", "march", "april", "may", "june", "july", "august", "september", "october", "november",
              "december", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday", "christmas", "easter",
              "brigade", "i", "total", "all", "once"}

CUSTOMER = r"\b(customers?|guests?|clients?|diners?|regulars?|patrons?|people|who)\b"
NOT_SEEN = re.compile(r"\b(hasn'?t|haven'?t|have not|has not|not|no longer|stopped|didn'?t|did not)\b[\w' ]{0,40}?"
                      r"\b(visit\w*|seen|been( back| in)?|order\w*|come|came|return\w*|bought|purchas\w*|shop\w*|ate|eaten)\b"
                      r"|\b(lapsed|dormant|inactive|lost touch|gone quiet|churned|churning|not been back|haven'?t been back"
                      r"|stopped coming|absent|missing)\b")
VISITS = re.compile(r"\b(visits?|visited|visiting|frequent\w*|often|most orders|number of orders|order count|orders? the most"
                    r"|came the most|comes? (in )?the most|most loyal|loyalest|regulars)\b")
SPEND = re.compile(r"\b(spend\w*|spent|spenders?|revenue|money|value|ltv|lifetime|paid|pay the most|biggest|richest|valuable|wallet)\b")
TOP = re.compile(r"\b(top|best|biggest|most|highest|largest|greatest|leading|favourite|favorite|vip|rank\w*|who (are|is) my)\b")
SEGMENT = re.compile(r"\b(segments?|rfm|champions?|at[ -]risk|lost customers|new customers|potential|loyal customers|"
                     r"customer mix|customer base|breakdown of (my )?customers|how many (loyal|lost|new))\b")
BEST_SELLER = re.compile(r"\b(best[ -]?sell\w*|top[ -]?sell\w*|sells? (the )?best|sold (the )?most|sell (the )?most|most popular|"
                         r"popular (items?|products?|dishes|dish|drinks?|things?)|top (\w+ )?(products?|items?|dishes|drinks?|menu items?)|"
                         r"what (do we|did we|are we|have we) (sell|sold|selling)( the)? most|moving the most|most (ordered|sold))\b")
STOCK = re.compile(r"\b(stock|inventory|running (out|low)|run(ning)? out|low on|reorder|restock|out of|supplies|ingredients)\b")
BOOKING = re.compile(r"\b(bookings?|reservations?|booked|classes|sessions|covers)\b")
DELIVERY = re.compile(r"\b(deliver\w*|couriers?|drivers?|doordash|uber|dispatch\w*|drop-?offs?)\b")
CAMPAIGN = re.compile(r"\b(campaigns?|automations?|win-?backs?|marketing|newsletters?|promo(tion)?s? (emails?|sms|texts?)|"
                      r"email blasts?|sms blasts?)\b")
BY_VENUE = re.compile(r"\b(by|per|each|every|which|what) (venue|location|store|shop|site|branch|outlet|restaurant)s?\b"
                      r"|\b(venues?|locations?|branches|sites|stores) (compare|comparison|breakdown|ranked)\b|\bcompare (my )?(venues|locations)\b")
BY_DAY = re.compile(r"\b(per|by|each|every) day\b|\bdaily\b|\bday[ -]by[ -]day\b|\bday by day\b|\bdays? breakdown\b")
SALES = re.compile(r"\b(revenue|sales|sold|turnover|takings|income|earn\w*|made|make|making|bring in|brought in|gross|money|"
                   r"orders?|business|take|took|taken|cash)\b")


def number(token: str) -> int | None:
    if token.isdigit():
        return int(token)
    return NUMBERS.get(token)


def normalize(text: str) -> str:
    text = text.lower().replace("’", "'").replace("‘", "'")
    return re.sub(r"\s+", " ", re.sub(r"[^a-z0-9'\- ;]", " ", text)).strip()


def period_of(text: str, default: str) -> str:
    if re.search(r"\b(all[ -]time|ever|in total|overall|lifetime|since (we )?(opened|open|launch\w*|the start|the beginning)|total so far)\b", text):
        return "all_time"
    if re.search(r"\b(last|past|previous|recent) (30|thirty) days\b|\bpast month\b|\blast 4 weeks\b|\blast four weeks\b", text):
        return "last_30_days"
    if re.search(r"\b(last|past|previous|recent) (7|seven) days\b|\bpast week\b|\bpast seven days\b", text):
        return "last_7_days"
    if re.search(r"\b(last|previous) month\b", text):
        return "last_month"
    if re.search(r"\b(this month|month to date|mtd|so far this month|current month)\b", text):
        return "this_month"
    if re.search(r"\b(last|previous) week\b", text):
        return "last_week"
    if re.search(r"\b(this week|week to date|wtd|so far this week|current week)\b", text):
        return "this_week"
    if re.search(r"\byesterday\b", text):
        return "yesterday"
    if re.search(r"\b(today|tonight|this morning|this afternoon|this evening|so far today)\b", text):
        return "today"
    return default


def days_of(text: str, default: int) -> int:
    m = re.search(NUM + r"\s*(?:more\s+)?(days?|weeks?|fortnights?|months?|years?)\b", text)
    if m and number(m.group(1)):
        return int(number(m.group(1)) or 1) * UNIT_DAYS[m.group(2).rstrip("s")]
    m = re.search(r"\b(?:a|one|the last|last|past|the past)\s+(day|week|fortnight|month|year)\b", text)
    if m:
        return UNIT_DAYS[m.group(1)]
    m = re.search(r"\b(\d+)\s*d\b", text)
    return int(m.group(1)) if m else default


def count_of(text: str, default: int, singular: str | None = None) -> int:
    m = re.search(r"\b(?:top|best|first|biggest|highest|leading|most)\s+" + NUM + r"\b", text) \
        or re.search(r"\b" + NUM + r"\s+(?:best|top|biggest|most|highest|leading|largest|favourite|favorite|loyal|frequent|regular)\b", text) \
        or re.search(r"\b(?:list|show|name|give me|tell me)\s+(?:me\s+)?(?:my\s+|the\s+)?" + NUM + r"\b", text)
    if m and number(m.group(1)) and m.group(1) not in ("a", "an"):
        return int(number(m.group(1)) or default)
    if singular and re.search(singular, text):
        return 1
    return default


# ---- rule-based backend --------------------------------------------------------------------------

class RuleAsker:
    """Keyword rules, deterministic: the same question always makes the same calls."""

    name = "rules"

    async def answer(self, question: str, ctx: Context, run: Run) -> Plan:
        plan = self.plan(question, ctx)
        for tool, args in plan.calls:
            await run(tool, args)
        return plan

    def plan(self, question: str, ctx: Context) -> Plan:
        text = normalize(question)
        if not text:
            return Plan(refusal="unsupported", message="the question is empty")
        if WRITE_START.search(text) or WRITE_ANYWHERE.search(text):
            return Plan(refusal="write", message="I only read Brigade's data; I never change, send or delete anything")
        if UNSUPPORTED_PERIOD.search(text):
            return Plan(refusal="unsupported_period",
                        message="I answer for today, yesterday, this or last week or month, the last 7 or 30 days, or all time")
        venue, unknown = self._venue(question, ctx)
        if unknown:
            return Plan(refusal="unknown_venue", message=f"{unknown} is not one of your venues")
        call = self._call(text)
        if call is None:
            return Plan(refusal="unsupported")
        tool, args = call
        if venue and tool not in ("sales_by_venue", "campaign_results"):
            args["venue_id"] = venue
        return Plan(calls=[(tool, args)])

    def _call(self, text: str) -> tuple[str, dict[str, Any]] | None:
        has_customer = re.search(CUSTOMER, text) is not None
        if re.search(r"\b(stock|inventory)\b", text) or (STOCK.search(text) and not has_customer):
            return "stock_at_risk", {}
        if CAMPAIGN.search(text):
            return "campaign_results", {"n": count_of(text, 5, r"\b(best|top|most successful) (campaign|automation)\b(?!s)")}
        if BOOKING.search(text):
            return "booking_figures", {}
        if DELIVERY.search(text):
            return "delivery_performance", {"period": period_of(text, "last_7_days")}
        if BEST_SELLER.search(text):
            return "best_sellers", {"period": period_of(text, "this_week"),
                                    "n": count_of(text, 5, r"\b(best[ -]?seller|top[ -]?seller|most popular (item|product|dish|drink)"
                                                           r"|top (product|item|dish|drink))\b(?!s)|\bwhat('s| is) (my |our |the )?"
                                                           r"(best|most popular)\b")}
        if has_customer or re.search(r"\b(spenders?|customer base)\b", text):
            if NOT_SEEN.search(text):
                return "customers_not_seen", {"days": days_of(text, 60)}
            if SEGMENT.search(text):
                return "segment_sizes", {}
            singular = r"\b(best|top|biggest|most loyal|most frequent|most valuable|number one) (customer|guest|client|diner|regular|spender)\b(?!s)" \
                       r"|\bwho (is|was|'s) (my |our |the )?(best|top|biggest|most)\b|\bwho (spends|spent|orders|ordered|visits|visited|comes)\b"
            if VISITS.search(text) and not re.search(r"\b(spend\w*|spent|spenders?)\b", text):
                return "top_customers_by_visits", {"n": count_of(text, 5, singular)}
            if TOP.search(text) or SPEND.search(text):
                return "top_customers", {"n": count_of(text, 5, singular)}
            if re.search(r"\bhow many customers\b", text):
                return "segment_sizes", {}
            return None
        if SEGMENT.search(text):
            return "segment_sizes", {}
        if BY_VENUE.search(text) and SALES.search(text) or re.search(r"\b(which|what) (venue|location|store|shop|site|branch)\b", text):
            return "sales_by_venue", {"period": period_of(text, "today")}
        if BY_DAY.search(text) and SALES.search(text):
            return "sales_by_day", {"days": days_of(text, 7)}
        if SALES.search(text) and re.search(r"\b(how much|how many|what|total|revenue|sales|turnover|takings|income|aov|average)\b", text):
            return "sales_summary", {"period": period_of(text, "today")}
        return None

    def _venue(self, question: str, ctx: Context) -> tuple[str | None, str | None]:
        """The venue the question names (id), or the name it gives that is none of the caller's."""
        low = normalize(question)
        for venue_id, name in sorted(ctx.venues.items(), key=lambda kv: -len(kv[1])):
            if re.search(r"\b" + re.escape(normalize(name)) + r"\b", low):
                return venue_id, None
        m = re.search(r"\b(?:at|in|for|from) (?:the |our |my )?((?:[A-Z][\w'&-]*)(?: [A-Z][\w'&-]*)*)", question)
        if m and m.group(1).lower() not in NOT_VENUES and m.group(1).split()[0].lower() not in NOT_VENUES:
            return None, m.group(1)
        return None, None


# ---- LLM backend ---------------------------------------------------------------------------------

SYSTEM = ("You answer a restaurant owner's or manager's questions about their business using only the tools given. "
          "Call the tool (or tools) that answer the question; never guess a number. Business ids are never needed: "
          "every tool runs for the asker's own business. To limit a tool to a venue, pass its id from CONTEXT_JSON. "
          "If no tool answers the question, or it asks to change, send or delete anything, call no tool and say so. "
          "When the tool results are in, reply with a one-line summary and no further tool calls.\nCONTEXT_JSON: ")


def jsonable(value: Any) -> Any:
    """Rows as JSON the model (and the log) can read: ids and dates as strings, decimals as numbers."""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (uuid.UUID, dt.date, dt.datetime)):
        return value.isoformat() if not isinstance(value, uuid.UUID) else str(value)
    if isinstance(value, decimal.Decimal):
        return float(value)
    return value


class LlmAsker:
    """An OpenAI-compatible /chat/completions endpoint with the tools offered (tool_choice auto), in
    rounds: the model's tool calls are run (validated, read only, as the caller) and their results sent
    back, until it answers without calls or max_rounds is reached. A failing or nonsensical endpoint
    raises AskerFailed, and the service answers with the rules instead."""

    name = "llm"

    def __init__(self, base_url: str, api_key: str, model: str, timeout: float = 15.0, max_rounds: int = 3,
                 client: httpx.AsyncClient | None = None) -> None:
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.api_key = api_key
        self.model = model
        self.timeout = timeout
        self.max_rounds = max_rounds
        self.client = client

    def context_json(self, ctx: Context) -> str:
        return json.dumps({"business": ctx.name, "currency": ctx.currency, "role": ctx.role,
                           "venues": [{"id": k, "name": v} for k, v in ctx.venues.items()],
                           "amounts": "money columns are integer minor units (cents)"})

    async def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        headers = {"authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        if self.client is not None:
            resp = await self.client.post(self.url, json=body, headers=headers, timeout=self.timeout)
        else:
            async with httpx.AsyncClient() as client:
                resp = await client.post(self.url, json=body, headers=headers, timeout=self.timeout)
        resp.raise_for_status()
        return resp.json()

    async def answer(self, question: str, ctx: Context, run: Run) -> Plan:
        messages: list[dict[str, Any]] = [{"role": "system", "content": SYSTEM + self.context_json(ctx)},
                                          {"role": "user", "content": question}]
        tools = [t.schema() for t in ctx.tools()]
        plan = Plan()
        try:
            for _ in range(self.max_rounds):
                body = {"model": self.model, "temperature": 0, "messages": messages, "tools": tools, "tool_choice": "auto"}
                message = (await self._post(body))["choices"][0]["message"]
                calls = message.get("tool_calls") or []
                if not calls:
                    break
                messages.append({"role": "assistant", "content": message.get("content"), "tool_calls": calls})
                for call in calls:
                    name = str(call["function"]["name"])
                    try:
                        args = json.loads(call["function"].get("arguments") or "{}")
                    except ValueError:
                        args = "<not JSON>"
                    result = await run(name, args)
                    plan.calls.append((name, args if isinstance(args, dict) else {}))
                    messages.append({"role": "tool", "tool_call_id": call.get("id"), "content": json.dumps(jsonable(result.for_model()))})
        except (httpx.HTTPError, KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
            log.warning("ask LLM backend failed; rules answer", extra={"action": "ask_llm_fallback", "error": str(exc),
                                                                       "business_id": str(ctx.business_id)})
            raise AskerFailed(str(exc)) from exc
        if not plan.calls:
            plan.refusal = "unsupported"
        return plan


def asker_from_settings(settings: Settings) -> Asker:
    """The backend the settings choose: 'llm' when a model endpoint is configured (or asked for), else the rules."""
    backend = settings.ask_backend
    if backend == "llm" or (backend == "auto" and settings.ask_llm_base_url and settings.ask_llm_model):
        if settings.ask_llm_base_url:
            return LlmAsker(settings.ask_llm_base_url, settings.ask_llm_api_key, settings.ask_llm_model,
                            settings.ask_llm_timeout, settings.ask_llm_max_rounds)
    return RuleAsker()
