"""Outside services behind small interfaces: SMS and voice (Twilio), email (Resend), payments
(Stripe). Each has a `log` twin used when no credentials are configured: it records the send like the
real one, prints it and appends it to the outbox file, so the local run shows every message.

The official SDKs are synchronous; their calls run in a thread so the event loop never blocks.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol

from brigade.errors import BrigadeError
from brigade.settings import Settings

log = logging.getLogger("brigade.providers")


class ProviderError(BrigadeError):
    """An outside service refused or failed; the message says which and why."""

    status = 502
    code = "provider_error"


@dataclass
class Sent:
    provider: str
    message_id: str
    status: str
    cost_cents: float


@dataclass(frozen=True)
class Attachment:
    """A file attached to an email (the receipt PDF)."""

    filename: str
    content: bytes
    content_type: str = "application/pdf"


@dataclass
class CheckoutSession:
    id: str
    url: str
    expires_at: datetime


@dataclass
class ProviderRefund:
    id: str
    status: str
    failure_reason: str | None = None


def _record_locally(settings: Settings, kind: str, body: dict[str, Any]) -> None:
    entry = {"at": datetime.now(timezone.utc).isoformat(), "kind": kind, **body}
    print(f"[{kind}] " + json.dumps(body, default=str), flush=True)
    try:
        settings.outbox_file.parent.mkdir(parents=True, exist_ok=True)
        with settings.outbox_file.open("a") as fh:
            fh.write(json.dumps(entry, default=str) + "\n")
    except OSError as exc:  # the printed line is enough
        log.warning("could not append to the outbox file", extra={"action": "log_provider", "error": str(exc)})


class Sms(Protocol):
    async def send(self, to: str, body: str, *, status_callback: str | None = None,
                   sender: dict[str, Any] | None = None) -> Sent: ...


class Voice(Protocol):
    async def call(self, to: str, say: str) -> Sent: ...


class Email(Protocol):
    async def send(self, to: str, subject: str, text: str, *, idempotency_key: str,
                   headers: dict[str, str] | None = None, html: str | None = None,
                   attachments: list[Attachment] | None = None) -> Sent: ...


@dataclass
class Pushed:
    """What the push service answered for one subscription: gone (404/410) means delete it."""

    status: int
    gone: bool
    error: str | None = None


class Push(Protocol):
    name: str

    async def push(self, subscription: dict[str, Any], payload: dict[str, Any], *, ttl: int) -> Pushed: ...


class Payments(Protocol):
    async def create_checkout_session(self, params: dict[str, Any], *, idempotency_key: str,
                                      stripe_account: str | None = None) -> CheckoutSession: ...

    async def create_refund(self, params: dict[str, Any], *, idempotency_key: str,
                            stripe_account: str | None = None) -> ProviderRefund: ...

    async def expire_checkout_session(self, session_id: str, *, stripe_account: str | None = None) -> None: ...

    async def retrieve_checkout_session(self, session_id: str, *, stripe_account: str | None = None) -> dict[str, Any] | None: ...

    async def create_customer(self, params: dict[str, Any], *, idempotency_key: str,
                              stripe_account: str | None = None) -> str | None: ...


class LogSms:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def send(self, to: str, body: str, *, status_callback: str | None = None,
                   sender: dict[str, Any] | None = None) -> Sent:
        sender = sender or {}
        _record_locally(self.settings, "sms", {"to": to, "body": body,
                                               "from": sender.get("phone_number") or sender.get("messaging_service_sid") or "platform"})
        return Sent("log", f"log-sms-{uuid.uuid4().hex[:12]}", "sent", 0.0)


class LogVoice:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def call(self, to: str, say: str) -> Sent:
        _record_locally(self.settings, "call", {"to": to, "say": say})
        return Sent("log", f"log-call-{uuid.uuid4().hex[:12]}", "queued", 0.0)


class LogEmail:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def send(self, to: str, subject: str, text: str, *, idempotency_key: str,
                   headers: dict[str, str] | None = None, html: str | None = None,
                   attachments: list[Attachment] | None = None) -> Sent:
        files = []
        for attachment in attachments or []:
            # the local run's "inbox": attachments are written next to the outbox file
            path = self.settings.data_dir / "attachments" / attachment.filename
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(attachment.content)
                files.append(str(path))
            except OSError as exc:
                log.warning("could not write an attachment", extra={"action": "log_provider", "error": str(exc)})
        _record_locally(self.settings, "email", {"to": to, "subject": subject, "text": text, **({"headers": headers} if headers else {}),
                                                 **({"html_bytes": len(html)} if html else {}), **({"attachments": files} if files else {})})
        return Sent("log", f"log-email-{uuid.uuid4().hex[:12]}", "sent", 0.0)


class LogPush:
    name = "log"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def push(self, subscription: dict[str, Any], payload: dict[str, Any], *, ttl: int) -> Pushed:
        _record_locally(self.settings, "push", {"endpoint": subscription["endpoint"], **payload})
        return Pushed(201, False)


class WebPush:
    """RFC 8030 Web Push with VAPID (RFC 8292) and aes128gcm payload encryption (RFC 8291), by
    pywebpush over aiohttp. 404 and 410 mean the subscription is gone; any other refusal is an error."""

    name = "webpush"

    def __init__(self, settings: Settings) -> None:
        from py_vapid import Vapid02

        self.settings = settings
        key = settings.vapid_private_key.strip()
        self.vapid = Vapid02.from_pem(key.encode()) if key.startswith("-----BEGIN") else Vapid02.from_raw(key.encode())

    async def push(self, subscription: dict[str, Any], payload: dict[str, Any], *, ttl: int) -> Pushed:
        import aiohttp
        from pywebpush import WebPushException, webpush_async

        try:
            async with aiohttp.ClientSession() as session:
                response = await webpush_async(subscription, json.dumps(payload), vapid_private_key=self.vapid,
                                               vapid_claims={"sub": self.settings.vapid_subject}, ttl=ttl,
                                               timeout=aiohttp.ClientTimeout(total=10), aiohttp_session=session)
                status = int(getattr(response, "status", 201))
        except WebPushException as exc:
            status = int(getattr(exc.response, "status", 0) or getattr(exc.response, "status_code", 0) or 0)
            return Pushed(status, status in (404, 410), str(exc).splitlines()[0])
        except aiohttp.ClientError as exc:
            return Pushed(0, False, f"push service unreachable: {exc}")
        return Pushed(status, False)


class LogPayments:
    """Fabricates sessions and refunds so the local run works without Stripe keys."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def create_checkout_session(self, params: dict[str, Any], *, idempotency_key: str,
                                      stripe_account: str | None = None) -> CheckoutSession:
        session_id = "cs_local_" + uuid.uuid5(uuid.NAMESPACE_URL, idempotency_key).hex
        expires = datetime.fromtimestamp(params["expires_at"], timezone.utc)
        _record_locally(self.settings, "checkout", {"session": session_id, "amount": sum(
            li["price_data"]["unit_amount"] * li["quantity"] for li in params["line_items"]), "metadata": params["metadata"]})
        return CheckoutSession(session_id, f"{self.settings.functions_url}/checkout/local/{session_id}", expires)

    async def create_refund(self, params: dict[str, Any], *, idempotency_key: str,
                            stripe_account: str | None = None) -> ProviderRefund:
        refund_id = "re_local_" + uuid.uuid5(uuid.NAMESPACE_URL, idempotency_key).hex[:16]
        _record_locally(self.settings, "refund", {"refund": refund_id, **params})
        return ProviderRefund(refund_id, "succeeded")

    async def expire_checkout_session(self, session_id: str, *, stripe_account: str | None = None) -> None:
        _record_locally(self.settings, "checkout_expired", {"session": session_id})

    async def retrieve_checkout_session(self, session_id: str, *, stripe_account: str | None = None) -> dict[str, Any] | None:
        """Nothing to ask: the local page applies its payment itself."""
        return None

    async def create_customer(self, params: dict[str, Any], *, idempotency_key: str,
                              stripe_account: str | None = None) -> str | None:
        """No Stripe, no saved cards: the local page takes no card."""
        return None


