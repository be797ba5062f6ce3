"""Invoice and credit-note PDFs, rendered from the issued snapshot only (fpdf2).

Nothing here reads live profiles, prices or rates: the same invoice renders the same document
whenever it is downloaded. Fonts ship in assets/fonts: DejaVu Sans, with IPAex Gothic as a
fallback for Japanese.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from fontTools.ttLib import TTFont
from fpdf import FPDF
from fpdf.enums import XPos, YPos
from fpdf.fonts import FontFace

from creditdash.billing.invoicing.invoices import IssuedInvoice
from creditdash.billing.invoicing.profiles import no_address_note
from creditdash.core.money import format_minor

FONT_DIR = Path(__file__).resolve().parents[3] / "assets" / "fonts"
INK = (28, 28, 40)
MUTED = (111, 110, 119)
RULE = (220, 220, 228)


@cache
def _main_font_chars() -> frozenset[int]:
    return frozenset(TTFont(str(FONT_DIR / "DejaVuSans.ttf")).getBestCmap())


def family_for(text: str) -> str:
    """DejaVu Sans when it has every character, else IPAex Gothic (Japanese and Latin).

    Chosen per piece of text rather than with fpdf2's fallback fonts, whose glyph switching
    garbled the Latin text that followed a Japanese line in fpdf2 2.8.9.
    """
    covered = _main_font_chars()
    return "DejaVu" if all(ord(ch) in covered for ch in text) else "IPAexGothic"


def _row(table: Any, texts: list[str]) -> None:
    row = table.row()
    for text in texts:
        family = family_for(text)
        row.cell(text, style=FontFace(family=family) if family != "DejaVu" else None)


def rate_text(rate_bp: int) -> str:
    whole, part = divmod(rate_bp, 100)
    return f"{whole}%" if part == 0 else f"{whole}.{part:02d}".rstrip("0") + "%"


def _party_lines(party: dict[str, Any], *, tax_label: str) -> list[str]:
    lines = [str(party.get("legal_name") or "")]
    for key in ("address_line1", "address_line2"):
        if party.get(key):
            lines.append(str(party[key]))
    city = " ".join(str(party.get(k) or "") for k in ("postal_code", "city")).strip()
    region = str(party.get("region") or "")
    if city or region:
        lines.append(", ".join(p for p in (city, region) if p))
    note = no_address_note(party)
    if note is not None:
        lines.append(note)
    elif party.get("country"):
        lines.append(str(party["country"]))
    if party.get("tax_id"):
        lines.append(f"{tax_label}: {party['tax_id']}")
    email = party.get("billing_email") or party.get("email")
    if email:
        lines.append(str(email))
    return lines


class _Document(FPDF):
    def __init__(self) -> None:
        super().__init__(format="A4")
        self.add_font("DejaVu", "", str(FONT_DIR / "DejaVuSans.ttf"))
        self.add_font("DejaVu", "B", str(FONT_DIR / "DejaVuSans-Bold.ttf"))
        self.add_font("IPAexGothic", "", str(FONT_DIR / "ipaexg.ttf"))
        self.set_auto_page_break(auto=True, margin=20)
        self.set_margins(18, 18, 18)
        self.footer_text = ""

    def footer(self) -> None:
        self.set_y(-14)
        self.set_font(family_for(self.footer_text), "", 7.5)
        self.set_text_color(*MUTED)
        self.cell(0, 5, self.footer_text, align="L")
        self.set_font("DejaVu", "", 7.5)
        self.cell(0, 5, f"Page {self.page_no()}/{{nb}}", align="R")


def render_pdf(issued: IssuedInvoice) -> bytes:
    invoice = issued.invoice
    seller = json.loads(invoice.seller_json)
    buyer = json.loads(invoice.buyer_json)
    money = lambda minor: f"{format_minor(minor, invoice.currency)} {invoice.currency}"  # noqa: E731
    credit_note = invoice.kind == "credit_note"

    pdf = _Document()
    pdf.set_title(f"{'Credit note' if credit_note else 'Invoice'} {invoice.number}")
    pdf.set_author(str(seller.get("legal_name") or ""))
    pdf.set_creation_date(invoice.issued_at)
    pdf.footer_text = f"{seller.get('legal_name', '')} · {invoice.number}"
    pdf.add_page()

    pdf.set_text_color(*INK)
    pdf.set_font("DejaVu", "B", 20)
    pdf.cell(
        0, 10, "CREDIT NOTE" if credit_note else "INVOICE", new_x=XPos.LMARGIN, new_y=YPos.NEXT
    )
    pdf.set_font("DejaVu", "", 9.5)
    facts = [
        ("Number", invoice.number),
        ("Issue date", invoice.issued_at.date().isoformat()),
        ("Order", invoice.order_id),
        ("Payment reference", invoice.payment_reference),
    ]
    decided = json.loads(invoice.tax_json or "{}").get("decided_on")
    if decided:
        # Tax is fixed when the order is opened (the amount the customer agreed to pay).
        facts.append(("Tax determined on", str(decided)))
    for label, value in facts:
        pdf.set_text_color(*MUTED)
        pdf.cell(38, 5.5, label)
        pdf.set_text_color(*INK)
        pdf.cell(0, 5.5, value, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    if invoice.notes:
        pdf.set_text_color(*INK)
        pdf.multi_cell(0, 5.5, invoice.notes, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(5)

    top = pdf.get_y()
    column = (pdf.w - pdf.l_margin - pdf.r_margin) / 2
    for index, (title, party, tax_label) in enumerate(
        [("From", seller, "VAT ID"), ("Bill to", buyer, "Tax ID")]
    ):
        pdf.set_xy(pdf.l_margin + index * column, top)
        pdf.set_font("DejaVu", "B", 9.5)
        pdf.set_text_color(*MUTED)
        pdf.cell(column, 6, title.upper(), new_x=XPos.LEFT, new_y=YPos.NEXT)
        pdf.set_font("DejaVu", "", 10)
        pdf.set_text_color(*INK)
        for line in _party_lines(party, tax_label=tax_label):
            pdf.set_font(family_for(line), "", 10)
            pdf.multi_cell(column - 4, 5.2, line, new_x=XPos.LEFT, new_y=YPos.NEXT)
    pdf.set_xy(pdf.l_margin, max(pdf.get_y(), top + 45))
    pdf.ln(4)

    pdf.set_font("DejaVu", "", 9.5)
    pdf.set_draw_color(*RULE)
    with pdf.table(
        col_widths=(90, 18, 35, 35),
        text_align=("LEFT", "RIGHT", "RIGHT", "RIGHT"),
        borders_layout="HORIZONTAL_LINES",
        line_height=7,
    ) as table:
        table.row(["Description", "Qty", "Unit price", "Net"])
        for item in issued.lines:
            _row(
                table,
                [
                    item.description,
                    str(item.quantity),
                    money(item.unit_minor),
                    money(item.net_minor),
                ],
            )
    pdf.ln(4)

    with pdf.table(
        col_widths=(90, 18, 35, 35),
        text_align=("LEFT", "RIGHT", "RIGHT", "RIGHT"),
        borders_layout="HORIZONTAL_LINES",
        line_height=7,
    ) as table:
        table.row(["Tax", "Rate", "Taxable", "Tax amount"])
        for tax in issued.tax_lines:
            name = f"{tax.name} {tax.jurisdiction} ({tax.code.replace('_', ' ')})".strip()
            table.row(
                [name, rate_text(tax.rate_bp), money(tax.taxable_minor), money(tax.amount_minor)]
            )
    wording = [t.wording for t in issued.tax_lines if t.wording]
    for text in wording:
        pdf.ln(1)
        pdf.set_font("DejaVu", "", 8.5)
        pdf.multi_cell(0, 4.8, text, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(4)

    for label, minor, bold in (
        ("Net", invoice.net_minor, False),
        ("Tax", invoice.tax_minor, False),
        ("Total refunded" if credit_note else "Total", invoice.gross_minor, True),
    ):
        pdf.set_font("DejaVu", "B" if bold else "", 11 if bold else 10)
        pdf.cell(pdf.w - pdf.r_margin - pdf.l_margin - 45, 7, label, align="R")
        pdf.cell(45, 7, money(minor), align="R", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(6)
    pdf.set_font("DejaVu", "", 8.5)
    pdf.set_text_color(*MUTED)
    closing = (
        "This credit note reduces the invoice it names by the amount shown."
        if credit_note
        else "Paid in full. Thank you for your business."
    )
    pdf.multi_cell(0, 4.8, closing, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    if seller.get("bank_details") and not credit_note:
        bank = f"Bank: {seller['bank_details']}"
        pdf.set_font(family_for(bank), "", 8.5)
        pdf.multi_cell(0, 4.8, bank, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    return bytes(pdf.output())
