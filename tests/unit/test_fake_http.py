"""The fake-HTTP-server fixture speaks to the real SDKs: here the official `stripe` SDK."""

from __future__ import annotations

from typing import Any

import httpx
import stripe

from tests.fakes.http import FakeServer, Recorded, Reply


def test_routes_record_and_answer(fake_http: FakeServer) -> None:
    fake_http.route("POST", r"/v1/things/(?P<id>\w+)", lambda req, m: Reply(201, {"id": m["id"], "got": req.form}))
    r = httpx.post(f"{fake_http.url}/v1/things/abc", data={"a": "1"})
    assert r.status_code == 201 and r.json() == {"id": "abc", "got": {"a": ["1"]}}
    assert httpx.get(f"{fake_http.url}/v1/unknown").status_code == 404
    [call] = fake_http.calls("POST", r"/v1/things/\w+")
    assert call.form == {"a": ["1"]} and call.headers["content-type"].startswith("application/x-www-form-urlencoded")


def test_the_real_stripe_sdk_talks_to_the_fake(fake_http: FakeServer) -> None:
    def create_customer(req: Recorded, _: Any) -> Reply:
        return Reply(200, {"id": "cus_123", "object": "customer", "email": req.form["email"][0]})

    fake_http.route("POST", r"/v1/customers", create_customer)
    # The SDK's default HTTP client; its HTTPXClient trips an httpx DeprecationWarning (raw `data=`).
    client = stripe.StripeClient("sk_test_fake", base_addresses={"api": fake_http.url})
    customer = client.v1.customers.create(params={"email": "guest@example.test"}, options={"idempotency_key": "k-1"})
    assert customer.id == "cus_123" and customer.email == "guest@example.test"
    [call] = fake_http.calls("POST", "/v1/customers")
    assert call.headers["authorization"] == "Bearer sk_test_fake"
    assert call.headers["idempotency-key"] == "k-1"
