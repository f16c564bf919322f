"""A programmable HTTP server on 127.0.0.1 for outside APIs (Stripe, Twilio, Resend, DoorDash, Uber).

Each fake registers routes (method + path regex → handler) that answer in the provider's documented
shapes; every request is recorded so tests can assert what the real SDK sent.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body or b"null")

    @property
    def form(self) -> dict[str, list[str]]:
        return parse_qs(self.body.decode(), keep_blank_values=True)


@dataclass
class Reply:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


# serve_forever notices shutdown() only between polls (0.5 s by default, three fakes a test: most of what
# the tests using them spent in teardown).
POLL_INTERVAL = 0.02

Route = Callable[[Recorded, re.Match[str]], Reply]


class FakeServer:
    """Start with `with FakeServer() as fake:`; `fake.url` is its base URL."""

    def __init__(self) -> None:
        self.routes: list[tuple[str, re.Pattern[str], Route]] = []
        self.requests: list[Recorded] = []
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body are two writes: without this each answer waits ~40 ms for an ACK

            def log_message(self, *args: Any) -> None:
                return

            def _handle(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                req = Recorded(self.command, parts.path, parse_qs(parts.query, keep_blank_values=True),
                               {k.lower(): v for k, v in self.headers.items()}, body)
                with fake._lock:
                    fake.requests.append(req)
                reply = fake.dispatch(req)
                payload = b"" if reply.body is None else (
                    reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode())
                self.send_response(reply.status)
                headers = {"content-type": "application/json", **reply.headers}
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": POLL_INTERVAL}, daemon=True)

    def route(self, method: str, pattern: str, handler: Route) -> None:
        """Answer `method` requests whose path fully matches `pattern` with `handler`."""
        self.routes.append((method.upper(), re.compile(pattern), handler))

    def dispatch(self, req: Recorded) -> Reply:
        for method, pattern, handler in self.routes:
            match = pattern.fullmatch(req.path)
            if method == req.method and match:
                return handler(req, match)
        return Reply(404, {"error": {"message": f"no fake route for {req.method} {req.path}"}})

    def calls(self, method: str, pattern: str) -> list[Recorded]:
        """Recorded requests matching method and path regex."""
        rx = re.compile(pattern)
        with self._lock:
            return [r for r in self.requests if r.method == method.upper() and rx.fullmatch(r.path)]

    def __enter__(self) -> "FakeServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
