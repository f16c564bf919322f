"""Driving calls as Twilio does: signed form posts to the voice URL, to each Gather's action (or the
Redirect when nothing was heard) and to the status callback; and a fake OpenAI-compatible chat
endpoint that answers with the documented tool-call shape."""

from __future__ import annotations

import atexit
import itertools
import json
import os
import secrets
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any

import httpx
from twilio.request_validator import RequestValidator

from brigade.voice.nlu import Menu, RuleUnderstander
from tests.fakes.http import FakeServer, Recorded, Reply

DEMO_BUSINESS = "00000000-0000-4000-8000-000000000001"
DOWNTOWN = "00000000-0000-4000-8000-000000000101"
DOWNTOWN_NUMBER = "+12125550150"   # seed.sql: the Twilio number that rings Downtown
DOWNTOWN_PHONE = "+12125550101"    # seed.sql: Downtown's own phone, where calls are forwarded
CALLER = "+14155550123"


_CLIENTS: dict[int, httpx.Client] = {}


def _client() -> httpx.Client:
    """One keep-alive client per process (httpx.Client is thread-safe): `httpx.post` builds a client and
    its TLS context per request, about 30 ms of CPU under the GIL, which made the caller, not the
    server, the limit of bench/voice.py's concurrent calls."""
    pid = os.getpid()
    if pid not in _CLIENTS:
        _CLIENTS[pid] = httpx.Client(timeout=30)
        atexit.register(_CLIENTS[pid].close)
    return _CLIENTS[pid]


@dataclass
class Twiml:
    """One TwiML answer, parsed."""

    status: int
    xml: str
    root: ET.Element | None = None

    @property
    def says(self) -> str:
        return " ".join((e.text or "") for e in self.root.iter("Say")) if self.root is not None else ""

    @property
    def gather(self) -> ET.Element | None:
        return self.root.find("Gather") if self.root is not None else None

    @property
    def redirect(self) -> str | None:
        el = self.root.find("Redirect") if self.root is not None else None
        return el.text if el is not None else None

    @property
    def dial(self) -> str | None:
        el = self.root.find("Dial") if self.root is not None else None
        return (el.text or "").strip() if el is not None else None

    @property
    def hangup(self) -> bool:
        return self.root is not None and self.root.find("Hangup") is not None


@dataclass
class Call:
    """A caller on the phone: dial, speak, stay silent, hang up; every request signed like Twilio's."""

    base: str
    auth_token: str
    account_sid: str
    to: str = DOWNTOWN_NUMBER
    from_: str = CALLER
    sid: str = field(default_factory=lambda: "CA" + secrets.token_hex(16))
    last: Twiml | None = None

    def post(self, url: str, params: dict[str, str], signature: str | None = None) -> httpx.Response:
        sig = signature if signature is not None else RequestValidator(self.auth_token).compute_signature(url, params)
        return _client().post(url, data=params, headers={"X-Twilio-Signature": sig}, timeout=30)

    def _params(self, **extra: str) -> dict[str, str]:
        return {"CallSid": self.sid, "AccountSid": self.account_sid, "From": self.from_, "To": self.to,
                "Direction": "inbound", "ApiVersion": "2010-04-01", **extra}

    def _twiml(self, resp: httpx.Response) -> Twiml:
        t = Twiml(resp.status_code, resp.text)
        if resp.status_code == 200 and resp.headers.get("content-type", "").startswith("application/xml"):
            t.root = ET.fromstring(resp.text)
        self.last = t
        return t

    def dial(self) -> Twiml:
        return self._twiml(self.post(f"{self.base}/functions/v1/twilio-voice", self._params(CallStatus="ringing")))

    def say(self, text: str, confidence: float = 0.92) -> Twiml:
        assert self.last is not None and self.last.gather is not None, f"nothing is listening: {self.last}"
        action = self.last.gather.get("action")
        assert action and self.last.gather.get("input") == "speech"
        return self._twiml(self.post(action, self._params(CallStatus="in-progress", SpeechResult=text, Confidence=str(confidence))))

    def silence(self) -> Twiml:
        assert self.last is not None and self.last.redirect, "no fallback after the Gather"
        return self._twiml(self.post(self.last.redirect, self._params(CallStatus="in-progress")))

    def status(self, status: str = "completed", duration: int | None = None) -> httpx.Response:
        extra = {"CallStatus": status, **({"CallDuration": str(duration)} if duration is not None else {})}
        return self.post(f"{self.base}/functions/v1/twilio-voice/status", self._params(**extra))


class FakeLlm:
    """An OpenAI-compatible /v1/chat/completions that answers with a forced tool call. What it
    'understands' comes from the menu and utterance in the request (the offline rules stand in for a
    model), so the same call scripts pass through the LLM backend's request, parsing and resolution."""

    def __init__(self, server: FakeServer) -> None:
        self.server = server
        self.counter = itertools.count(1)
        self.broken = False
        server.route("POST", r"/v1/chat/completions", self._complete)

    def _complete(self, req: Recorded, _: Any) -> Reply:
        if self.broken:
            return Reply(500, {"error": {"message": "upstream overloaded", "type": "server_error"}})
        body = req.json
        system = body["messages"][0]["content"]
        prompt_menu = json.loads(system.split("MENU_JSON: ", 1)[1])
        menu = Menu.from_json([{"id": p["product"], "name": p["product"], "price_cents": 0,
                                "variants": [{"id": v, "name": v, "is_default": False} for v in p["variants"]],
                                "modifiers": [{"id": m, "name": m} for m in p["options"]]} for p in prompt_menu])
        user = json.loads(body["messages"][-1]["content"])
        u = RuleUnderstander().understand_sync(user["utterance"], menu, user.get("step", "intent"))
        args = {"intent": u.intent, "unknown_items": u.unknown_items, "affirm": u.affirm, "done": u.done,
                "fulfilment": u.fulfilment, "usual": u.usual,
                "items": [{"product": line.product, "variant": line.variant, "modifiers": line.modifiers,
                           "quantity": line.quantity} for line in u.items]}
        n = next(self.counter)
        return Reply(200, {"id": f"chatcmpl-{n}", "object": "chat.completion", "model": body["model"], "choices": [{
            "index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": None, "tool_calls": [{
                "id": f"call_{n}", "type": "function",
                "function": {"name": "record_understanding", "arguments": json.dumps(args)}}]}}]})

    def requests(self) -> list[dict[str, Any]]:
        return [r.json for r in self.server.calls("POST", r"/v1/chat/completions")]