class TwilioSms:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.client = twilio_client(settings)

    async def send(self, to: str, body: str, *, status_callback: str | None = None,
                   sender: dict[str, Any] | None = None) -> Sent:
        """From the business's own sender (app.sms_sender: a number or a Messaging Service) when it has
        one, else from the platform number."""
        from twilio.base.exceptions import TwilioRestException

        extra: dict[str, Any] = {"status_callback": status_callback} if status_callback else {}
        sender = sender or {}
        if sender.get("messaging_service_sid"):
            extra["messaging_service_sid"] = sender["messaging_service_sid"]
        else:
            extra["from_"] = sender.get("phone_number") or self.settings.twilio_from_number
        try:
            msg = await asyncio.to_thread(self.client.messages.create, to=to, body=body, **extra)
        except TwilioRestException as exc:
            raise ProviderError(f"Twilio refused the SMS: {exc.msg}", hint="sms_failed") from exc
        return Sent("twilio", msg.sid, msg.status or "queued", self.settings.sms_cost_cents)


class TwilioVoice:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.client = twilio_client(settings)

    async def call(self, to: str, say: str) -> Sent:
        from twilio.base.exceptions import TwilioRestException
        from twilio.twiml.voice_response import VoiceResponse

        twiml = VoiceResponse()
        twiml.say(say)
        twiml.pause(length=1)
        twiml.say(say)
        try:
            call = await asyncio.to_thread(self.client.calls.create, to=to, from_=self.settings.twilio_from_number, twiml=str(twiml))
        except TwilioRestException as exc:
            raise ProviderError(f"Twilio refused the call: {exc.msg}", hint="call_failed") from exc
        return Sent("twilio", call.sid, call.status or "queued", self.settings.voice_cost_cents_per_minute)


