"""POST /functions/v1/twilio-voice (+ /gather, /status): the AI voice agent on a venue's Twilio number.

Every request is verified with X-Twilio-Signature over the exact public URL (query included) and the
POST parameters (403 and no change otherwise). The call's state lives in `calls` (locked for a turn),
so any instance answers any turn. A turn is one transaction: understand the speech (rules or an LLM,
`brigade.voice.nlu`), move the conversation, and answer TwiML: `<Gather input="speech">` with an
explicit action and a `<Redirect>` fallback when nothing is heard, `<Dial>` to the venue for a
hand-off (and for calls the agent must not take: voice module off, no credits), or `<Hangup>`.

An order goes through `place_order` (channel `phone`), its Stripe Checkout Session is made the way
the checkout function makes one, and the link is texted through the SMS provider. Twilio's final
status callback burns the call's credits once per call SID (app.voice_end_call).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Annotated, Any

import httpx
import psycopg
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from psycopg.types.json import Jsonb
from cachetools import TTLCache
from psycopg_pool import AsyncConnectionPool
from twilio.twiml.voice_response import Gather, VoiceResponse

from brigade import queries
from brigade.auth import Claims
from brigade.db import transaction_as
from brigade.errors import InvalidInput, NotFound, wrap_exceptions
from brigade.providers import ProviderError, Providers, session_expiry
from brigade.settings import Settings
from brigade.voice.nlu import Line, Menu, Understanding, join_words, understander_from_settings
from functions.checkout import CheckoutRequest, session_params
from functions.deps import get_pool, get_providers, get_settings
from functions.twilio_auth import twilio_params

log = logging.getLogger("brigade.functions.voice")
router = APIRouter()

CALL_SID = re.compile(r"^CA[0-9a-zA-Z]{32}$")
FINAL = ("completed", "busy", "no-answer", "failed", "canceled")
PROMPTS = {
    "intent": "Would you like to place an order, check on an order, or speak to someone?",
    "items": "What would you like?",
    "fulfilment": "Is that for pickup or delivery?",
    "address": "What is the delivery address?",
    "confirm": "Shall I place the order?",
}
STATUS_WORDS = {"accepted": "has been accepted", "preparing": "is being prepared", "ready": "is ready",
                "completed": "has been completed", "cancelled": "was cancelled"}
MAX_MISSES = 3
MAX_SILENCES = 2


# ---- verification --------------------------------------------------------------------------------

def action_url(request: Request, settings: Settings, name: str, seq: int | None = None) -> str:
    """The URL Twilio posts the next turn to; `seq` numbers the turn, so a retried request is known."""
    base = settings.public_url.rstrip("/") if settings.public_url else str(request.base_url).rstrip("/")
    return f"{base}/functions/v1/twilio-voice/{name}" + (f"?seq={seq}" if seq is not None else "")


def call_sid(params: dict[str, str]) -> str:
    sid = params.get("CallSid", "")
    if not CALL_SID.match(sid):
        raise InvalidInput("CallSid is missing or malformed", hint="invalid_call_sid")
    return sid


# ---- TwiML ---------------------------------------------------------------------------------------

@dataclass
class Reply:
    say: list[str]
    then: str = "gather"            # gather | dial | hangup
    dial: str | None = None


@dataclass
class Placed:
    """An order the confirming turn placed: what finish_order needs once that turn has committed."""
    order: dict[str, Any]           # app.place_order's answer
    ctx: dict[str, Any]             # app.checkout_context's answer
    sender: str | None              # the business's SMS sender (app.sms_sender)


def render(reply: Reply, gather_url: str, hints: str) -> Response:
    vr = VoiceResponse()
    if reply.then == "gather":
        g = Gather(input="speech", action=gather_url, method="POST", speech_timeout="auto", language="en-US",
                   hints=hints or None)
        for text in reply.say:
            g.say(text)
        vr.append(g)
        vr.redirect(gather_url, method="POST")  # nothing heard: Twilio runs the next verb
    else:
        for text in reply.say:
            vr.say(text)
        if reply.then == "dial" and reply.dial:
            vr.dial(reply.dial)
        else:
            vr.hangup()
    return Response(str(vr), media_type="application/xml")


def money(cents: int, currency: str) -> str:
    amount = f"{cents / 100:.2f}"
    return {"USD": f"${amount}", "EUR": f"€{amount}", "GBP": f"£{amount}"}.get(currency.upper(), f"{amount} {currency}")


# ---- the conversation ----------------------------------------------------------------------------

@dataclass
class Conversation:
    """One turn of a call: reads the state app.voice_load_call returned, moves it, says what to say."""

    state: dict[str, Any]
    conn: psycopg.AsyncConnection[Any]
    settings: Settings
    providers: Providers
    menu: Menu
    step: str = "intent"
    cart: list[dict[str, Any]] = field(default_factory=list)
    turns: list[dict[str, Any]] = field(default_factory=list)
    intent: str | None = None
    outcome: str | None = None
    forward_reason: str | None = None
    fulfilment: str | None = None
    address: dict[str, Any] | None = None
    misses: int = 0
    silences: int = 0
    order_id: str | None = None
    backend: str | None = None
    placed: "Placed | None" = None  # the order this turn placed, for finish_order once it has committed

    @classmethod
    def load(cls, state: dict[str, Any], menu: Menu, conn: Any, settings: Settings, providers: Providers) -> "Conversation":
        return cls(state, conn, settings, providers, menu, step=state["step"],
                   cart=list(state.get("cart") or []), intent=state.get("intent"), fulfilment=state.get("fulfilment"),
                   address=state.get("delivery_address"), misses=state["misses"], silences=state["silences"])

    @property
    def caller(self) -> dict[str, Any]:
        return self.state.get("caller") or {}

    def heard(self, text: str, confidence: float | None) -> None:
        self.turns.append({"role": "caller", "text": text, "confidence": confidence})

    def said(self, reply: Reply) -> Reply:
        self.turns.append({"role": "agent", "text": " ".join(reply.say), "then": reply.then})
        return reply

    def end(self, outcome: str) -> None:
        if self.outcome is None and self.state.get("outcome") is None:
            self.outcome = outcome
        self.step = "done"

    async def save(self, seq: int | None = None, twiml: str | None = None) -> None:
        """The state after a turn; with `seq`, also the TwiML answered, for a retry of that turn (one UPDATE)."""
        await self.conn.execute(queries.get("voice_save_call" if seq is None else "voice_save_turn"), {
            "business_id": self.state["business_id"], "call_id": self.state["call_id"], "step": self.step,
            "intent": self.intent, "outcome": self.outcome, "forward_reason": self.forward_reason, "cart": Jsonb(self.cart),
            "fulfilment": self.fulfilment, "delivery_address": Jsonb(self.address) if self.address else None,
            "turns": Jsonb(self.turns), "misses": self.misses, "silences": self.silences, "order_id": self.order_id,
            "nlu_backend": self.backend, **({"seq": seq, "twiml": twiml} if seq is not None else {})})
        self.turns = []  # written: a later save in the same request appends only what comes after

    # -- entry points

    def greet(self) -> Reply:
        name = (self.caller.get("name") or "").split(" ")[0]
        hello = f"Hi {name}, thanks for calling {self.state['venue_name']}." if name else \
            f"Thanks for calling {self.state['venue_name']}."
        if not self.state.get("open"):
            return self.said(Reply([hello, "We're closed right now, so I can't take an order, but I can check on an order "
                                           "or put you through to the team. How can I help?"]))
        usual = self.usual_line(self.caller["usual"]) if self.caller.get("usual") else None
        if usual:
            return self.said(Reply([hello, f"Would you like your usual, {usual.spoken()}, or something else? "
                                           "You can also check on an order or speak to someone."]))
        return self.said(Reply([hello, PROMPTS["intent"]]))

    async def turn(self, speech: str, confidence: float | None, understander: Any) -> Reply:
        if self.state["status"] == "completed" or self.step == "done":
            return Reply(["Goodbye."], "hangup")
        if not self.state.get("module_enabled"):
            return self.forward("module_disabled")
        if (self.state.get("credits_left") or 0) <= 0:
            # the call has used up the balance: hand it to the venue rather than run on unpaid (no
            # forward_reason: that would make the minutes so far free at the final status callback)
            reply = self.hand_off("I'll put you through to the team now.")
            self.turns[-1]["reason"] = "credits_exhausted"
            return reply
        speech = speech.strip()
        if not speech:
            self.silences += 1
            if self.silences >= MAX_SILENCES:
                self.end("abandoned")
                return self.said(Reply(["Sorry, I can't hear you. Please call again. Goodbye."], "hangup"))
            return self.said(Reply(["Sorry, I didn't hear anything.", self.prompt()]))
        self.silences = 0
        self.heard(speech, confidence)
        if confidence is not None and confidence < self.settings.voice_min_confidence:
            return self.miss()
        u: Understanding = await understander.understand(speech, self.menu, self.step)
        self.backend = u.backend
        self.turns[-1]["understood"] = {"intent": u.intent, "items": [line.spoken() for line in u.items],
                                        "unknown_items": u.unknown_items}
        if u.intent == "human":
            self.intent = self.intent or "human"
            return self.hand_off("Of course, let me put you through to the team.")
        return await getattr(self, f"on_{self.step}")(u)

    # -- steps

    async def on_intent(self, u: Understanding) -> Reply:
        if u.intent == "status":
            return await self.status()
        accept_usual = bool(self.caller.get("usual")) and u.affirm is True and not u.items
        if u.intent == "order" or accept_usual or u.usual:
            self.intent = "order"
            if not self.state.get("open"):
                self.end("closed")
                return self.said(Reply(["Sorry, we're closed right now, so I can't take an order. "
                                         "Please call again when we're open. Goodbye."], "hangup"))
            return self.take_items(u, usual=accept_usual or u.usual)
        return self.miss()

    async def on_items(self, u: Understanding) -> Reply:
        if u.intent == "status":
            return await self.status()
        if u.items or u.unknown_items or u.usual:
            return self.take_items(u, usual=u.usual)
        if u.done or u.affirm is False:
            if self.cart:
                return await self.after_items()
            return self.said(Reply(["What would you like to order?"]))
        if u.affirm is True:
            return self.said(Reply(["Sure, what else would you like?"]))
        return self.miss()

    async def on_fulfilment(self, u: Understanding) -> Reply:
        if u.fulfilment == "delivery" and self.state.get("accepts_delivery"):
            self.fulfilment, self.step = "delivery", "address"
            return self.said(Reply([PROMPTS["address"]]))
        if u.fulfilment == "pickup" and self.state.get("accepts_pickup"):
            self.fulfilment = "pickup"
            return await self.read_back()
        return self.miss()

    async def on_address(self, u: Understanding) -> Reply:
        text = self.turns[-1]["text"]
        if len(text) < 6 or not re.search(r"\d", text):
            return self.miss("Sorry, I need the street number and street name.")
        self.address = {"line1": text[:200]}
        venue = (self.state.get("venue_latitude"), self.state.get("venue_longitude"))
        point = None
        if self.providers.geocoder is not None:
            point = await self.providers.geocoder.geocode(text, near=venue if None not in venue else None)
        if point is not None:
            self.address.update(latitude=point.latitude, longitude=point.longitude)
            if None not in venue and self.state.get("delivery_radius_km") is not None:
                row = await (await self.conn.execute(queries.get("voice_distance_km"), {
                    "venue_lat": venue[0], "venue_lon": venue[1], "lat": point.latitude, "lon": point.longitude})).fetchone()
                if row and float(row["km"]) > float(self.state["delivery_radius_km"]):
                    self.address, self.fulfilment, self.step = None, None, "fulfilment"
                    extra = " Would you like to pick it up instead?" if self.state.get("accepts_pickup") else ""
                    return self.said(Reply([f"Sorry, that address is outside our delivery area.{extra}"]))
        return await self.read_back()

    async def on_confirm(self, u: Understanding) -> Reply:
        if u.affirm is True and not u.items:
            return await self.place()
        if u.items:
            return self.take_items(u)
        if u.affirm is False:
            self.cart, self.step = [], "items"
            return self.said(Reply(["No problem, let's start again. What would you like?"]))
        return self.miss()

    # -- pieces

    def prompt(self) -> str:
        if self.step == "items" and self.cart:
            return "Anything else?"
        return PROMPTS.get(self.step, PROMPTS["intent"])

    def miss(self, sorry: str = "Sorry, I didn't catch that.") -> Reply:
        self.misses += 1
        if self.misses >= MAX_MISSES:
            self.intent = self.intent or "unknown"
            return self.hand_off("I'm having trouble understanding. Let me put you through to the team.")
        return self.said(Reply([sorry, self.prompt()]))

    def forward(self, reason: str) -> Reply:
        self.forward_reason = reason
        self.end("forwarded")
        return self.said(Reply([f"Connecting you to {self.state['venue_name']}."], "dial", self.state.get("forward_to")))

    def hand_off(self, lead: str) -> Reply:
        if not self.state.get("forward_to"):
            self.end("abandoned")
            return self.said(Reply(["Sorry, nobody can take your call right now. Please try again later. Goodbye."], "hangup"))
        self.end("handed_off")
        return self.said(Reply([lead], "dial", self.state["forward_to"]))

    def usual_line(self, usual: dict[str, Any]) -> Line | None:
        product = self.menu.product(usual.get("name", ""))
        if product is None:
            return None
        line = Line(product.name, 1, product_id=product.id)
        variant = next((v for v in product.variants if v.name == usual.get("variant")), None)
        if variant:
            line.variant, line.variant_id = variant.name, variant.id
        for opt in product.modifiers:
            if opt.name in (usual.get("modifiers") or []):
                line.modifiers.append(opt.name)
                line.modifier_ids.append(opt.id)
        return line

    def take_items(self, u: Understanding, usual: bool = False) -> Reply:
        added = list(u.items)
        if usual and self.caller.get("usual"):
            line = self.usual_line(self.caller["usual"])
            if line:
                added.insert(0, line)
        self.step = "items"
        say: list[str] = []
        if added:
            self.cart.extend(asdict(line) for line in added)
            say.append(f"Got it: {join_words([line.spoken() for line in added])}.")
        if u.unknown_items:
            say.append(f"Sorry, we don't have {join_words(u.unknown_items)}. "
                       f"We have {join_words([p.name.lower() for p in self.menu.products])}.")
        if not say:
            say.append("Sure.")
        say.append("Anything else?" if self.cart else "What would you like?")
        return self.said(Reply(say))

    async def after_items(self) -> Reply:
        pickup, delivery = self.state.get("accepts_pickup"), self.state.get("accepts_delivery")
        if pickup and delivery:
            self.step = "fulfilment"
            return self.said(Reply([PROMPTS["fulfilment"]]))
        if delivery:
            self.fulfilment, self.step = "delivery", "address"
            return self.said(Reply(["We deliver.", PROMPTS["address"]]))
        self.fulfilment = "pickup"
        return await self.read_back()

    def payload(self) -> dict[str, Any]:
        allergens = self.caller.get("allergens") or []
        notes = f"Phone order (call {self.state['call_sid']})" + (f"; allergens on file: {', '.join(allergens)}" if allergens else "")
        payload: dict[str, Any] = {
            "venue_id": str(self.state["venue_id"]), "channel": "phone", "fulfilment": self.fulfilment or "pickup",
            "customer": {"name": self.caller.get("name") or "Phone caller", "phone": self.state["from_number"]},
            "items": [{"product_id": line["product_id"], "variant_id": line.get("variant_id"),
                       "modifier_ids": line.get("modifier_ids") or [], "quantity": line["quantity"]} for line in self.cart],
            "notes": notes,
        }
        if self.fulfilment == "delivery":
            payload["delivery_address"] = self.address
        return payload

    async def _place(self) -> dict[str, Any]:
        row = await (await self.conn.execute("select app.place_order(%s) as r", (Jsonb(self.payload()),))).fetchone()
        return row["r"]

    def refused(self, exc: psycopg.Error) -> Reply:
        """What to say when place_order refuses the cart."""
        code = exc.sqlstate or ""
        if code == "BR101":
            self.end("closed")
            return self.said(Reply(["Sorry, we're closed right now, so I can't take the order. Goodbye."], "hangup"))
        if code in ("BR103", "BR106", "BR107", "BR105"):
            self.cart, self.step = [], "items"
            return self.said(Reply([f"Sorry, {exc.diag.message_primary or 'something in the order is not available'}.",
                                    "Let's start again. What would you like?"]))
        log.warning("phone order refused", extra={"action": "voice_order_refused", "code": code, "call_id": str(self.state["call_id"])})
        return self.hand_off("Sorry, I couldn't take that order. Let me put you through to the team.")

    async def read_back(self) -> Reply:
        """Price the cart exactly as the order would be priced (place_order in a rolled-back savepoint)."""
        try:
            async with self.conn.transaction(force_rollback=True):
                priced = await self._place()
        except psycopg.Error as exc:
            return self.refused(exc)
        self.step = "confirm"
        lines = [Line(**line).spoken() for line in self.cart]
        where = "for pickup" if self.fulfilment != "delivery" else f"for delivery to {self.address['line1']}" if self.address else "for delivery"
        extras = " including tax" + (" and delivery" if priced["delivery_fee_cents"] else "")
        say = [f"So that's {join_words(lines)}, {where}.", f"Your total is {money(priced['total_cents'], priced['currency'])},{extras}."]
        if self.caller.get("allergens"):
            say.append(f"I'll let the kitchen know about your {join_words(self.caller['allergens'])} allergy.")
        say.append(PROMPTS["confirm"])
        return self.said(Reply(say))

    async def place(self) -> Reply:
        """The caller said yes: place the order. It commits with this turn's state (step done), before
        any provider call, so the business's order-number counter row place_order updates is not held
        through the Stripe and Twilio round trips (it serialised every order of the business behind
        them); finish_order then makes the Checkout Session, texts the link and says the last words."""
        try:
            async with self.conn.transaction():
                order = await self._place()
                row = await (await self.conn.execute("select app.checkout_context(%s, %s) as ctx",
                                                     (order["order_id"], order["access_token"]))).fetchone()
                sender = await (await self.conn.execute(queries.get("sms_sender"), {"business_id": self.state["business_id"]})).fetchone()
        except psycopg.Error as exc:
            return self.refused(exc)
        self.order_id, self.step = order["order_id"], "done"
        self.placed = Placed(order, row["ctx"], sender["sender"] if sender else None)
        return Reply([], "hangup")  # the words depend on the payment link: finish_order says them

    async def finish_order(self, pool: AsyncConnectionPool, seq: int | None,
                           render_reply: Callable[[Reply], Response]) -> Response:
        """After the placing turn committed: the Checkout Session (Stripe's idempotency key makes a retry
        the same session), the texted link, and the call's outcome with the answer of the turn (rendered
        by `render_reply`, kept under `seq` for a retry of the turn). When Stripe
        fails the unpaid order is cancelled (nobody could pay it) and the call handed to the team."""
        assert self.placed is not None
        order, ctx = self.placed.order, self.placed.ctx
        body = CheckoutRequest(order_id=order["order_id"], access_token=order["access_token"])
        try:
            session = await self.providers.payments.create_checkout_session(
                session_params(ctx, body, self.settings, session_expiry(self.settings)),
                idempotency_key=f"checkout:{ctx['order_id']}:{ctx['attempt']}", stripe_account=ctx.get("stripe_account_id"))
        except ProviderError as exc:
            log.warning("checkout for a phone order failed", extra={"action": "voice_checkout_failed", "error": str(exc),
                                                                   "order_id": str(order["order_id"])})
            async with transaction_as(pool, Claims.service()) as conn:
                self.conn = conn
                await conn.execute(queries.get("voice_cancel_unpaid_order"), {
                    "business_id": self.state["business_id"], "order_id": order["order_id"]})
                return await self.save_final(self.hand_off("Sorry, I couldn't set up the payment. Let me put you through to the team."),
                                             seq, render_reply)
        sent, error = None, None
        text = (f"{self.state['business_name']}: pay for order #{order['order_number']} "
                f"({money(order['total_cents'], order['currency'])}) here: {session.url}")
        try:
            sent = await self.providers.sms.send(self.state["from_number"], text, sender=self.placed.sender)
        except ProviderError as exc:
            error = exc.message
        async with transaction_as(pool, Claims.service()) as conn:
            self.conn = conn
            await conn.execute("select app.attach_checkout_session(%s, %s, %s, %s)",
                               (body.order_id, session.id, session.url, session.expires_at))
            await conn.execute(queries.get("voice_record_sms"), {
                "business_id": self.state["business_id"], "order_id": order["order_id"], "recipient": self.state["from_number"],
                "venue_id": self.state["venue_id"], "detail": Jsonb({"call_id": str(self.state["call_id"])}),
                "status": "sent" if sent else "failed", "provider": sent.provider if sent else None,
                "message_id": sent.message_id if sent else None, "cost": sent.cost_cents if sent else 0, "error": error})
            self.end("ordered")
            total = money(order["total_cents"], order["currency"])
            if sent:
                say = [f"Thank you! Your order number is {order['order_number']}, {total}.",
                       "I've texted a payment link to this number; we'll start on it as soon as it's paid. Goodbye!"]
            else:
                say = [f"Thank you! Your order number is {order['order_number']}, {total}.",
                       "I couldn't text you the payment link, so the team will take payment when you arrive. Goodbye!"]
            return await self.save_final(self.said(Reply(say, "hangup")), seq, render_reply)

    async def save_final(self, reply: Reply, seq: int | None, render_reply: Callable[[Reply], Response]) -> Response:
        response = render_reply(reply)
        await self.save(seq, bytes(response.body).decode() if seq is not None else None)
        return response

    async def status(self) -> Reply:
        self.intent = "status"
        row = await (await self.conn.execute("select app.voice_latest_order(%s, %s) as r",
                                             (self.state["business_id"], self.state["from_number"]))).fetchone()
        order = row["r"]
        if order is None:
            say = "I couldn't find an order from this phone number."
        elif order["status"] == "placed":
            say = f"Order number {order['order_number']} " + (
                "is waiting for payment; the link is in your text messages." if order["payment_status"] == "unpaid"
                else "has been received and the team will accept it shortly.")
        else:
            say = f"Order number {order['order_number']} {STATUS_WORDS.get(order['status'], order['status'])}" + (
                " for pickup." if order["status"] == "ready" and order["fulfilment"] == "pickup" else ".")
        self.end("status_given")
        return self.said(Reply([say, "Thanks for calling. Goodbye."], "hangup"))


class MenuCache:
    """Each venue's menu (app.voice_menu) as the agent understands it, kept `ttl` seconds per app: a turn
    then loads only its call (app.voice_load_call_state). place_order checks every line against the live
    menu, so a menu up to `ttl` old can cost the caller a re-ask ("X is not available"), never a wrong
    order. ttl 0 reads the menu every turn."""

    def __init__(self, ttl: float, timer: Callable[[], float] = time.monotonic) -> None:
        self.menus: TTLCache[tuple[str, str], Menu] | None = TTLCache(maxsize=4096, ttl=ttl, timer=timer) if ttl > 0 else None

    async def get(self, conn: psycopg.AsyncConnection[Any], business_id: Any, venue_id: Any) -> Menu:
        key = (str(business_id), str(venue_id))
        if self.menus is not None and key in self.menus:
            return self.menus[key]
        row = await (await conn.execute("select app.voice_menu(%s, %s) as menu", key)).fetchone()
        menu = Menu.from_json((row["menu"] if row else None) or [])
        if self.menus is not None:
            self.menus[key] = menu
        return menu


def menus(request: Request, settings: Settings) -> MenuCache:
    state = request.app.state
    if getattr(state, "voice_menus", None) is None:
        state.voice_menus = MenuCache(settings.voice_menu_cache_seconds)
    return state.voice_menus  # type: ignore[no-any-return]


async def load_conversation(request: Request, conn: psycopg.AsyncConnection[Any], sid: str, settings: Settings,
                            providers: Providers) -> Conversation | None:
    """The call's state, locked for this turn, with its venue's menu; None for an unknown call."""
    state = (await (await conn.execute("select app.voice_load_call_state(%s) as r", (sid,))).fetchone())["r"]
    if state is None:
        return None
    menu = await menus(request, settings).get(conn, state["business_id"], state["venue_id"])
    return Conversation.load(state, menu, conn, settings, providers)


def understander(request: Request, settings: Settings) -> Any:
    """The app's understander, made once: the LLM backend keeps one keep-alive client for every turn."""
    state = request.app.state
    if getattr(state, "voice_understander", None) is None:
        client = httpx.AsyncClient() if settings.voice_nlu_backend == "llm" else None
        state.voice_understander = understander_from_settings(settings, client)
    return state.voice_understander


