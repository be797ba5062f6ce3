"""Payment invariants, checked against the ledger (part of `creditdash ledger verify`).

- A settled order (paid, partially or fully refunded) has exactly its top-up transfer of its
  credits, and its bonus transfer when it has a bonus; an order never settled has neither.
- An order's refunded amount equals the sum of its refunds that did not fail, and the credits
  taken back by those refunds are in the ledger once each; a failed refund's credits came back.
- A settled order has exactly one invoice, a succeeded refund at most one credit note, and
  every invoice's total is the sum of its lines and tax lines, exactly.
"""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import func, select
from sqlmodel import Session, col

from creditdash.billing.codes import (
    TransferCode,
    order_bonus_key,
    order_credit_key,
    refund_key,
    refund_reversal_key,
)
from creditdash.billing.invoicing.models import Invoice, InvoiceLine, InvoiceTaxLine
from creditdash.billing.models import Transfer
from creditdash.billing.payments.models import PaymentOrder, Refund

SETTLED = ("paid", "partially_refunded", "refunded")
_PAYMENT_CODES = (
    TransferCode.TOPUP,
    TransferCode.TOPUP_BONUS,
    TransferCode.REFUND,
    TransferCode.REFUND_REVERSAL,
)


def verify_payments(session: Session) -> list[str]:
    moved: dict[tuple[str, str], int] = defaultdict(int)
    counts: dict[tuple[str, str], int] = defaultdict(int)
    rows = session.execute(
        select(
            col(Transfer.code), col(Transfer.idempotency_key), col(Transfer.amount_micros)
        ).where(col(Transfer.code).in_(_PAYMENT_CODES))
    )
    for code, key, amount in rows:
        moved[(code, key)] += int(amount)
        counts[(code, key)] += 1
    problems: list[str] = []
    refunds_by_order: dict[str, list[Refund]] = defaultdict(list)
    for refund in session.execute(select(Refund)).scalars():
        refunds_by_order[refund.order_id].append(refund)
    invoices_by_order: dict[str, int] = defaultdict(int)
    for order_id in session.execute(
        select(col(Invoice.order_id)).where(col(Invoice.kind) == "invoice")
    ).scalars():
        invoices_by_order[order_id] += 1
    for order in session.execute(select(PaymentOrder)).scalars():
        problems += _check_settlement(order, moved, counts)
        problems += _check_refunds(order, refunds_by_order[order.id], moved)
        expected = 1 if order.status in SETTLED else 0
        if invoices_by_order[order.id] != expected:
            problems.append(
                f"order {order.id} is {order.status} and has "
                f"{invoices_by_order[order.id]} invoices, not {expected}"
            )
    return problems + _check_invoice_totals(session)


def _check_invoice_totals(session: Session) -> list[str]:
    lines = dict(
        session.execute(
            select(col(InvoiceLine.invoice_id), func.sum(col(InvoiceLine.net_minor))).group_by(
                col(InvoiceLine.invoice_id)
            )
        ).all()
    )
    taxes = dict(
        session.execute(
            select(
                col(InvoiceTaxLine.invoice_id), func.sum(col(InvoiceTaxLine.amount_minor))
            ).group_by(col(InvoiceTaxLine.invoice_id))
        ).all()
    )
    problems = []
    for number, invoice_id, net, tax, gross in session.execute(
        select(
            col(Invoice.number),
            col(Invoice.id),
            col(Invoice.net_minor),
            col(Invoice.tax_minor),
            col(Invoice.gross_minor),
        )
    ).all():
        line_sum, tax_sum = int(lines.get(invoice_id, 0)), int(taxes.get(invoice_id, 0))
        if not (net == line_sum and tax == tax_sum and gross == line_sum + tax_sum):
            problems.append(
                f"invoice {number}: total {gross} is not lines {line_sum} + tax {tax_sum}"
            )
    return problems


def _check_settlement(
    order: PaymentOrder, moved: dict[tuple[str, str], int], counts: dict[tuple[str, str], int]
) -> list[str]:
    credit = moved.get((TransferCode.TOPUP, order_credit_key(order.id)), 0)
    bonus = moved.get((TransferCode.TOPUP_BONUS, order_bonus_key(order.id)), 0)
    if order.status in SETTLED:
        if credit != order.credits_micros or bonus != order.bonus_micros:
            return [
                f"order {order.id} is {order.status} but its top-up moved {credit}+{bonus} "
                f"micros, not {order.credits_micros}+{order.bonus_micros}"
            ]
    elif credit or bonus:
        return [f"order {order.id} is {order.status} but was credited {credit + bonus} micros"]
    return []


def _check_refunds(
    order: PaymentOrder, refunds: list[Refund], moved: dict[tuple[str, str], int]
) -> list[str]:
    problems: list[str] = []
    live = [r for r in refunds if r.status != "failed"]
    if sum(r.amount_minor for r in live) != order.refunded_minor:
        problems.append(
            f"order {order.id} records {order.refunded_minor} refunded but its refunds sum to "
            f"{sum(r.amount_minor for r in live)}"
        )
    for refund in refunds:
        taken = moved.get((TransferCode.REFUND, refund_key(refund.id)), 0)
        given_back = moved.get((TransferCode.REFUND_REVERSAL, refund_reversal_key(refund.id)), 0)
        expected_back = refund.credits_micros if refund.status == "failed" else 0
        if taken != refund.credits_micros or given_back != expected_back:
            problems.append(
                f"refund {refund.id} took {taken} and returned {given_back} micros; "
                f"expected {refund.credits_micros} and {expected_back}"
            )
    return problems
