"""The print layout and its encodings, without a database: widths, wrapping, receipts, XML safety."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from brigade import printing
from tests.printers_kit import decode_epos, decode_star

DOC = {"kind": "ticket", "stations": ["grill"], "paper_width_mm": 58, "order_number": 7, "fulfilment": "pickup",
       "pickup_at": "2026-12-02 12:30", "allergens": ["sesame"], "notes": "ring <bell> & wave",
       "items": [{"quantity": 3, "name": "Smoked brisket sandwich with pickled red onions and horseradish", "variant": "Large",
                  "modifiers": ["No cheese"], "notes": "cut in half"}]}


def test_lines_fit_the_paper_and_every_encoding_prints_the_same_lines() -> None:
    lines = printing.layout(DOC)
    assert all(len(line.text) <= 32 for line in lines)
    texts = [line.text for line in lines]
    assert "Pickup: 2026-12-02 12:30" in texts and any(t.startswith("3 x Smoked brisket") for t in texts)
    assert [t for t in texts if t.startswith("  ")], "a long item wraps onto an indented line"
    star = decode_star(printing.render_star(DOC))
    job_id, epos = decode_epos(printing.epson_print_request([("job-1", DOC)]))
    assert star.lines == epos.lines == texts and job_id == "job-1"
    assert star.inverted == epos.inverted == ["ALLERGY: SESAME"]
    assert "NOTE: ring <bell> & wave" in epos.lines, "notes are escaped in the XML, not markup"
    assert printing.render_plain(DOC).decode().splitlines()[:len(texts)] == [
        line.text.center(32).rstrip() if line.align == "center" else line.text for line in lines]


def test_receipts_right_align_amounts_and_unknown_media_types_are_refused() -> None:
    receipt = {**DOC, "kind": "receipt", "paper_width_mm": 80, "currency": "eur", "total_cents": 123456, "tax_cents": 900, "tip_cents": 0,
               "items": [{"quantity": 1, "name": "Latte", "modifiers": [], "line_total_cents": 450}]}
    texts = [line.text for line in printing.layout(receipt)]
    assert "1 x Latte".ljust(48 - len("4.50 EUR")) + "4.50 EUR" in texts
    assert "TOTAL".ljust(48 - len("1,234.56 EUR")) + "1,234.56 EUR" in texts
    assert not any("ALLERGY" in t for t in texts), "receipts are for the guest"
    with pytest.raises(ValueError):
        printing.render(DOC, "image/png")
    assert printing.render(DOC, "application/vnd.star.line; charset=x") == printing.render_star(DOC)
    assert ET.fromstring(printing.epson_print_request([("j", DOC)])).get("Version") == "2.00"
