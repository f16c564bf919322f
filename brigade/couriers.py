"""Courier networks the dispatcher falls back to: Uber Direct (DaaS v1) and DoorDash Drive v2, over
httpx at base URLs from the settings, plus a `log` twin for local runs.

Both are booked "quote, then create" with our own external delivery id (`brg-<delivery uuid>`), which
makes a retried booking land on the same delivery: Uber gets it as `external_id` and
`idempotency_key`, DoorDash as `external_delivery_id` (a second accept of the same id is answered by
reading the delivery back). A 4xx is the network refusing (CourierRefused: try the next network, or
"too late to cancel"); a 5xx or a network error is transient (CourierUnavailable: retry later).
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol

import httpx
import jwt

from brigade.providers import ProviderError, _record_locally
from brigade.settings import Settings


class CourierRefused(ProviderError):
    """The network answered 4xx: it will not do this (outside its area, too late to cancel, ...)."""

    status = 409
    code = "courier_refused"


class CourierUnavailable(ProviderError):
    """The network could not be reached or failed (5xx, timeout): worth retrying later."""

    code = "courier_unavailable"


@dataclass
class DeliveryJob:
    """What a courier network needs to quote and carry one delivery."""

    external_delivery_id: str
    pickup_name: str
    pickup_address: dict[str, Any]
    pickup_phone: str
    dropoff_name: str
    dropoff_address: dict[str, Any]
    dropoff_phone: str
    order_value_cents: int
    tip_cents: int
    currency: str
    pickup_latitude: float | None = None
    pickup_longitude: float | None = None
    dropoff_latitude: float | None = None
    dropoff_longitude: float | None = None
    items: list[dict[str, Any]] = field(default_factory=list)

    @staticmethod
    def one_line(address: dict[str, Any]) -> str:
        parts = [address.get(k) for k in ("line1", "line2", "city", "state", "postal_code", "country")]
        return ", ".join(str(p) for p in parts if p)


@dataclass
class Quote:
    provider: str
    quote_id: str
    fee_cents: int
    currency: str
    expires_at: datetime | None = None
    pickup_eta: datetime | None = None
    dropoff_eta: datetime | None = None


@dataclass
class Booking:
    provider: str
    provider_delivery_id: str
    fee_cents: int
    tracking_url: str | None
    status: str
    pickup_eta: datetime | None = None
    dropoff_eta: datetime | None = None


@dataclass
class CancelResult:
    cancelled: bool
    message: str
    fee_cents: int | None = None


class Courier(Protocol):
    name: str

    async def quote(self, job: DeliveryJob) -> Quote: ...

    async def create(self, job: DeliveryJob, quote: Quote) -> Booking: ...

    async def cancel(self, provider_delivery_id: str, external_delivery_id: str) -> CancelResult: ...


def _time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def _error_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300] or f"HTTP {response.status_code}"
    if isinstance(body, dict):
        for key in ("message", "code", "error", "reason"):
            value = body.get(key)
            if isinstance(value, dict):
                value = value.get("message") or value.get("code")
            if value:
                return str(value)
    return json.dumps(body)[:300]


async def _send(name: str, method: str, url: str, *, timeout: float, headers: dict[str, str],
                json_body: Any = None, data: Any = None) -> Any:
    """One request; 2xx → its JSON, 4xx → CourierRefused, 5xx or network error → CourierUnavailable."""
    try:
        async with httpx.AsyncClient(timeout=timeout) as client:
            response = await client.request(method, url, headers=headers, json=json_body, data=data)
    except httpx.HTTPError as exc:
        raise CourierUnavailable(f"{name} could not be reached: {exc}", hint="courier_unavailable") from exc
    if response.status_code >= 500 or response.status_code == 429:
        raise CourierUnavailable(f"{name} answered {response.status_code}: {_error_message(response)}", hint="courier_unavailable")
    if response.status_code >= 400:
        raise CourierRefused(f"{name} refused ({response.status_code}): {_error_message(response)}", hint="courier_refused")
    return response.json() if response.content else {}


class UberDirect:
    """Uber Direct DaaS v1: OAuth client credentials (scope eats.deliveries), delivery_quotes,
    deliveries, cancel, all under /v1/customers/{customer_id}."""

    name = "uber"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.base = f"{settings.uber_api_base.rstrip('/')}/v1/customers/{settings.uber_customer_id}"
        self._token: tuple[str, float] | None = None

    async def _auth(self) -> dict[str, str]:
        if self._token is None or self._token[1] < time.monotonic() + 60:
            body = await _send(self.name, "POST", self.settings.uber_auth_url, timeout=self.settings.courier_timeout_seconds,
                               headers={}, data={"client_id": self.settings.uber_client_id,
                                                 "client_secret": self.settings.uber_client_secret,
                                                 "grant_type": "client_credentials", "scope": "eats.deliveries"})
            self._token = (body["access_token"], time.monotonic() + float(body.get("expires_in", 3600)))
        return {"authorization": f"Bearer {self._token[0]}"}

    def _places(self, job: DeliveryJob) -> dict[str, Any]:
        def address(a: dict[str, Any]) -> str:  # Uber takes the structured address as a JSON string
            return json.dumps({"street_address": [a.get("line1", ""), a.get("line2", "")], "city": a.get("city", ""),
                               "state": a.get("state", ""), "zip_code": a.get("postal_code", ""), "country": a.get("country", "US")})

        places: dict[str, Any] = {"pickup_address": address(job.pickup_address), "dropoff_address": address(job.dropoff_address),
                                  "pickup_phone_number": job.pickup_phone, "dropoff_phone_number": job.dropoff_phone,
                                  "manifest_total_value": job.order_value_cents, "external_store_id": job.pickup_name}
        for key, value in (("pickup_latitude", job.pickup_latitude), ("pickup_longitude", job.pickup_longitude),
                           ("dropoff_latitude", job.dropoff_latitude), ("dropoff_longitude", job.dropoff_longitude)):
            if value is not None:
                places[key] = value
        return places

    async def quote(self, job: DeliveryJob) -> Quote:
        body = await _send(self.name, "POST", f"{self.base}/delivery_quotes", timeout=self.settings.courier_timeout_seconds,
                           headers=await self._auth(), json_body=self._places(job))
        return Quote(self.name, body["id"], int(body["fee"]), str(body.get("currency", job.currency)).upper(),
                     _time(body.get("expires")), _time(body.get("pickup_eta")) if "pickup_eta" in body else None,
                     _time(body.get("dropoff_eta")))

    async def create(self, job: DeliveryJob, quote: Quote) -> Booking:
        payload = {**self._places(job), "quote_id": quote.quote_id, "pickup_name": job.pickup_name,
                   "dropoff_name": job.dropoff_name or "Customer", "external_id": job.external_delivery_id,
                   "idempotency_key": job.external_delivery_id, "tip": job.tip_cents,
                   "manifest_items": [{"name": i["name"], "quantity": i["quantity"], "size": "small"} for i in job.items]
                   or [{"name": "Order", "quantity": 1, "size": "small"}]}
        body = await _send(self.name, "POST", f"{self.base}/deliveries", timeout=self.settings.courier_timeout_seconds,
                           headers=await self._auth(), json_body=payload)
        return Booking(self.name, body["id"], int(body.get("fee", quote.fee_cents)), body.get("tracking_url"),
                       body.get("status", "pending"), _time(body.get("pickup_eta")), _time(body.get("dropoff_eta")))

    async def cancel(self, provider_delivery_id: str, external_delivery_id: str) -> CancelResult:
        try:
            body = await _send(self.name, "POST", f"{self.base}/deliveries/{provider_delivery_id}/cancel",
                               timeout=self.settings.courier_timeout_seconds, headers=await self._auth(), json_body={})
        except CourierRefused as exc:
            return CancelResult(False, exc.message)
        fee = body.get("fee") if body.get("status") == "canceled" and body.get("courier") else None
        return CancelResult(True, f"uber: {body.get('status', 'canceled')}", int(fee) if fee is not None else None)


class DoorDashDrive:
    """DoorDash Drive v2: a self-signed JWT per request (HS256 with the decoded signing secret,
    header dd-ver DD-JWT-V1), quotes and quote accept, cancel."""

    name = "doordash"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.base = f"{settings.doordash_api_base.rstrip('/')}/drive/v2"

    def token(self, now: float | None = None) -> str:
        secret = self.settings.doordash_signing_secret
        key = base64.urlsafe_b64decode(secret + "=" * (-len(secret) % 4))
        issued = int(now if now is not None else time.time())
        claims = {"aud": "doordash", "iss": self.settings.doordash_developer_id, "kid": self.settings.doordash_key_id,
                  "exp": issued + 300, "iat": issued}
        return jwt.encode(claims, key, algorithm="HS256", headers={"dd-ver": "DD-JWT-V1"})

    def _headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token()}"}

    def _payload(self, job: DeliveryJob) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "external_delivery_id": job.external_delivery_id,
            "pickup_address": job.one_line(job.pickup_address), "pickup_business_name": job.pickup_name,
            "pickup_phone_number": job.pickup_phone,
            "dropoff_address": job.one_line(job.dropoff_address), "dropoff_contact_given_name": job.dropoff_name or "Customer",
            "dropoff_phone_number": job.dropoff_phone, "order_value": job.order_value_cents, "tip": job.tip_cents,
            "currency": job.currency}
        if job.dropoff_latitude is not None:
            payload["dropoff_location"] = {"lat": job.dropoff_latitude, "lng": job.dropoff_longitude}
        return payload

    async def quote(self, job: DeliveryJob) -> Quote:
        body = await _send(self.name, "POST", f"{self.base}/quotes", timeout=self.settings.courier_timeout_seconds,
                           headers=self._headers(), json_body=self._payload(job))
        return Quote(self.name, body["external_delivery_id"], int(body["fee"]), str(body.get("currency", job.currency)).upper(),
                     datetime.now(timezone.utc) + timedelta(minutes=5), _time(body.get("pickup_time_estimated")),
                     _time(body.get("dropoff_time_estimated")))

    async def create(self, job: DeliveryJob, quote: Quote) -> Booking:
        try:
            body = await _send(self.name, "POST", f"{self.base}/quotes/{job.external_delivery_id}/accept",
                               timeout=self.settings.courier_timeout_seconds, headers=self._headers(), json_body={"tip": job.tip_cents})
        except CourierRefused:
            # Accepted already (a retried booking)? Then the delivery exists under our id: read it back.
            body = await _send(self.name, "GET", f"{self.base}/deliveries/{job.external_delivery_id}",
                               timeout=self.settings.courier_timeout_seconds, headers=self._headers())
        return Booking(self.name, body["external_delivery_id"], int(body.get("fee", quote.fee_cents)), body.get("tracking_url"),
                       body.get("delivery_status", "created"), _time(body.get("pickup_time_estimated")),
                       _time(body.get("dropoff_time_estimated")))

    async def cancel(self, provider_delivery_id: str, external_delivery_id: str) -> CancelResult:
        try:
            body = await _send(self.name, "PUT", f"{self.base}/deliveries/{external_delivery_id}/cancel",
                               timeout=self.settings.courier_timeout_seconds, headers=self._headers())
        except CourierRefused as exc:
            return CancelResult(False, exc.message)
        return CancelResult(True, f"doordash: {body.get('delivery_status', 'cancelled')}")


class LogCourier:
    """Books nothing: prints and records what would have been booked, so the local run works."""

    def __init__(self, name: str, settings: Settings, fee_cents: int) -> None:
        self.name = name
        self.settings = settings
        self.fee_cents = fee_cents

    async def quote(self, job: DeliveryJob) -> Quote:
        now = datetime.now(timezone.utc)
        return Quote(self.name, f"log-quote-{self.name}-{job.external_delivery_id}", self.fee_cents, job.currency,
                     now + timedelta(minutes=5), now + timedelta(minutes=8), now + timedelta(minutes=25))

    async def create(self, job: DeliveryJob, quote: Quote) -> Booking:
        delivery_id = f"log-{self.name}-{uuid.uuid5(uuid.NAMESPACE_URL, job.external_delivery_id).hex[:16]}"
        _record_locally(self.settings, "courier", {"provider": self.name, "delivery": delivery_id,
                                                   "external_delivery_id": job.external_delivery_id, "fee_cents": quote.fee_cents,
                                                   "dropoff": job.one_line(job.dropoff_address)})
        return Booking(self.name, delivery_id, quote.fee_cents, f"https://courier.local/{self.name}/{delivery_id}", "pending",
                       quote.pickup_eta, quote.dropoff_eta)

    async def cancel(self, provider_delivery_id: str, external_delivery_id: str) -> CancelResult:
        _record_locally(self.settings, "courier_cancel", {"provider": self.name, "delivery": provider_delivery_id})
        return CancelResult(True, f"{self.name} (log): cancelled")


def couriers_from_settings(settings: Settings) -> dict[str, Courier]:
    """The courier networks by name, live or log as configured."""
    if settings.courier_provider == "live":
        return {"uber": UberDirect(settings), "doordash": DoorDashDrive(settings)}
    return {"uber": LogCourier("uber", settings, 695), "doordash": LogCourier("doordash", settings, 749)}