def twilio_client(settings: Settings) -> Any:
    from twilio.rest import Client

    client = Client(settings.twilio_account_sid, settings.twilio_auth_token)
    if settings.twilio_api_base:
        client.api.base_url = settings.twilio_api_base.rstrip("/")
    return client


class ResendEmail:
    def __init__(self, settings: Settings) -> None:
        import resend

        self.settings = settings
        resend.api_key = settings.resend_api_key
        if settings.resend_api_url:
            resend.api_url = settings.resend_api_url.rstrip("/")
        self.resend = resend

    async def send(self, to: str, subject: str, text: str, *, idempotency_key: str,
                   headers: dict[str, str] | None = None, html: str | None = None,
                   attachments: list[Attachment] | None = None) -> Sent:
        params: dict[str, Any] = {"from": self.settings.email_from, "to": [to], "subject": subject, "text": text}
        if headers:
            params["headers"] = headers
        if html:
            params["html"] = html
        if attachments:  # Resend takes the content base64-encoded
            params["attachments"] = [{"filename": a.filename, "content": base64.b64encode(a.content).decode("ascii"),
                                      "content_type": a.content_type} for a in attachments]
        try:
            result = await asyncio.to_thread(self.resend.Emails.send, params, {"idempotency_key": idempotency_key})
        except Exception as exc:  # resend raises its own ResendError family and requests errors
            raise ProviderError(f"Resend refused the email: {exc}", hint="email_failed") from exc
        return Sent("resend", str(result["id"]), "sent", self.settings.email_cost_cents)


class StripePayments:
    def __init__(self, settings: Settings) -> None:
        import stripe

        self.stripe = stripe
        bases = {"api": settings.stripe_api_base.rstrip("/")} if settings.stripe_api_base else None
        self.client = stripe.StripeClient(settings.stripe_secret_key, base_addresses=bases or {}, max_network_retries=2)

    def _options(self, idempotency_key: str, stripe_account: str | None) -> dict[str, Any]:
        options: dict[str, Any] = {"idempotency_key": idempotency_key}
        if stripe_account:
            options["stripe_account"] = stripe_account
        return options

    async def create_checkout_session(self, params: dict[str, Any], *, idempotency_key: str,
                                      stripe_account: str | None = None) -> CheckoutSession:
        try:
            session = await asyncio.to_thread(self.client.v1.checkout.sessions.create, params=params,
                                               options=self._options(idempotency_key, stripe_account))
        except self.stripe.StripeError as exc:
            raise ProviderError(f"Stripe refused the checkout session: {exc.user_message or exc}", hint="checkout_failed") from exc
        return CheckoutSession(session.id, session.url, datetime.fromtimestamp(session.expires_at, timezone.utc))

    async def create_refund(self, params: dict[str, Any], *, idempotency_key: str,
                            stripe_account: str | None = None) -> ProviderRefund:
        if stripe_account:
            # a Connect charge carried the platform fee as an application fee: give it back in proportion
            params = {**params, "refund_application_fee": True}
        try:
            refund = await asyncio.to_thread(self.client.v1.refunds.create, params=params,
                                             options=self._options(idempotency_key, stripe_account))
        except self.stripe.StripeError as exc:
            raise ProviderError(f"Stripe refused the refund: {exc.user_message or exc}", hint="refund_failed") from exc
        return ProviderRefund(refund.id, refund.status or "pending", getattr(refund, "failure_reason", None))

    async def create_customer(self, params: dict[str, Any], *, idempotency_key: str,
                              stripe_account: str | None = None) -> str | None:
        """A Stripe Customer (on the connected account when given) for a signed-in customer's saved cards; its id."""
        try:
            customer = await asyncio.to_thread(self.client.v1.customers.create, params=params,
                                               options=self._options(idempotency_key, stripe_account))
        except self.stripe.StripeError as exc:
            raise ProviderError(f"Stripe refused the customer: {exc.user_message or exc}", hint="checkout_failed") from exc
        return str(customer.id)

    async def expire_checkout_session(self, session_id: str, *, stripe_account: str | None = None) -> None:
        """Closes an open Checkout Session (a booking's hold ran out); one already complete or expired is left as it is."""
        options: dict[str, Any] = {"stripe_account": stripe_account} if stripe_account else {}
        try:
            await asyncio.to_thread(self.client.v1.checkout.sessions.expire, session_id, options=options)
        except self.stripe.InvalidRequestError:
            return  # not open any more: paid (the webhook says so) or already expired
        except self.stripe.StripeError as exc:
            raise ProviderError(f"Stripe refused to expire the session: {exc.user_message or exc}", hint="expire_failed") from exc

    async def retrieve_checkout_session(self, session_id: str, *, stripe_account: str | None = None) -> dict[str, Any] | None:
        """The Checkout Session as Stripe has it now (the object a checkout.session.* event carries)."""
        options: dict[str, Any] = {"stripe_account": stripe_account} if stripe_account else {}
        try:
            session = await asyncio.to_thread(self.client.v1.checkout.sessions.retrieve, session_id, options=options)
        except self.stripe.StripeError as exc:
            raise ProviderError(f"Stripe did not return the session: {exc.user_message or exc}", hint="retrieve_failed") from exc
        return session.to_dict()


