"""`brigade voice-demo`: one phone order on the demo business's Downtown number, played against the
running local stack the way Twilio would (signed form posts to each Gather action, then the status
callback). Start the stack with the same BRIGADE_TWILIO_AUTH_TOKEN (any string locally): requests are
verified with it.
"""

from __future__ import annotations

import secrets
import xml.etree.ElementTree as ET
from typing import Any

import httpx
import psycopg
from psycopg.rows import dict_row
from twilio.request_validator import RequestValidator

from brigade.settings import Settings

NUMBER, CALLER = "+12125550150", "+15555550177"
SCRIPT = ["Hi, can I get a large latte with oat milk and two croissants", "that's all", "pickup", "yes please"]


def run(settings: Settings, script: list[str] | None = None) -> int:
    if not settings.twilio_auth_token:
        print("Set BRIGADE_TWILIO_AUTH_TOKEN (any string locally) for `brigade up` and for this command: "
              "the voice function verifies every request with it.")
        return 2
    validator = RequestValidator(settings.twilio_auth_token)
    sid = "CA" + secrets.token_hex(16)
    base = {"CallSid": sid, "AccountSid": settings.twilio_account_sid or "AC" + "0" * 32, "From": CALLER, "To": NUMBER}

    def post(url: str, params: dict[str, str]) -> ET.Element | Any:
        r = httpx.post(url, data=params, headers={"X-Twilio-Signature": validator.compute_signature(url, params)}, timeout=30)
        if r.status_code != 200:
            raise SystemExit(f"{url}: {r.status_code} {r.text}")
        return ET.fromstring(r.text) if r.headers.get("content-type", "").startswith("application/xml") else r.json()

    twiml = post(f"{settings.functions_url}/twilio-voice", {**base, "CallStatus": "ringing"})
    for line in [None, *(script or SCRIPT)]:
        if line is not None:
            gather = twiml.find("Gather")
            if gather is None:
                break
            print(f"caller: {line}")
            twiml = post(gather.get("action"), {**base, "CallStatus": "in-progress", "SpeechResult": line, "Confidence": "0.9"})
        print("agent:  " + " ".join(e.text or "" for e in twiml.iter("Say")))
        if twiml.find("Dial") is not None:
            print(f"        (dials {twiml.find('Dial').text})")
    cost = post(f"{settings.functions_url}/twilio-voice/status", {**base, "CallStatus": "completed", "CallDuration": "75"})
    print(f"status callback: {cost}")
    with psycopg.connect(settings.dsn, row_factory=dict_row) as conn:
        row = conn.execute("select outcome, credits_charged, o.order_number, o.total_cents, o.payment_status, o.checkout_url "
                           "from public.calls c left join public.orders o on o.business_id = c.business_id and o.id = c.order_id "
                           "where c.call_sid = %s", (sid,)).fetchone()
        bal = conn.execute("select balance from public.voice_credit_balances where business_id = "
                           "'00000000-0000-4000-8000-000000000001'").fetchone()
    print(f"call: {row}; credit balance now {bal['balance'] if bal else 0}")
    print(f"The payment link went by SMS (see {settings.outbox_file} with the log provider); paying it runs the normal fan-out.")
    return 0
