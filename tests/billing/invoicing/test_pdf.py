"""Invoice PDFs: the text in the file matches the issued snapshot, in any script."""

from __future__ import annotations

import io
import json

import pytest
from pypdf import PdfReader

from creditdash.billing.invoicing import invoices, pdf, profiles
from creditdash.billing.payments import refunds
from creditdash.core import db
from creditdash.core.audit import CLI
from tests.billing.shop import Shop, session_event


def _text(data: bytes) -> str:
    reader = PdfReader(io.BytesIO(data))
    return "\n".join(page.extract_text() for page in reader.pages)


@pytest.mark.parametrize("name", ["Müller GmbH", "Zoë Šťastná", "株式会社テスト"])
def test_pdf_text_matches_the_snapshot(shop: Shop, name: str) -> None:
    with db.session_scope() as session:
        profiles.save_billing_profile(
            session,
            customer_id=shop.customer_id,
            data=profiles.ProfileInput(
                legal_name=name,
                country="DE",
                address_line1="Hauptstraße 1",
                city="München",
                postal_code="80331",
                billing_email="ap@example.com",
            ),
            actor=CLI,
        )
    order = shop.order("Growth")
    shop.post_event(session_event(order, payment_intent="pi_pdf"))
    with db.session_scope(readonly=True) as session:
        [invoice] = invoices.list_invoices(session, customer_id=shop.customer_id)
        data = pdf.render_pdf(invoices.load(session, invoice))
    assert data.startswith(b"%PDF")
    text = _text(data)
    for expected in (
        "INVOICE",
        invoice.number,
        order.id,
        "pi_pdf",
        name,
        "Hauptstraße 1",
        "80331 München",
        "Creditdash Demo GmbH",
        "VAT ID: DE136695976",
        "Growth credit package: 55 credits",
        "50.00 EUR",
        "19%",
        "9.50 EUR",
        "59.50 EUR",
    ):
        assert expected in text, expected


def test_credit_note_pdf_names_its_invoice(shop: Shop) -> None:
    order = shop.order("Growth")
    shop.post_event(session_event(order))
    refunds.refund_order(order.id, amount_minor=500, refund_id="pdf-r", actor=CLI, reason="x")
    with db.session_scope(readonly=True) as session:
        found = invoices.list_invoices(session, customer_id=shop.customer_id)
        note = next(i for i in found if i.kind == "credit_note")
        original = next(i for i in found if i.kind == "invoice")
        text = _text(pdf.render_pdf(invoices.load(session, note)))
    assert "CREDIT NOTE" in text and note.number in text
    assert f"Refund for invoice {original.number}" in text and "5.00 EUR" in text


def test_same_invoice_renders_the_same_bytes(shop: Shop) -> None:
    order = shop.order("Starter")
    shop.post_event(session_event(order))
    with db.session_scope(readonly=True) as session:
        [invoice] = invoices.list_invoices(session, customer_id=shop.customer_id)
        first = pdf.render_pdf(invoices.load(session, invoice))
        second = pdf.render_pdf(invoices.load(session, invoice))
    assert first == second


def test_an_order_without_a_profile_says_no_address_was_given(shop: Shop) -> None:
    """CONTRACT: no profile is needed to order, and the buyer is then taxed as a consumer in
    the seller's country; the invoice says so instead of printing a country nobody entered."""
    with db.session_scope() as session:
        profile = profiles.get_billing_profile(session, shop.customer_id)
        assert profile is not None
        session.delete(profile)
    order = shop.order("Growth")
    shop.post_event(session_event(order, payment_intent="pi_noprofile"))
    with db.session_scope(readonly=True) as session:
        [invoice] = invoices.list_invoices(session, customer_id=shop.customer_id)
        data = pdf.render_pdf(invoices.load(session, invoice))
    buyer = json.loads(invoice.buyer_json)
    assert buyer["profile"] is False and buyer["country"] == ""
    assert buyer["taxed_as"] == "consumer" and buyer["tax_country"] == "DE"
    assert invoice.tax_scheme == "standard" and invoice.gross_minor == 5950  # German VAT, 19%
    text = " ".join(_text(data).split())
    assert "No billing address given; taxed as a consumer in Germany (DE)" in text
    bill_to = text[text.index("BILL TO") :]
    assert bill_to.startswith("BILL TO Buyer")  # the customer's name, then the note
