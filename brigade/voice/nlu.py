"""Understanding what a caller said: the intent (order, status, human, unknown), the menu items with
variants, options and quantities, and the short answers a conversation needs (yes/no, done, pickup
or delivery). Two backends behind one interface: an offline, deterministic rule-based one (keywords,
fuzzy matching with difflib, quantities in words and digits), and an OpenAI-compatible chat endpoint
with a tool call, chosen by settings (`voice_nlu_backend`)."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import asdict, dataclass, field
from difflib import SequenceMatcher
from functools import lru_cache
from typing import Any, Protocol

import httpx

from brigade.settings import Settings

log = logging.getLogger("brigade.voice.nlu")

INTENTS = ("order", "status", "human", "unknown")


@dataclass(frozen=True)
class Option:
    id: str
    name: str


@dataclass(frozen=True)
class Product:
    id: str
    name: str
    price_cents: int
    variants: tuple[Option, ...] = ()
    default_variant: str | None = None
    modifiers: tuple[Option, ...] = ()


@dataclass(frozen=True)
class Menu:
    """What a venue sells now, as app.voice_menu returns it."""

    products: tuple[Product, ...]

    @classmethod
    def from_json(cls, rows: list[dict[str, Any]]) -> "Menu":
        products = []
        for p in rows or []:
            variants = tuple(Option(str(v["id"]), v["name"]) for v in p.get("variants") or [])
            default = next((v["name"] for v in p.get("variants") or [] if v.get("is_default")), None)
            mods = tuple(Option(str(m["id"]), m["name"]) for m in p.get("modifiers") or [])
            products.append(Product(str(p["id"]), p["name"], int(p.get("price_cents") or 0), variants, default, mods))
        return cls(tuple(products))

    def product(self, name: str) -> Product | None:
        return next((p for p in self.products if p.name.lower() == name.lower()), None)

    def as_prompt(self) -> list[dict[str, Any]]:
        return [{"product": p.name, "variants": [v.name for v in p.variants], "options": [m.name for m in p.modifiers]}
                for p in self.products]


@dataclass
class Line:
    """One thing the caller asked for, resolved to the menu (names are the menu's own spelling)."""

    product: str
    quantity: int = 1
    variant: str | None = None
    modifiers: list[str] = field(default_factory=list)
    product_id: str = ""
    variant_id: str | None = None
    modifier_ids: list[str] = field(default_factory=list)

    def key(self) -> tuple[str, str | None, tuple[str, ...], int]:
        return (self.product, self.variant, tuple(sorted(self.modifiers)), self.quantity)

    def spoken(self) -> str:
        """'two large lattes with oat milk'."""
        name = self.product.lower()
        if self.quantity != 1:
            name = plural(name)
        size = f"{self.variant.lower()} " if self.variant else ""
        with_ = f" with {join_words([m.lower() for m in self.modifiers])}" if self.modifiers else ""
        return f"{number_word(self.quantity)} {size}{name}{with_}"


@dataclass
class Understanding:
    intent: str = "unknown"
    items: list[Line] = field(default_factory=list)
    unknown_items: list[str] = field(default_factory=list)
    affirm: bool | None = None      # yes (True) / no (False) / neither (None)
    done: bool = False              # "that's all"
    fulfilment: str | None = None   # pickup / delivery
    usual: bool = False             # "my usual"
    backend: str = "rules"

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


class Understander(Protocol):
    """What the conversation asks of a backend; `step` is where the conversation is (a hint)."""

    name: str

    async def understand(self, text: str, menu: Menu, step: str = "intent") -> Understanding: ...


# ---- words ---------------------------------------------------------------------------------------

NUMBERS = {"a": 1, "an": 1, "one": 1, "single": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
           "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "dozen": 12, "couple": 2, "pair": 2}
SPOKEN = {v: k for k, v in NUMBERS.items() if k not in ("a", "an", "single", "dozen", "couple", "pair")}
VARIANT_SYNONYMS = {"large": {"large", "big", "grande", "larger"}, "regular": {"regular", "normal", "standard", "medium"},
                    "small": {"small", "little", "smaller"}}
ITEM_BREAKS = {"and", "plus", "also", "then", ","}
FILLER = {"um", "uh", "er", "erm", "like", "yeah", "so", "well", "oh", "okay", "ok", "hi", "hello", "hey", "there", "please",
          "thanks", "thank", "you", "just"}
NOT_FOOD = {"order", "orders", "delivery", "pickup", "pick", "minute", "minutes", "moment", "second", "question", "lot", "bit",
            "human", "person", "table", "call", "few", "little", "complaint", "reservation", "number", "manager", "staff",
            "member", "real", "someone", "somebody", "time", "problem", "catering", "meeting", "office", "go", "something",
            "food", "takeout", "drink", "drinks", "coffee", "coffees", "the", "my", "to", "for", "of", "with", "it", "that",
            "this", "some", "more", "bit", "wrong", "right", "day", "week", "refund", "driver", "human", "agent"}

HUMAN = [r"\b(speak|talk|chat)\w* (to|with)\b", r"\bhuman\b", r"\breal person\b", r"\b(an? |the )?operator\b",
         r"\brepresentative\b", r"\bmanager\b", r"\bstaff\b", r"\bagent\b", r"\bsomeone\b", r"\bsomebody\b",
         r"\btransfer me\b", r"\bput me through\b", r"\bconnect me\b", r"\bcomplaint\b", r"\bcall me back\b",
         r"\ba person\b", r"\bemployee\b"]
STATUS = [r"\bstatus\b", r"\bwhere('s| is| are)? (my|our)\b", r"\bis (my|our) \w+( \w+)? (ready|done|coming|on)\b",
          r"\b(is|has|did) (my|our) (order|food|delivery)\b", r"\bcheck(ing)? on\b", r"\btrack\w*\b", r"\bhow long\b",
          r"\bwhen will (my|our|it)\b", r"\bhow('s| is) (my|our) order\b", r"\border (i|we) placed\b", r"\bplaced an order\b",
          r"\bready yet\b", r"\bgo through\b", r"\bordered .* (ago|earlier)\b", r"\bmy order\b(?! for)"]
ORDER = [r"\border\b", r"\b(i'?d|i would|we'?d) like\b", r"\bcan (i|we) (get|have|grab)\b", r"\bcould (i|we)( please)? (get|have|grab)\b",
         r"\bi( wanna| want| will have|'ll have|'ll take| will take)\b", r"\bgive me\b", r"\bget me\b", r"\btake ?out\b",
         r"\bmay i have\b"]
YES = {"yes", "yeah", "yep", "yup", "sure", "correct", "right", "ok", "okay", "confirm", "absolutely", "definitely",
       "perfect", "great", "fine", "affirmative", "please"}
YES_PHRASES = [r"\bgo ahead\b", r"\bsounds good\b", r"\bthat'?s right\b", r"\bplace (it|the order)\b", r"\bdo it\b",
               r"\bthat'?s correct\b"]
NO = {"no", "nope", "nah", "wrong", "cancel", "incorrect", "not"}
DONE = [r"\bthat'?s (all|it|everything)\b", r"\bnothing (else|more)\b", r"\bno(,)? (thanks|thank you|that'?s)\b", r"\bi'?m (done|good)\b",
        r"\bthat will be all\b", r"\bthat'?ll be all\b", r"^(no|nope|nah|done|all good)\W*$", r"\bthat'?s? enough\b"]
PICKUP = [r"\bpick ?(it )?up\b", r"\bpickup\b", r"\bcollect\w*\b", r"\bcarry ?out\b", r"\btake ?away\b", r"\bcome (and )?get\b",
          r"\bin person\b", r"\bto go\b"]
DELIVERY = [r"\bdeliver\w*\b", r"\bbring it\b", r"\bsend it\b", r"\bto my (house|home|place|office|address)\b"]
USUAL = [r"\b(my|the) usual\b", r"\bsame as (last time|always|usual)\b"]


def tokenize(text: str) -> list[str]:
    text = text.lower().replace("&", " and ").replace("’", "'")
    return re.findall(r"[a-z0-9']+|,", text)


def singular(word: str) -> str:
    if len(word) > 4 and word.endswith("es") and word[-3] in "sxz":
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def plural(name: str) -> str:
    head, _, last = name.rpartition(" ")
    last = last + ("es" if last.endswith(("s", "x", "z", "ch", "sh")) else "s")
    return f"{head} {last}" if head else last


def number_word(n: int) -> str:
    return SPOKEN.get(n, str(n))


def join_words(words: list[str]) -> str:
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]


def skeleton(word: str) -> str:
    """Consonants in order, doubles collapsed: a crude sound key for speech-recognition misspellings."""
    out = word[:1]
    for ch in word[1:]:
        if ch in "aeiouyhw'":
            continue
        if not out or out[-1] != ch:
            out += ch
    return out


@lru_cache(maxsize=65536)
def similarity(said: str, name: str) -> float:
    """How well a spoken word (or words) matches a menu name, 0..1. Pure, so cached: every turn of every
    call compares its words with the same menu names, and difflib was most of a turn's CPU."""
    said, name = said.replace(" ", ""), name.replace(" ", "")
    if said == name:
        return 1.0
    ratio = SequenceMatcher(None, said, name).ratio()
    if ratio < 0.85 and len(said) >= 5 and ratio >= 0.7 and skeleton(said) == skeleton(name):
        return 0.86
    return ratio


def quantity_of(token: str) -> int | None:
    if token.isdigit():
        n = int(token)
        return n if 1 <= n <= 99 else None
    return NUMBERS.get(token)


def _any(patterns: list[str], text: str) -> bool:
    return any(re.search(p, text) for p in patterns)


# ---- rule-based backend --------------------------------------------------------------------------

@dataclass
class _Mention:
    product: Product
    start: int
    end: int  # exclusive


class RuleUnderstander:
    """Keywords for intent and short answers; difflib for product, variant and option names."""

    name = "rules"
    threshold = 0.85

    async def understand(self, text: str, menu: Menu, step: str = "intent") -> Understanding:
        return self.understand_sync(text, menu, step)

    def understand_sync(self, text: str, menu: Menu, step: str = "intent") -> Understanding:
        tokens = tokenize(text)
        flat = " ".join(t for t in tokens if t != ",")
        u = Understanding(backend=self.name)
        mentions = self._mentions(tokens, menu)
        u.items = self._lines(tokens, mentions, menu)
        u.usual = _any(USUAL, flat)
        if _any(HUMAN, flat):
            u.intent = "human"
        elif _any(STATUS, flat) and not (u.items and _any(ORDER, flat) and not re.search(r"\bmy order\b", flat)):
            u.intent = "status"
        elif u.items or u.usual or _any(ORDER, flat):
            u.intent = "order"
        if u.intent in ("order", "unknown") or step == "items":
            u.unknown_items = self._unknown(tokens, mentions, menu)
            if u.unknown_items and u.intent == "unknown":
                u.intent = "order"
        if u.intent in ("status", "human"):
            u.items, u.unknown_items = [], []
        words = set(tokens)
        if _any(DONE, flat):
            u.done = True
        if (words & YES or _any(YES_PHRASES, flat)) and not (words & NO):
            u.affirm = True
        elif words & NO or re.search(r"\bdon'?t\b", flat):
            u.affirm = False
        if _any(DELIVERY, flat):
            u.fulfilment = "delivery"
        elif _any(PICKUP, flat):
            u.fulfilment = "pickup"
        return u

    def _mentions(self, tokens: list[str], menu: Menu) -> list[_Mention]:
        """Non-overlapping product mentions, best matches first (1-3 word windows)."""
        found: list[tuple[float, int, int, Product]] = []
        for size in (3, 2, 1):
            for i in range(len(tokens) - size + 1):
                window = tokens[i:i + size]
                if "," in window or any(quantity_of(t) for t in window):
                    continue
                said = " ".join(singular(t) for t in window)
                for p in menu.products:
                    name = p.name.lower()
                    score = max(similarity(said, name), similarity(" ".join(window), name))
                    words = name.split()
                    if size == 1 and len(words) > 1:
                        # one distinctive word of a longer name ("toast", "avocado", "avo")
                        for w in words:
                            others = [q for q in menu.products if q is not p and w in q.name.lower().split()]
                            if not others and len(w) >= 4:
                                score = max(score, similarity(said, w) - 0.02)
                        if said in ("avo",) and words[0].startswith("avo"):
                            score = max(score, 0.9)
                    if score >= self.threshold:
                        found.append((score + size * 0.01, i, i + size, p))
        found.sort(key=lambda f: (-f[0], f[1]))
        taken: set[int] = set()
        mentions: list[_Mention] = []
        for _score, start, end, product in found:
            if taken & set(range(start, end)):
                continue
            taken |= set(range(start, end))
            mentions.append(_Mention(product, start, end))
        mentions.sort(key=lambda m: m.start)
        # "a toast with avocado": two words of one product close together are one mention
        merged: list[_Mention] = []
        for m in mentions:
            prev = merged[-1] if merged else None
            if prev and prev.product is m.product and m.start - prev.end <= 2 and not (set(tokens[prev.end:m.start]) & ITEM_BREAKS) \
                    and len(m.product.name.split()) > 1:
                prev.end = m.end
                continue
            merged.append(m)
        return merged

    def _scopes(self, tokens: list[str], mentions: list[_Mention]) -> list[tuple[int, int]]:
        """For each mention, the token range that describes it: from after the previous item's
        description (split at the last 'and'/','/'plus') to where the next item's begins."""
        bounds: list[int] = [0]
        for a, b in zip(mentions, mentions[1:]):
            gap = range(a.end, b.start)
            cut = max((i for i in gap if tokens[i] in ITEM_BREAKS), default=None)
            if cut is None:  # "3 lattes 2 croissants": the next item starts at its quantity
                cut = next((i for i in gap if quantity_of(tokens[i])), b.start)
                bounds.append(cut)
            else:
                bounds.append(cut + 1)
        bounds.append(len(tokens))
        return [(bounds[i], bounds[i + 1]) for i in range(len(mentions))]

    def _lines(self, tokens: list[str], mentions: list[_Mention], menu: Menu) -> list[Line]:
        lines: list[Line] = []
        for m, (lo, hi) in zip(mentions, self._scopes(tokens, mentions)):
            before = tokens[lo:m.start]
            scope = [t for i, t in enumerate(tokens[lo:hi], lo) if not (m.start <= i < m.end)]
            qty = 1
            for t in reversed(before):
                q = quantity_of(t)
                if q:
                    qty = q
                    if t == "dozen" and "half" in before:
                        qty = 6
                    break
            line = Line(m.product.name, qty, product_id=m.product.id)
            line.variant, line.variant_id = self._variant(scope, m.product)
            for opt in self._options(scope, m.product):
                line.modifiers.append(opt.name)
                line.modifier_ids.append(opt.id)
            lines.append(line)
        return lines

    def _variant(self, scope: list[str], product: Product) -> tuple[str | None, str | None]:
        for v in product.variants:
            names = VARIANT_SYNONYMS.get(v.name.lower(), {v.name.lower()})
            if any(t in names or similarity(t, v.name.lower()) >= 0.9 for t in scope):
                return v.name, v.id
        return None, None

    def _options(self, scope: list[str], product: Product) -> list[Option]:
        chosen: list[Option] = []
        text = " ".join(scope)
        for opt in product.modifiers:
            words = [w for w in opt.name.lower().split() if w not in ("milk", "syrup", "extra")] or opt.name.lower().split()
            if opt.name.lower() in text or any(similarity(t, w) >= 0.88 for t in scope for w in words):
                chosen.append(opt)
        return chosen

    def _unknown(self, tokens: list[str], mentions: list[_Mention], menu: Menu) -> list[str]:
        """Things asked for that are not on the menu: 'a pizza', 'two hot dogs'."""
        covered = {i for m in mentions for i in range(m.start, m.end)}
        known = {w for p in menu.products for w in [p.name.lower(), *p.name.lower().split()]}
        known |= {w for p in menu.products for o in [*p.variants, *p.modifiers] for w in o.name.lower().split()}
        known |= {w for names in VARIANT_SYNONYMS.values() for w in names}
        unknown: list[str] = []
        i = 0
        while i < len(tokens):
            if quantity_of(tokens[i]) and i not in covered:
                phrase: list[str] = []
                j = i + 1
                while j < len(tokens) and len(phrase) < 3 and j not in covered and tokens[j] not in ITEM_BREAKS \
                        and tokens[j] not in ("with", "please", "to", "for", "of") and not quantity_of(tokens[j]):
                    if tokens[j] not in known and tokens[j] not in FILLER:
                        phrase.append(tokens[j])
                    j += 1
                if phrase and not (set(phrase) & NOT_FOOD) and not any(singular(w) in known for w in phrase) \
                        and (j >= len(tokens) or j not in covered):
                    unknown.append(" ".join(phrase))
                i = j
                continue
            i += 1
        return unknown


# ---- LLM backend ---------------------------------------------------------------------------------

TOOL = {
    "type": "function",
    "function": {
        "name": "record_understanding",
        "description": "Record what the caller said, resolved against the venue's menu.",
        "parameters": {
            "type": "object",
            "properties": {
                "intent": {"type": "string", "enum": list(INTENTS)},
                "items": {"type": "array", "items": {"type": "object", "properties": {
                    "product": {"type": "string"}, "variant": {"type": ["string", "null"]},
                    "modifiers": {"type": "array", "items": {"type": "string"}},
                    "quantity": {"type": "integer", "minimum": 1, "maximum": 99}},
                    "required": ["product", "quantity"]}},
                "unknown_items": {"type": "array", "items": {"type": "string"}},
                "affirm": {"type": ["boolean", "null"]},
                "done": {"type": "boolean"},
                "fulfilment": {"type": ["string", "null"], "enum": ["pickup", "delivery", None]},
                "usual": {"type": "boolean"},
            },
            "required": ["intent", "items"],
        },
    },
}

SYSTEM = ("You take phone orders for a venue. Classify the caller's utterance: intent is 'order' (wants to buy), "
          "'status' (asks about an order already placed), 'human' (wants a person, or a complaint) or 'unknown'. "
          "List ordered items using only products, variants and options from this menu (exact spelling); put "
          "anything not on the menu in unknown_items. affirm is true for yes, false for no, null otherwise; done is "
          "true when they have nothing more to add. Always answer by calling record_understanding.\nMENU_JSON: ")


class LlmUnderstander:
    """An OpenAI-compatible chat completions endpoint with one forced tool call. Names it returns are
    resolved against the menu with the same fuzzy matching; anything else is dropped. When the
    endpoint fails or answers nonsense, the rule-based backend answers instead (logged)."""

    name = "llm"

    def __init__(self, base_url: str, api_key: str, model: str, timeout: float = 8.0,
                 client: httpx.AsyncClient | None = None) -> None:
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.api_key = api_key
        self.model = model
        self.timeout = timeout
        self.client = client
        self.fallback = RuleUnderstander()

    async def understand(self, text: str, menu: Menu, step: str = "intent") -> Understanding:
        body = {"model": self.model, "temperature": 0,
                "messages": [{"role": "system", "content": SYSTEM + json.dumps(menu.as_prompt())},
                             {"role": "user", "content": json.dumps({"step": step, "utterance": text})}],
                "tools": [TOOL], "tool_choice": {"type": "function", "function": {"name": "record_understanding"}}}
        headers = {"authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        try:
            if self.client is not None:
                resp = await self.client.post(self.url, json=body, headers=headers, timeout=self.timeout)
            else:
                async with httpx.AsyncClient() as client:
                    resp = await client.post(self.url, json=body, headers=headers, timeout=self.timeout)
            resp.raise_for_status()
            call = resp.json()["choices"][0]["message"]["tool_calls"][0]["function"]
            args = json.loads(call["arguments"])
            return self._resolve(args, menu)
        except (httpx.HTTPError, KeyError, IndexError, TypeError, ValueError) as exc:
            log.warning("LLM backend failed; rules answer", extra={"action": "voice_nlu_fallback", "error": str(exc)})
            u = await self.fallback.understand(text, menu, step)
            u.backend = "rules-fallback"
            return u

    def _resolve(self, args: dict[str, Any], menu: Menu) -> Understanding:
        intent = args.get("intent") if args.get("intent") in INTENTS else "unknown"
        u = Understanding(intent=intent, backend=self.name, unknown_items=[str(x) for x in args.get("unknown_items") or []],
                          affirm=args.get("affirm") if isinstance(args.get("affirm"), bool) else None,
                          done=bool(args.get("done")), usual=bool(args.get("usual")),
                          fulfilment=args.get("fulfilment") if args.get("fulfilment") in ("pickup", "delivery") else None)
        for item in args.get("items") or []:
            product = best(menu.products, str(item.get("product", "")))
            if product is None:
                u.unknown_items.append(str(item.get("product", "")))
                continue
            qty = item.get("quantity") if isinstance(item.get("quantity"), int) and 1 <= item["quantity"] <= 99 else 1
            line = Line(product.name, qty, product_id=product.id)
            variant = best(product.variants, str(item.get("variant") or "")) if item.get("variant") else None
            if variant:
                line.variant, line.variant_id = variant.name, variant.id
            for name in item.get("modifiers") or []:
                opt = best(product.modifiers, str(name))
                if opt and opt.name not in line.modifiers:
                    line.modifiers.append(opt.name)
                    line.modifier_ids.append(opt.id)
            u.items.append(line)
        return u


def best(options: Any, name: str, threshold: float = 0.8) -> Any:
    """The option whose name is closest to `name`, if close enough."""
    scored = [(similarity(name.lower().strip(), o.name.lower()), o) for o in options]
    good = [s for s in scored if s[0] >= threshold]
    if good:
        return max(good, key=lambda s: s[0])[1]
    said = name.lower().strip()
    containing = [o for o in options if said and said in o.name.lower().split()]  # "oat" for "Oat milk"
    return containing[0] if len(containing) == 1 else None


def understander_from_settings(settings: Settings, client: httpx.AsyncClient | None = None) -> Understander:
    """The backend the settings choose: 'rules' (default) or 'llm' (over `client` when given, kept alive
    across turns; without one each turn builds its own client and TLS context, ~30 ms of CPU)."""
    if settings.voice_nlu_backend == "llm":
        return LlmUnderstander(settings.voice_llm_base_url, settings.voice_llm_api_key, settings.voice_llm_model,
                               settings.voice_llm_timeout, client=client)
    return RuleUnderstander()
