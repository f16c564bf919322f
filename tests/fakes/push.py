"""A Web Push service (RFC 8030) on the fake HTTP server, and browsers that subscribe to it.

The service checks what a real one checks before it accepts a message: the VAPID `Authorization:
vapid t=<JWT>, k=<public key>` header (RFC 8292: ES256 signature by that key, `aud` = its own origin,
`exp` in the future and at most 24 hours away, a `sub` contact), the configured key (the
applicationServerKey the browser subscribed with), a TTL header and an aes128gcm body. A browser
holds its P-256 key and auth secret, as a real one does, so the test decrypts each message (RFC 8291)
and reads exactly what the device would show. Endpoints marked gone answer 410 like an unsubscribed
browser's.
"""

from __future__ import annotations

import base64
import json
import os
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import http_ece
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid02

from tests.fakes.http import FakeServer, Recorded, Reply


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def vapid_keys() -> tuple[str, str]:
    """A fresh VAPID key pair as settings take it: (private raw base64url, public uncompressed base64url)."""
    v = Vapid02()
    v.generate_keys()
    private = v.private_key.private_numbers().private_value.to_bytes(32, "big")
    public = v.public_key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    return b64url(private), b64url(public)


@dataclass
class Browser:
    """One device's push subscription: the keys stay here, the JSON goes to the server."""

    endpoint: str
    key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    auth_secret: bytes = field(default_factory=lambda: os.urandom(16))

    def subscription(self) -> dict[str, Any]:
        public = self.key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
        return {"endpoint": self.endpoint, "expirationTime": None, "keys": {"p256dh": b64url(public), "auth": b64url(self.auth_secret)}}

    def read(self, body: bytes) -> dict[str, Any]:
        message: dict[str, Any] = json.loads(http_ece.decrypt(body, private_key=self.key, auth_secret=self.auth_secret, version="aes128gcm"))
        return message


class FakePushService:
    def __init__(self, server: FakeServer, vapid_public_key: str) -> None:
        self.server = server
        self.vapid_public_key = vapid_public_key
        self.browsers: dict[str, Browser] = {}
        self.gone: set[str] = set()
        self.refused: list[str] = []
        server.route("POST", r"/push/(?P<device>[A-Za-z0-9_-]+)", self._push)

    def browser(self, *, gone: bool = False) -> Browser:
        device = uuid.uuid4().hex
        self.browsers[device] = Browser(f"{self.server.url}/push/{device}")
        if gone:
            self.gone.add(device)
        return self.browsers[device]

    def _check_vapid(self, req: Recorded) -> str | None:
        m = re.fullmatch(r"vapid t=(?P<t>[^,\s]+),\s*k=(?P<k>[A-Za-z0-9_-]+)", req.headers.get("authorization", ""))
        if not m:
            return "no vapid authorization"
        if m["k"] != self.vapid_public_key:
            return "not the applicationServerKey the browser subscribed with"
        public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), unb64url(m["k"]))
        try:
            claims = jwt.decode(m["t"], public, algorithms=["ES256"], audience=self.server.url)
        except jwt.PyJWTError as exc:
            return f"bad vapid token: {exc}"
        if not str(claims.get("sub", "")).startswith(("mailto:", "https:")) or claims["exp"] > time.time() + 86400:
            return "vapid claims out of bounds"
        if req.headers.get("content-encoding") != "aes128gcm" or "ttl" not in req.headers:
            return "missing TTL or not aes128gcm"
        return None

    def _push(self, req: Recorded, match: re.Match[str]) -> Reply:
        problem = self._check_vapid(req)
        if problem:
            self.refused.append(problem)
            return Reply(401, {"reason": problem})
        device = match["device"]
        if device in self.gone or device not in self.browsers:
            return Reply(410, {"reason": "push subscription has unsubscribed or expired"})
        return Reply(201, None, {"location": f"{self.server.url}/message/{uuid.uuid4().hex}"})

    def delivered(self, browser: Browser) -> list[dict[str, Any]]:
        """The messages this browser received (decrypted), in order."""
        path = browser.endpoint.removeprefix(self.server.url)
        return [browser.read(r.body) for r in self.server.calls("POST", re.escape(path) + "$")
                if r.path == path and not self._check_vapid(r) and path.rsplit("/", 1)[1] not in self.gone]
