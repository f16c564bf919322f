"""Print documents (the JSON `print_jobs.document` the database writes) laid out for a receipt printer,
then encoded for the printer that asked: plain text, Star Line Mode / StarPRNT command bytes for Star
CloudPRNT, ePOS-Print XML for Epson Server Direct Print.

The layout is one list of styled lines shared by every encoder, so the text rendering (`brigade demo`,
`text/plain`) shows exactly what the Star and Epson encodings print: the same lines, the same breaks.
Allergens print inverted (white on black) and bold; the order number double size.
"""

from __future__ import annotations

import textwrap
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any, Literal

from defusedxml import ElementTree as SafeET

Style = Literal["normal", "bold", "invert", "big", "rule"]

# Characters per line of font A: 48 on 80 mm paper, 32 on 58 mm (Star and Epson TM alike).
COLUMNS = {80: 48, 58: 32}

STAR_LINE = "application/vnd.star.line"
STAR_PRNT = "application/vnd.star.starprnt"
TEXT = "text/plain"
# What Brigade serves to a CloudPRNT printer, best first (the printer picks from the list).
CLOUDPRNT_MEDIA_TYPES = (STAR_PRNT, STAR_LINE, TEXT)
EPOS_NS = "http://www.epson-pos.com/schemas/2011/03/epos-print"


@dataclass(frozen=True)
class Line:
    text: str
    style: Style = "normal"
    align: Literal["left", "center"] = "left"


def columns(doc: dict[str, Any]) -> int:
    return COLUMNS.get(int(doc.get("paper_width_mm") or 80), 48)


def _money(cents: int | None, currency: str | None) -> str:
    if cents is None:
        return ""
    return f"{cents / 100:,.2f} {(currency or '').upper()}".strip()


def _wrap(text: str, width: int, indent: str = "") -> list[str]:
    return textwrap.wrap(text, width=width, initial_indent=indent, subsequent_indent=indent + "  ") or [indent.rstrip()]


def layout(doc: dict[str, Any]) -> list[Line]:
    """The styled lines of a document, wrapped to the paper's width."""
    width = columns(doc)
    kind = doc.get("kind", "ticket")
    out: list[Line] = []
    title = {"ticket": "KITCHEN", "reprint": "KITCHEN - REPRINT", "void": "*** VOID ***", "change": "*** CHANGED ***",
             "receipt": "RECEIPT"}.get(kind, kind.upper())
    stations = doc.get("stations") or []
    if kind != "receipt" and stations:
        title += " / " + ", ".join(s.upper() for s in stations)
    out.append(Line(title, "invert" if kind in ("void", "change") else "bold", "center"))
    out.append(Line(f"#{doc.get('order_number')}", "big", "center"))
    where = {"pickup": "PICKUP", "delivery": "DELIVERY", "dine_in": "DINE IN"}.get(doc.get("fulfilment") or "", "")
    if doc.get("table_ref"):
        where += f" - TABLE {doc['table_ref']}" + (" (QR)" if doc.get("channel") == "qr" else "")
    if where:
        out.append(Line(where, "bold", "center"))
    if doc.get("venue") or doc.get("placed_at"):
        out.append(Line(f"{doc.get('venue') or ''}  {doc.get('placed_at') or ''}".strip()))
    label = "Pickup" if doc.get("fulfilment") == "pickup" else "Due"
    out.append(Line(f"{label}: {doc.get('pickup_at') or 'ASAP'}", "bold"))
    if doc.get("customer"):
        out.append(Line(f"Name: {doc['customer']}"))
    if kind in ("void", "change") and doc.get("reason"):
        out.extend(Line(t, "bold") for t in _wrap(f"Reason: {doc['reason']}", width))
    out.append(Line("-" * width, "rule"))
    allergens = doc.get("allergens") or []
    if allergens and kind != "receipt":
        out.extend(Line(t, "invert") for t in _wrap("ALLERGY: " + ", ".join(a.upper() for a in allergens), width))
        out.append(Line("-" * width, "rule"))
    for item in doc.get("items") or []:
        name = item["name"] + (f" ({item['variant']})" if item.get("variant") else "")
        head = f"{'VOID ' if kind == 'void' else 'REMOVE ' if kind == 'change' else ''}{item['quantity']} x {name}"
        if kind == "receipt":
            price = _money(item.get("line_total_cents"), doc.get("currency"))
            lines = _wrap(head, width - len(price) - 1)
            out.append(Line(lines[0].ljust(width - len(price)) + price))
            out.extend(Line(t) for t in lines[1:])
        else:
            out.extend(Line(t, "bold") for t in _wrap(head, width))
        for mod in item.get("modifiers") or []:
            out.extend(Line(t) for t in _wrap(f"+ {mod}", width, "   "))
        if item.get("notes"):
            out.extend(Line(t, "bold") for t in _wrap(f"! {item['notes']}", width, "   "))
    out.append(Line("-" * width, "rule"))
    if doc.get("notes"):
        out.extend(Line(t, "bold") for t in _wrap(f"NOTE: {doc['notes']}", width))
    if kind == "receipt":
        for label, key in (("Tax", "tax_cents"), ("Tip", "tip_cents"), ("TOTAL", "total_cents")):
            if doc.get(key) is not None:
                amount = _money(doc[key], doc.get("currency"))
                out.append(Line(label.ljust(width - len(amount)) + amount, "bold" if label == "TOTAL" else "normal"))
    if doc.get("copy"):
        out.append(Line(f"COPY - printed {doc.get('printed_at') or ''}".strip(), "normal", "center"))
    return out


