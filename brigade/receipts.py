"""Receipts and reports as documents: the receipt of a paid order or booking (app.receipt) as the
HTML body of the receipt email and as a PDF, and the monthly financial report as a PDF.

Jinja2 renders both from templates in brigade/templates over one view (the same rows, amounts and
dates): the email template is full HTML with inline styles (what mail clients keep), the PDF
template the HTML subset fpdf2's write_html lays out. Money and dates are formatted by Babel in
the business's currency, locale and time zone.

fpdf2 rather than WeasyPrint: it is pure Python (no pango/cairo system libraries to install in CI or
on a host) and its output is plain text-drawing PDF that pypdf reads back. It embeds DejaVu Sans
(scripts/ensure-fonts) so every currency sign prints; without the font it falls back to Helvetica
and Latin-1.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from babel import Locale, UnknownLocaleError
from babel.dates import format_date, format_datetime
from babel.numbers import format_currency
from fpdf import FPDF
from jinja2 import Environment, PackageLoader, select_autoescape

FONT_DIR = Path(os.environ.get("BRIGADE_PDF_FONT_DIR", "/usr/share/fonts/truetype/dejavu"))
FONT_FILES = {"": "DejaVuSans.ttf", "B": "DejaVuSans-Bold.ttf", "I": "DejaVuSans-Oblique.ttf", "BI": "DejaVuSans-BoldOblique.ttf"}


@lru_cache
def templates() -> Environment:
    return Environment(loader=PackageLoader("brigade", "templates"), autoescape=select_autoescape(["html", "j2"]),
                       trim_blocks=True, lstrip_blocks=True)


@dataclass(frozen=True)
class Formatter:
    """Money and dates the business's way."""

    currency: str
    locale: str
    time_zone: str

    @property
    def babel_locale(self) -> Locale:
        try:
            return Locale.parse(self.locale.replace("-", "_"))
        except (UnknownLocaleError, ValueError):
            return Locale.parse("en_US")

    def money(self, cents: int | None) -> str:
        return format_currency((cents or 0) / 100, self.currency, locale=self.babel_locale)

    def when(self, value: str | datetime | None) -> str:
        if value is None:
            return ""
        at = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
        return format_datetime(at.astimezone(ZoneInfo(self.time_zone)), "medium", tzinfo=ZoneInfo(self.time_zone),
                               locale=self.babel_locale)

    def day(self, value: Any) -> str:
        return format_date(value, "long", locale=self.babel_locale)


def formatter_for(receipt: dict[str, Any]) -> Formatter:
    business = receipt["business"]
    return Formatter(receipt.get("currency") or business["currency"], business.get("locale") or "en-US",
                     (receipt.get("venue") or {}).get("time_zone") or business.get("time_zone") or "UTC")


def _address(address: Any) -> str:
    if not isinstance(address, dict):
        return ""
    parts = [address.get(k) for k in ("line1", "line2", "city", "postal_code", "region", "country")]
    return ", ".join(str(p) for p in parts if p)


def payment_method_label(method: dict[str, Any] | None) -> str:
    """"Visa •••• 4242", "Apple Pay (Visa •••• 4242)", "Card" when Stripe did not say."""
    if not method:
        return "Card"
    brand = str(method.get("brand") or method.get("type") or "card").replace("_", " ").title()
    label = f"{brand} •••• {method['last4']}" if method.get("last4") else brand
    if method.get("wallet"):
        label = f"{str(method['wallet']).replace('_', ' ').title()} ({label})"
    return label


def receipt_view(receipt: dict[str, Any]) -> dict[str, Any]:
    """What both receipt templates show, every amount and date already formatted."""
    fmt = formatter_for(receipt)
    kind = receipt["kind"]
    lines = []
    for line in receipt["lines"]:
        name = line["name"] + (f" ({line['variant']})" if line.get("variant") else "")
        lines.append({
            "text": f"{line['quantity']} × {name}", "amount": fmt.money(line["line_total_cents"]),
            "modifiers": [m["name"] + (f" +{fmt.money(m['price_cents'])}" if m.get("price_cents") else "")
                          for m in line.get("modifiers") or []],
            "notes": line.get("notes") or "",
            "refunded": (f"{line['refunded_quantity']} refunded" if line.get("refunded_quantity") else ""),
        })
    totals = [("Subtotal", fmt.money(receipt["subtotal_cents"]))]
    if receipt.get("discount_cents"):
        totals.append(("Discount", "−" + fmt.money(receipt["discount_cents"])))
    if receipt.get("tax_cents"):
        totals.append(("Tax", fmt.money(receipt["tax_cents"])))
    if receipt.get("delivery_fee_cents"):
        totals.append(("Delivery fee", fmt.money(receipt["delivery_fee_cents"])))
    if receipt.get("tip_cents"):
        totals.append(("Tip", fmt.money(receipt["tip_cents"])))
    vouchers = [f"{v['reward']} ({v['code']})" + (f": −{fmt.money(v['credit_cents'])}" if v.get("credit_cents") else "")
                for v in receipt.get("vouchers") or []]
    refunds = [{"text": f"Refunded {fmt.when(r['at'])}" + (f" — {r['reason']}" if r.get("reason") else ""),
                "amount": "−" + fmt.money(r["amount_cents"])} for r in receipt.get("refunds") or []]
    business, venue = receipt["business"], receipt.get("venue") or {}
    return {
        "title": f"Receipt — {business['name']}", "business_name": business["name"], "venue_name": venue.get("name") or "",
        "venue_address": _address(venue.get("address")), "venue_phone": venue.get("phone") or "",
        "label": "Order" if kind == "order" else "Booking", "number": receipt["number"],
        "placed_at": fmt.when(receipt.get("placed_at")), "paid_at": fmt.when(receipt.get("paid_at")),
        "session_at": fmt.when(receipt.get("session_starts_at")) if receipt.get("session_starts_at") else "",
        "customer": (receipt.get("customer") or {}).get("name") or "",
        "lines": lines, "totals": totals, "vouchers": vouchers, "total": fmt.money(receipt["total_cents"]),
        "payment_method": payment_method_label(receipt.get("payment_method")),
        "refunds": refunds, "refunded_total": fmt.money(receipt.get("refunded_cents")) if receipt.get("refunded_cents") else "",
        "net_paid": fmt.money(receipt["total_cents"] - (receipt.get("refunded_cents") or 0)),
    }


