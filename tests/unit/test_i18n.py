"""The message catalogs: every English key translated in every shipped language (the failure lists
the untranslated keys), the same placeholders in every translation, English as the fallback, and
money and times written as each locale writes them, in the venue's time zone."""

from __future__ import annotations

import re
import shutil
from datetime import datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

from brigade import i18n

PLACEHOLDER = re.compile(r"\{(\w+)\}")


def test_every_key_is_translated_with_the_same_placeholders() -> None:
    shipped = i18n.catalogs()
    assert {"en", "fr", "bg"} <= set(shipped)
    english = shipped["en"]
    untranslated = {loc: sorted(set(english) - set(texts)) for loc, texts in shipped.items()}
    assert {loc: keys for loc, keys in untranslated.items() if keys} == {}, "untranslated keys (they fall back to English)"
    unknown = {loc: sorted(set(texts) - set(english)) for loc, texts in shipped.items()}
    assert {loc: keys for loc, keys in unknown.items() if keys} == {}, "keys English does not have"
    mismatched = {(loc, key) for loc, texts in shipped.items() for key, t in texts.items()
                  if set(PLACEHOLDER.findall(t)) != set(PLACEHOLDER.findall(english[key]))}
    assert mismatched == set()


def test_a_missing_translation_falls_back_to_english(tmp_path: Path) -> None:
    shutil.copy(i18n.LOCALES_DIR / "en.po", tmp_path / "en.po")
    french = (i18n.LOCALES_DIR / "fr.po").read_text()
    (tmp_path / "fr.po").write_text(re.sub(r'msgid "order.ready"\nmsgstr "[^"]*"', 'msgid "order.ready"\nmsgstr ""', french))
    partial = i18n.catalogs(tmp_path)
    assert "order.ready" not in partial["fr"] and "order.head" in partial["fr"]
    original = i18n.catalogs
    try:
        i18n.catalogs = lambda directory=tmp_path: partial  # type: ignore[assignment, misc]
        assert i18n.text("fr", "order.ready", head="H", venue="V") == "H is ready at V. Have your pickup code at hand."
        assert i18n.text("fr", "order.head", business="B", number=7) == "B : commande n°7"
    finally:
        i18n.catalogs = original  # type: ignore[misc]
    assert i18n.pick("fr-CA") == "fr" and i18n.pick("de", None) == "en" and i18n.pick(None, "bg") == "bg"
    assert i18n.text("de", "marketing.sms_stop") == "Reply STOP to opt out."


def test_money_and_times_follow_the_locale_and_the_venue_time_zone() -> None:
    assert i18n.money(160150, "USD", "en") == "$1,601.50"
    french = i18n.money(160150, "EUR", "fr")
    assert re.fullmatch(r"1\s601,50\s€", french), french  # CLDR uses a narrow no-break space
    assert i18n.money(1601, "BGN", "bg").startswith("16,01")
    at = datetime(2026, 7, 1, 11, 5, tzinfo=timezone.utc)
    for zone, loc, clock in (("Europe/Sofia", "bg", "%H:%M"), ("Europe/London", "fr", "%H:%M"), ("America/New_York", "en", "%-I:%M")):
        local = at.astimezone(ZoneInfo(zone))
        written = i18n.when(at, zone, loc)
        assert local.strftime(clock) in written and str(local.year) in written, (zone, written)
    assert "juil." in i18n.when(at, "Europe/London", "fr") and "юли" in i18n.when(at, "Europe/Sofia", "bg", "long")