def hints(menu: Menu) -> str:
    words: list[str] = []
    for p in menu.products:
        words += [p.name, *(v.name for v in p.variants), *(m.name for m in p.modifiers)]
    return ", ".join(dict.fromkeys(words))


# ---- endpoints -----------------------------------------------------------------------------------

@router.post("/twilio-voice")
async def incoming(
    request: Request,
    params: Annotated[dict[str, str], Depends(twilio_params)],
    pool: Annotated[AsyncConnectionPool, Depends(get_pool)],
    settings: Annotated[Settings, Depends(get_settings)],
    providers: Annotated[Providers, Depends(get_providers)],
) -> Response:
    """A call rings a venue's number: answer with the agent, or forward it to the venue."""
    sid = call_sid(params)
    async with wrap_exceptions(), transaction_as(pool, Claims.service()) as conn:
        row = await (await conn.execute("select app.voice_start_call(%s, %s, %s) as r",
                                        (sid, params.get("From", ""), params.get("To", "")))).fetchone()
        start = row["r"]
        if start is None:
            vr = VoiceResponse()
            vr.say("Sorry, this number is not in service.")
            vr.hangup()
            return Response(str(vr), media_type="application/xml")
        convo = await load_conversation(request, conn, sid, settings, providers)
        assert convo is not None  # voice_start_call has just made the row
        if start["decision"] == "forward":
            reply = Reply([f"Connecting you to {start['venue_name']}."], "dial", start["forward_to"]) if start["forward_to"] \
                else Reply(["Sorry, nobody can take your call right now. Please try again later. Goodbye."], "hangup")
            convo.said(reply)
        else:
            reply = convo.greet()
        await convo.save()
    log.info("call", extra={"action": "voice_call", "call_id": str(start["call_id"]), "business_id": str(start["business_id"]),
                            "decision": start["decision"], "reason": start["forward_reason"]})
    return render(reply, action_url(request, settings, "gather", 1), hints(convo.menu))


