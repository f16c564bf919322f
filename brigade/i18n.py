"""Customer-facing texts per locale: gettext catalogs (brigade/locales/<locale>.po, read with Babel)
keyed by message id, English as the source and the fallback; money, dates and times formatted with
Babel's CLDR data for the locale, in the venue's time zone.

The locale of a message is the customer's (customers.locale), else the venue's default
(venues.default_locale), else English. A key missing from a catalog, or an empty translation, falls
back to English (tests/unit/test_i18n.py lists every untranslated key).
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from babel import Locale, UnknownLocaleError
from babel.dates import format_datetime, format_skeleton, format_time
from babel.messages.pofile import read_po
from babel.numbers import format_currency

LOCALES_DIR = Path(__file__).parent / "locales"
SOURCE = "en"


@lru_cache
def catalogs(directory: Path = LOCALES_DIR) -> dict[str, dict[str, str]]:
    """Every catalog in the directory: locale -> {key: text} (untranslated entries left out)."""
    out: dict[str, dict[str, str]] = {}
    for path in sorted(directory.glob("*.po")):
        with path.open("rb") as fh:
            catalog = read_po(fh, locale=path.stem)
        out[path.stem] = {str(m.id): str(m.string) for m in catalog if m.id and m.string}
    return out


def supported() -> list[str]:
    return sorted(catalogs())


def pick(*candidates: str | None) -> str:
    """The first candidate locale we ship (exact, then its language: fr-CA -> fr), else English."""
    shipped = catalogs()
    for candidate in candidates:
        if not candidate:
            continue
        tag = candidate.replace("_", "-")
        if tag in shipped:
            return tag
        if tag.split("-")[0] in shipped:
            return tag.split("-")[0]
    return SOURCE


def text(locale: str | None, key: str, **values: Any) -> str:
    """The message `key` in `locale` (English when untranslated), with `{name}` placeholders filled."""
    shipped = catalogs()
    template = shipped.get(pick(locale), {}).get(key) or shipped[SOURCE][key]
    return template.format(**values)


def _babel_locale(locale: str | None) -> Locale:
    try:
        return Locale.parse(pick(locale).replace("-", "_"))
    except (UnknownLocaleError, ValueError):
        return Locale.parse(SOURCE)


def money(cents: int, currency: str, locale: str | None) -> str:
    """An amount in minor units as the locale writes it: $16.01, 16,01 €, 16,01 лв."""
    return format_currency(cents / 100, currency.upper(), locale=_babel_locale(locale))


def when(at: datetime, time_zone: str | None, locale: str | None, fmt: str = "medium") -> str:
    """A moment in the venue's time zone, as the locale writes dates and times."""
    return format_datetime(at, fmt, tzinfo=ZoneInfo(time_zone or "UTC"), locale=_babel_locale(locale))


def clock(at: datetime, time_zone: str | None, locale: str | None) -> str:
    """A time of day in the venue's time zone, as the locale writes it (2:05 PM, 14:05)."""
    return format_time(at, "short", tzinfo=ZoneInfo(time_zone or "UTC"), locale=_babel_locale(locale))


def day_and_time(at: datetime, time_zone: str | None, locale: str | None) -> str:
    """A session's start: the weekday and date, then the time, as the locale writes them (Wed, Dec 2, 2026 8:23 PM)."""
    loc = _babel_locale(locale)
    zone = ZoneInfo(time_zone or "UTC")
    return f"{format_skeleton('yMMMEd', at, tzinfo=zone, locale=loc)} {format_time(at, 'short', tzinfo=zone, locale=loc)}"
