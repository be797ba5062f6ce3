"""Issuing invoices and credit notes, with gapless numbers per series and year.

A number is taken by bumping the series' counter row inside the issuing transaction: the row
lock makes concurrent issuers queue, and a rolled-back issue rolls its number back with it, so
numbers have no gaps and no duplicates. Everything on an invoice is copied from snapshots
(the order's tax and buyer snapshot, the seller profile at issue time), so later edits to
profiles or rates never change it.

What a document is drawn from reaches it as a Sale or a RefundPaid, which payments builds from
its order and refund rows: invoicing reads no payment table, and payments (which settles orders
and refunds and has them documented here) is the one of the two that imports the other.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass

from sqlalchemy import update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, col, select

from creditdash.billing.invoicing.models import (
    Invoice,
    InvoiceCounter,
    InvoiceLine,
    InvoiceTaxLine,
)
from creditdash.billing.invoicing.profiles import describe_seller, get_seller
from creditdash.core import outbox
from creditdash.core.errors import NotFound
from creditdash.core.money import format_credits, format_minor
from creditdash.core.timeutil import utcnow

NUMBER_DIGITS = 6


@dataclass(frozen=True)
class Sale:
    """A paid order as its invoice copies it."""

    order_id: str
    customer_id: str
    package_name: str
    quantity: int
    # Purchased and bonus credits of the whole order.
    credits_micros: int
    currency: str
    net_minor: int
    tax_minor: int
    gross_minor: int
    tax_scheme: str
    # The order's snapshots, taken when it was placed ("{}" if it has none).
    tax_snapshot_json: str
    buyer_json: str
    # What identifies the payment to the buyer (the settling payment, transfer or checkout).
    payment_reference: str


@dataclass(frozen=True)
class RefundPaid:
    """A succeeded refund of a paid order, as its credit note copies it."""

    refund_id: str
    order_id: str
    customer_id: str
    amount_minor: int
    payment_reference: str


@dataclass(frozen=True)
class IssuedInvoice:
    invoice: Invoice
    lines: list[InvoiceLine]
    tax_lines: list[InvoiceTaxLine]


def _next_number(session: Session, prefix: str, year: int) -> tuple[str, int, str]:
    series = f"{prefix}-{year}"
    dialect = session.get_bind().dialect.name
    make_insert = pg_insert if dialect == "postgresql" else sqlite_insert
    session.execute(
        make_insert(InvoiceCounter)
        .values(series=series, last_number=0)
        .on_conflict_do_nothing(index_elements=["series"])
    )
    sequence = session.execute(
        update(InvoiceCounter)
        .where(col(InvoiceCounter.series) == series)
        .values(last_number=col(InvoiceCounter.last_number) + 1)
        .returning(col(InvoiceCounter.last_number))
    ).scalar_one()
    return series, int(sequence), f"{series}-{int(sequence):0{NUMBER_DIGITS}d}"


def _store(
    session: Session,
    invoice: Invoice,
    line: InvoiceLine,
    tax_line: InvoiceTaxLine,
) -> IssuedInvoice:
    session.add(invoice)
    session.flush()
    assert invoice.id is not None
    line.invoice_id = invoice.id
    tax_line.invoice_id = invoice.id
    session.add(line)
    session.add(tax_line)
    session.flush()
    return IssuedInvoice(invoice, [line], [tax_line])


def issue_invoice(session: Session, sale: Sale) -> IssuedInvoice:
    """The invoice for a paid order; called in the transaction that settles the order."""
    existing = session.exec(
        select(Invoice).where(
            col(Invoice.order_id) == sale.order_id, col(Invoice.kind) == "invoice"
        )
    ).first()
    if existing is not None:
        return load(session, existing)
    seller = get_seller(session)
    tax = json.loads(sale.tax_snapshot_json)
    series, sequence, number = _next_number(session, seller.invoice_prefix, utcnow().year)
    # Taken after the counter's lock, so numbers and issue times run in the same order.
    now = utcnow()
    unit_minor = sale.net_minor // sale.quantity if sale.net_minor % sale.quantity == 0 else 0
    invoice = Invoice(
        number=number,
        series=series,
        sequence=sequence,
        kind="invoice",
        order_id=sale.order_id,
        customer_id=sale.customer_id,
        issued_at=now,
        currency=sale.currency,
        net_minor=sale.net_minor,
        tax_minor=sale.tax_minor,
        gross_minor=sale.gross_minor,
        tax_scheme=sale.tax_scheme,
        seller_json=json.dumps(describe_seller(seller), sort_keys=True),
        buyer_json=sale.buyer_json,
        tax_json=sale.tax_snapshot_json,
        payment_reference=sale.payment_reference,
    )
    line = InvoiceLine(
        invoice_id=0,
        position=1,
        description=_line_text(sale),
        quantity=sale.quantity if unit_minor else 1,
        unit_minor=unit_minor or sale.net_minor,
        net_minor=sale.net_minor,
    )
    issued = _store(session, invoice, line, _tax_line(tax, sale.net_minor, sale.tax_minor))
    outbox.emit(
        session,
        type="invoice.issued",
        customer_id=sale.customer_id,
        data={
            "invoice_number": number,
            "kind": "invoice",
            "order_id": sale.order_id,
            "net_minor": sale.net_minor,
            "tax_minor": sale.tax_minor,
            "gross_minor": sale.gross_minor,
            "currency": sale.currency,
            "issued_at": now.isoformat(),
        },
        dedupe_key=f"invoice.issued:{number}",
    )
    return issued


def _line_text(sale: Sale) -> str:
    credits = format_credits(sale.credits_micros).rstrip("0").rstrip(".")
    return f"{sale.package_name} credit package: {credits} credits"


def _tax_line(tax: dict[str, object], taxable_minor: int, amount_minor: int) -> InvoiceTaxLine:
    return InvoiceTaxLine(
        invoice_id=0,
        jurisdiction=str(tax.get("jurisdiction", "")),
        code=str(tax.get("scheme", "untaxed")),
        name=str(tax.get("tax_name", "Tax")),
        rate_bp=int(str(tax.get("rate_bp", 0))),
        taxable_minor=taxable_minor,
        amount_minor=amount_minor,
        wording=str(tax.get("wording", "")),
    )


def issue_credit_note(
    session: Session, refund: RefundPaid, *, failed_refund_ids: Collection[str]
) -> IssuedInvoice:
    """A credit note for a succeeded refund, naming the order's invoice; once per refund.

    The refunded gross splits into net and tax cumulatively over the order's refunds
    (tax_back = floor(invoice tax * refunded / gross)), so credit notes for a full refund add
    up to the invoice exactly. failed_refund_ids are the order's refunds that failed after
    their note was issued: those notes stay issued but no longer count as money returned.
    """
    existing = session.exec(
        select(Invoice).where(col(Invoice.refund_id) == refund.refund_id)
    ).first()
    if existing is not None:
        return load(session, existing)
    original = session.exec(
        select(Invoice).where(
            col(Invoice.order_id) == refund.order_id, col(Invoice.kind) == "invoice"
        )
    ).first()
    if original is None:
        raise NotFound(f"order {refund.order_id} has no invoice to credit")
    assert original.id is not None
    before = session.exec(
        select(Invoice).where(
            col(Invoice.credits_invoice_id) == original.id,
            col(Invoice.kind) == "credit_note",
            col(Invoice.refund_id).not_in(list(failed_refund_ids)),
            col(Invoice.refund_id) != refund.refund_id,
        )
    ).all()
    gross_before = sum(note.gross_minor for note in before)
    tax_before = sum(note.tax_minor for note in before)
    gross_after = gross_before + refund.amount_minor
    tax_after = original.tax_minor * gross_after // original.gross_minor
    tax_minor = tax_after - tax_before
    net_minor = refund.amount_minor - tax_minor
    seller = get_seller(session)
    series, sequence, number = _next_number(session, seller.credit_note_prefix, utcnow().year)
    now = utcnow()
    note = Invoice(
        number=number,
        series=series,
        sequence=sequence,
        kind="credit_note",
        order_id=refund.order_id,
        customer_id=refund.customer_id,
        credits_invoice_id=original.id,
        refund_id=refund.refund_id,
        issued_at=now,
        currency=original.currency,
        net_minor=net_minor,
        tax_minor=tax_minor,
        gross_minor=refund.amount_minor,
        tax_scheme=original.tax_scheme,
        seller_json=json.dumps(describe_seller(seller), sort_keys=True),
        buyer_json=original.buyer_json,
        tax_json=original.tax_json,
        payment_reference=refund.payment_reference,
        notes=f"Credit note for invoice {original.number} (refund {refund.refund_id}).",
    )
    line = InvoiceLine(
        invoice_id=0,
        position=1,
        description=f"Refund for invoice {original.number}",
        quantity=1,
        unit_minor=net_minor,
        net_minor=net_minor,
    )
    tax = json.loads(original.tax_json)
    return _store(session, note, line, _tax_line(tax, net_minor, tax_minor))


def load(session: Session, invoice: Invoice) -> IssuedInvoice:
    lines = session.exec(
        select(InvoiceLine)
        .where(col(InvoiceLine.invoice_id) == invoice.id)
        .order_by(col(InvoiceLine.position))
    ).all()
    tax_lines = session.exec(
        select(InvoiceTaxLine)
        .where(col(InvoiceTaxLine.invoice_id) == invoice.id)
        .order_by(col(InvoiceTaxLine.id))
    ).all()
    return IssuedInvoice(invoice, list(lines), list(tax_lines))


def get_by_number(
    session: Session, number: str, *, customer_id: str | None = None
) -> IssuedInvoice:
    """An invoice by number; with customer_id, only that customer's (others are not found)."""
    query = select(Invoice).where(col(Invoice.number) == (number or "").strip())
    if customer_id is not None:
        query = query.where(col(Invoice.customer_id) == customer_id)
    invoice = session.exec(query).first()
    if invoice is None:
        raise NotFound(f"no invoice {number!r}")
    return load(session, invoice)


def list_invoices(
    session: Session, *, customer_id: str | None = None, limit: int = 500
) -> list[Invoice]:
    query = select(Invoice).order_by(col(Invoice.issued_at).desc(), col(Invoice.id).desc())
    if customer_id is not None:
        query = query.where(col(Invoice.customer_id) == customer_id)
    return list(session.exec(query.limit(limit)))


def describe_invoice(invoice: Invoice) -> dict[str, object]:
    """The list item docs/contract.md shapes."""
    return {
        "number": invoice.number,
        "order_id": invoice.order_id,
        "kind": invoice.kind,
        "issued_at": invoice.issued_at.isoformat(),
        "net": format_minor(invoice.net_minor, invoice.currency),
        "tax": format_minor(invoice.tax_minor, invoice.currency),
        "gross": format_minor(invoice.gross_minor, invoice.currency),
        "currency": invoice.currency,
        "tax_scheme": invoice.tax_scheme,
        "customer_id": invoice.customer_id,
    }