@router.post("/twilio-voice/gather")
async def gather(
    request: Request,
    params: Annotated[dict[str, str], Depends(twilio_params)],
    pool: Annotated[AsyncConnectionPool, Depends(get_pool)],
    settings: Annotated[Settings, Depends(get_settings)],
    providers: Annotated[Providers, Depends(get_providers)],
) -> Response:
    """One turn: what the caller said (SpeechResult; none when the Gather heard nothing)."""
    sid = call_sid(params)
    try:
        confidence = float(params["Confidence"]) if params.get("Confidence") else None
    except ValueError as exc:
        raise InvalidInput("Confidence must be a number", hint="invalid_confidence") from exc
    raw_seq = request.query_params.get("seq")
    if raw_seq is not None and not raw_seq.isdigit():
        raise InvalidInput("seq must be a whole number", hint="invalid_seq")
    seq = int(raw_seq) if raw_seq is not None else None
    async with wrap_exceptions(), transaction_as(pool, Claims.service()) as conn:
        convo = await load_conversation(request, conn, sid, settings, providers)
        if convo is None:
            raise NotFound("no such call", hint="call_not_found")
        state = convo.state
        if seq is not None and state.get("last_gather_seq") == seq and state.get("last_reply"):
            # Twilio retried this turn (same CallSid and sequence): answer it again, run nothing twice
            return Response(state["last_reply"], media_type="application/xml")
        reply = await convo.turn(params.get("SpeechResult", ""), confidence, understander(request, settings))
        next_seq = (seq if seq is not None else (state.get("last_gather_seq") or 0)) + 1

        def render_reply(reply: Reply) -> Response:
            return render(reply, action_url(request, settings, "gather", next_seq), hints(convo.menu))

        if convo.placed is None:
            response = render_reply(reply)
            await convo.save(seq, bytes(response.body).decode() if seq is not None else None)
            return response
        await convo.save()  # the placed order and the call's done step commit here, before the provider calls
    async with wrap_exceptions():
        return await convo.finish_order(pool, seq, render_reply)


@router.post("/twilio-voice/status")
async def status(
    params: Annotated[dict[str, str], Depends(twilio_params)],
    pool: Annotated[AsyncConnectionPool, Depends(get_pool)],
) -> dict[str, Any]:
    """Twilio's status callback: a final status ends the call and burns its credits, once."""
    sid = call_sid(params)
    raw = params.get("CallDuration") or "0"
    if not raw.isdigit():
        raise InvalidInput("CallDuration must be whole seconds", hint="invalid_duration")
    async with wrap_exceptions(), transaction_as(pool, Claims.service()) as conn:
        row = await (await conn.execute("select app.voice_end_call(%s, %s, %s) as r",
                                        (sid, params.get("CallStatus", ""), int(raw)))).fetchone()
    if row["r"] is None:
        raise NotFound("no such call", hint="call_not_found")
    return {"received": True, **row["r"]}

