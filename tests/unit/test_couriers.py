"""Courier adapters without a network: DoorDash's self-signed JWT, Uber's webhook signature, the
status mapping words, and the log courier's idempotent ids."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
from pathlib import Path

import jwt

from brigade.couriers import DeliveryJob, DoorDashDrive, LogCourier, couriers_from_settings
from brigade.settings import Settings
from functions.delivery_webhook import uber_signature

SECRET = base64.urlsafe_b64encode(bytes(range(32))).decode().rstrip("=")


def test_doordash_jwt_is_hs256_with_the_decoded_secret_and_dd_ver_header() -> None:
    settings = Settings(doordash_developer_id="dev-9", doordash_key_id="key-9", doordash_signing_secret=SECRET)
    token = DoorDashDrive(settings).token(now=1_800_000_000)
    header = jwt.get_unverified_header(token)
    assert (header["alg"], header["dd-ver"]) == ("HS256", "DD-JWT-V1")
    claims = jwt.decode(token, bytes(range(32)), algorithms=["HS256"], audience="doordash", options={"verify_exp": False, "verify_iat": False})
    assert claims == {"aud": "doordash", "iss": "dev-9", "kid": "key-9", "iat": 1_800_000_000, "exp": 1_800_000_300}
    # the secret as text (not decoded) does not verify: the decoding step matters
    try:
        jwt.decode(token, SECRET.encode(), algorithms=["HS256"], audience="doordash", options={"verify_exp": False, "verify_iat": False})
    except jwt.InvalidSignatureError:
        pass
    else:
        raise AssertionError("a token signed with the undecoded secret")


def test_uber_signature_is_hex_hmac_sha256_of_the_raw_body() -> None:
    body = b'{"kind":"event.delivery_status","status":"pickup"}'
    assert uber_signature(body, "k") == hmac.new(b"k", body, hashlib.sha256).hexdigest()
    assert uber_signature(body + b" ", "k") != uber_signature(body, "k")


def test_log_couriers_book_the_same_id_for_the_same_delivery(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    couriers = couriers_from_settings(settings)
    assert set(couriers) == {"uber", "doordash"} and all(isinstance(c, LogCourier) for c in couriers.values())
    job = DeliveryJob("brg-1", "Cafe", {"line1": "1 Main St", "city": "NYC"}, "+1", "Dee", {"line1": "2 Side St"}, "+2", 1000, 100, "USD")
    uber = couriers["uber"]

    async def book() -> str:
        quote = await uber.quote(job)
        return (await uber.create(job, quote)).provider_delivery_id

    assert asyncio.run(book()) == asyncio.run(book())
    assert "brg-1" in (tmp_path / "outbox.jsonl").read_text()
    assert DeliveryJob.one_line({"line1": "1 Main St", "city": "NYC", "country": "US"}) == "1 Main St, NYC, US"
    assert isinstance(couriers_from_settings(Settings(courier_provider="live"))["doordash"], DoorDashDrive)