def render_text(doc: dict[str, Any]) -> str:
    """The document as the printer prints it, in plain text (inverted lines between ▌ marks)."""
    width = columns(doc)
    rows = []
    for line in layout(doc):
        text = f"▌{line.text}▐" if line.style == "invert" else line.text.upper() if line.style == "big" else line.text
        rows.append(text.center(width).rstrip() if line.align == "center" else text)
    return "\n".join(rows) + "\n"


def render_plain(doc: dict[str, Any]) -> bytes:
    """text/plain for CloudPRNT: no control codes (the printer cuts after it)."""
    width = columns(doc)
    rows = [(line.text.center(width).rstrip() if line.align == "center" else line.text) for line in layout(doc)]
    return ("\n".join(rows) + "\n\n").encode("ascii", "replace")


# Star Line Mode commands (StarPRNT shares them): Star Line Mode Command Specifications.
ESC = b"\x1b"
_STAR_STYLE_ON = {"bold": ESC + b"E", "invert": ESC + b"4", "big": ESC + b"i\x01\x01" + ESC + b"E"}
_STAR_STYLE_OFF = {"bold": ESC + b"F", "invert": ESC + b"5", "big": ESC + b"i\x00\x00" + ESC + b"F"}
_STAR_ALIGN = {"left": ESC + b"\x1da\x00", "center": ESC + b"\x1da\x01"}


def render_star(doc: dict[str, Any]) -> bytes:
    """Star Line Mode bytes: initialise, styled lines, feed and partial cut."""
    out = bytearray(ESC + b"@")
    for line in layout(doc):
        out += _STAR_ALIGN[line.align] + _STAR_STYLE_ON.get(line.style, b"")
        out += line.text.encode("ascii", "replace") + _STAR_STYLE_OFF.get(line.style, b"") + b"\n"
    out += _STAR_ALIGN["left"] + ESC + b"d\x03"  # feed to the cutter and cut partially
    return bytes(out)


def render_epos(doc: dict[str, Any]) -> ET.Element:
    """The <epos-print> element of ePOS-Print XML for the document."""
    root = ET.Element("epos-print", xmlns=EPOS_NS)
    for line in layout(doc):
        big = line.style == "big"
        attrs = {"align": line.align, "em": str(line.style in ("bold", "big", "invert")).lower(),
                 "reverse": str(line.style == "invert").lower(), "dw": str(big).lower(), "dh": str(big).lower()}
        ET.SubElement(root, "text", attrs).text = line.text + "\n"
    ET.SubElement(root, "feed", line="3")
    ET.SubElement(root, "cut", type="feed")
    return root


def epson_print_request(jobs: list[tuple[str, dict[str, Any]]]) -> bytes:
    """A Server Direct Print answer: PrintRequestInfo with one ePOSPrint per (job id, document)."""
    info = ET.Element("PrintRequestInfo", Version="2.00")
    for job_id, doc in jobs:
        epos = ET.SubElement(info, "ePOSPrint")
        param = ET.SubElement(epos, "Parameter")
        ET.SubElement(param, "devid").text = "local_printer"
        ET.SubElement(param, "timeout").text = "10000"
        ET.SubElement(param, "printjobid").text = job_id
        ET.SubElement(epos, "PrintData").append(render_epos(doc))
    return ('<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(info, encoding="unicode")).encode("utf-8")


def epson_responses(xml_text: str) -> list[tuple[str, bool, str]]:
    """(printjobid, success, code) of each ePOSPrint in a SetResponse's ResponseFile."""
    root = SafeET.fromstring(xml_text)  # the printer's answer is untrusted input
    out = []
    for epos in root.iter("ePOSPrint"):
        job_id = (epos.findtext("Parameter/printjobid") or "").strip()
        response = next((el for el in epos.iter() if el.tag.split("}")[-1] == "response"), None)
        if response is None:
            continue
        out.append((job_id, response.get("success", "").lower() == "true", response.get("code", "") or ""))
    return out


def render(doc: dict[str, Any], media_type: str) -> bytes:
    """The document in a CloudPRNT media type; ValueError for one Brigade does not produce."""
    base = media_type.split(";")[0].strip().lower()
    if base in (STAR_LINE, STAR_PRNT):
        return render_star(doc)
    if base == TEXT:
        return render_plain(doc)
    raise ValueError(f"unsupported media type {media_type}")