@dataclass(frozen=True)
class GeoPoint:
    latitude: float
    longitude: float


class Geocoder(Protocol):
    async def geocode(self, address: str, *, near: tuple[float, float] | None = None) -> GeoPoint | None: ...


class LogGeocoder:
    """Looks nothing up (no network locally): records the request and answers None, "unknown"."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def geocode(self, address: str, *, near: tuple[float, float] | None = None) -> GeoPoint | None:
        _record_locally(self.settings, "geocode", {"address": address})
        return None


class NominatimGeocoder:
    """OpenStreetMap Nominatim's /search (format=jsonv2, one result). A failure answers None: the
    address is then taken as spoken and place_order applies its own check."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def geocode(self, address: str, *, near: tuple[float, float] | None = None) -> GeoPoint | None:
        import httpx

        params: dict[str, Any] = {"q": address, "format": "jsonv2", "limit": 1}
        if near:  # prefer results around the venue (a viewbox of about ±0.5°, not bounded)
            lat, lon = near
            params["viewbox"] = f"{lon - 0.5},{lat + 0.5},{lon + 0.5},{lat - 0.5}"
        try:
            async with httpx.AsyncClient(base_url=self.settings.geocoder_base_url, timeout=5,
                                         headers={"User-Agent": self.settings.geocoder_user_agent}) as client:
                r = await client.get("/search", params=params)
                r.raise_for_status()
                results = r.json()
            if results:
                return GeoPoint(float(results[0]["lat"]), float(results[0]["lon"]))
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            log.warning("geocoding failed", extra={"action": "geocode_failed", "error": str(exc)})
        return None


@dataclass
class Providers:
    sms: Sms
    voice: Voice
    email: Email
    payments: Payments
    push: Push | None = None
    couriers: dict[str, Any] = field(default_factory=dict)  # name -> brigade.couriers.Courier
    geocoder: Geocoder | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> "Providers":
        from brigade.couriers import couriers_from_settings

        twilio = settings.sms_provider == "twilio"
        return cls(
            sms=TwilioSms(settings) if twilio else LogSms(settings),
            voice=TwilioVoice(settings) if twilio else LogVoice(settings),
            email=ResendEmail(settings) if settings.email_provider == "resend" else LogEmail(settings),
            payments=StripePayments(settings) if settings.payments_provider == "stripe" else LogPayments(settings),
            push=WebPush(settings) if settings.push_provider == "webpush" else LogPush(settings),
            couriers=couriers_from_settings(settings),
            geocoder=NominatimGeocoder(settings) if settings.geocoder_provider == "nominatim" else LogGeocoder(settings),
        )


def session_expiry(settings: Settings, now: datetime | None = None) -> datetime:
    """When a new Checkout Session expires (Stripe allows 30 minutes to 24 hours)."""
    minutes = min(max(settings.checkout_session_minutes, 30), 24 * 60)
    return (now or datetime.now(timezone.utc)) + timedelta(minutes=minutes, seconds=30)