def receipt_html(receipt: dict[str, Any]) -> str:
    """The receipt email's HTML body."""
    return templates().get_template("receipt_email.html.j2").render(r=receipt_view(receipt))


def receipt_text(receipt: dict[str, Any]) -> str:
    """The receipt email's plain-text part."""
    return templates().get_template("receipt_email.txt.j2").render(r=receipt_view(receipt))


class _Pdf(FPDF):
    def __init__(self, footer_text: str) -> None:
        super().__init__(format="A4")
        self.footer_text = footer_text
        self.set_auto_page_break(True, margin=15)
        self.unicode = all((FONT_DIR / f).is_file() for f in FONT_FILES.values())
        if self.unicode:
            for style, name in FONT_FILES.items():
                self.add_font("DejaVu", style=style, fname=str(FONT_DIR / name))
        self.family = "DejaVu" if self.unicode else "Helvetica"
        self.set_font(self.family, size=10)

    def footer(self) -> None:
        self.set_y(-12)
        self.set_font(self.family, "I", 8)
        self.cell(0, 8, self.footer_text, align="C")

    def html(self, text: str) -> bytes:
        if not self.unicode:  # core fonts carry Latin-1 only
            text = (text.replace("\u202f", " ").replace("\u00a0", " ").replace("−", "-").replace("×", "x")
                    .replace("•", "*").replace("—", "-").replace("€", "EUR").encode("latin-1", "replace").decode("latin-1"))
        self.add_page()
        self.write_html(text, font_family=self.family)
        return bytes(self.output())


def receipt_pdf(receipt: dict[str, Any]) -> bytes:
    """The receipt as a PDF (the email's attachment, the `receipt` function's default)."""
    view = receipt_view(receipt)
    pdf = _Pdf(f"{view['business_name']} — {view['label']} {view['number']}")
    pdf.set_title(view["title"])
    pdf.set_creator("Brigade")
    return pdf.html(templates().get_template("receipt_pdf.html.j2").render(r=view))


def report_view(report: dict[str, Any]) -> dict[str, Any]:
    """What the monthly financial report shows, formatted (app.financial_report)."""
    business = report["business"]
    fmt = Formatter(business["currency"], business.get("locale") or "en-US", business.get("time_zone") or "UTC")
    m = report["totals"]
    rows = [("Orders paid", str(m["orders"])), ("Bookings paid", str(m["bookings"])),
            ("Gross revenue", fmt.money(m["gross_cents"])), ("Refunds", "−" + fmt.money(m["refunds_cents"])),
            ("Net revenue", fmt.money(m["gross_cents"] - m["refunds_cents"])),
            ("Tax collected", fmt.money(m["tax_cents"])), ("Tips", fmt.money(m["tip_cents"])),
            ("Payment processing fees", "−" + fmt.money(m["processing_fees_cents"])),
            ("Platform fees", "−" + fmt.money(m["platform_fees_cents"])),
            ("Payouts in the month", fmt.money(m["payouts_cents"]))]
    return {
        "title": f"{business['name']} — financial report {report['month']}", "business_name": business["name"],
        "month": report["month"], "currency": business["currency"], "rows": rows,
        "venues": [{"name": v["name"], "orders": v["orders"], "gross": fmt.money(v["gross_cents"]),
                    "refunds": fmt.money(v["refunds_cents"])} for v in report["venues"]],
        "products": [{"name": p["name"], "quantity": p["quantity"], "revenue": fmt.money(p["revenue_cents"])}
                     for p in report["top_products"]],
        "payouts": [{"period": f"{p['period_start']} – {p['period_end']}", "status": p["status"], "net": fmt.money(p["net_cents"])}
                    for p in report["payouts"]],
    }


def report_pdf(report: dict[str, Any]) -> bytes:
    """The monthly financial report of one business as a PDF."""
    view = report_view(report)
    pdf = _Pdf(view["title"])
    pdf.set_title(view["title"])
    pdf.set_creator("Brigade")
    return pdf.html(templates().get_template("report_pdf.html.j2").render(r=view))
