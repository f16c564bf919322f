"""What every Twilio webhook shares: the URL Twilio called, and its X-Twilio-Signature checked over that
exact URL (query included) and the posted form, with the `twilio` SDK's RequestValidator."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import parse_qsl

from fastapi import Depends, Request
from twilio.request_validator import RequestValidator

from brigade.errors import Forbidden, InvalidInput
from brigade.settings import Settings
from functions.deps import get_settings


def public_url(request: Request, settings: Settings) -> str:
    """The URL Twilio called, as Twilio saw it (behind a proxy: settings.public_url + path + query)."""
    if not settings.public_url:
        return str(request.url)
    url = settings.public_url.rstrip("/") + request.url.path
    return url + ("?" + request.url.query if request.url.query else "")


async def twilio_params(request: Request, settings: Annotated[Settings, Depends(get_settings)]) -> dict[str, str]:
    """The form Twilio posted, if its signature holds for the exact public URL; 403 otherwise (also when
    no auth token is configured, since nothing could be verified)."""
    try:
        params = dict(parse_qsl((await request.body()).decode("utf-8"), keep_blank_values=True))
    except UnicodeDecodeError as exc:
        raise InvalidInput("body is not UTF-8", hint="invalid_body") from exc
    signature = request.headers.get("x-twilio-signature", "")
    if not signature or not settings.twilio_auth_token or \
            not RequestValidator(settings.twilio_auth_token).validate(public_url(request, settings), params, signature):
        raise Forbidden("Twilio signature does not match", hint="bad_signature")
    return params
