"""Customers' balances: one customer's (balance, held, available), its credit limit, and the
balances of a whole list of customers.

customer_balance() is right for one customer (it checks the customer exists and reads its
account), but calling it per row turned the admin home into one query per customer, twice over.
customers_with_balances() takes the customers from the same search as
customers.list_customers() and all their ledger accounts from one more query.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlmodel import Session, col

from creditdash.accounts import customers
from creditdash.accounts.models import Customer
from creditdash.billing import ledger
from creditdash.billing.models import LedgerAccount
from creditdash.core.audit import Actor, record
from creditdash.core.errors import ValidationFailed
from creditdash.core.money import format_credits


@dataclass(frozen=True)
class CustomerBalance:
    posted_micros: int
    held_micros: int
    available_micros: int

    def as_json(self) -> dict[str, str]:
        return {
            "balance": format_credits(self.posted_micros),
            "held": format_credits(self.held_micros),
            "available": format_credits(self.available_micros),
        }


def customer_balance(session: Session, customer_id: str) -> CustomerBalance:
    customers.get_customer(session, customer_id)
    balance = ledger.get_balance(session, ledger.customer_account_id(session, customer_id))
    return CustomerBalance(
        posted_micros=balance.posted_micros,
        held_micros=balance.held_micros,
        available_micros=balance.available_micros,
    )


def set_credit_limit(
    session: Session, *, customer_id: str, credit_limit_micros: int, actor: Actor, reason: str
) -> None:
    """How far below zero the workspace may spend (0: prepaid only); audited."""
    reason = (reason or "").strip()
    if not reason:
        raise ValidationFailed("a reason is required")
    account_id = ledger.customer_account_id(session, customer_id)
    before = ledger.get_balance(session, account_id).credit_limit_micros
    ledger.set_credit_limit(session, account_id=account_id, credit_limit_micros=credit_limit_micros)
    record(
        session,
        actor=actor,
        action="customer.credit_limit",
        target_type="customer",
        target_id=customer_id,
        before={"credit_limit": format_credits(before)},
        after={"credit_limit": format_credits(credit_limit_micros)},
        reason=reason,
    )


@dataclass(frozen=True)
class CustomerWithBalance:
    customer: Customer
    posted_micros: int
    held_micros: int
    credit_limit_micros: int

    @property
    def available_micros(self) -> int:
        return self.posted_micros - self.held_micros


def customers_with_balances(
    session: Session, *, search: str = "", limit: int = 100
) -> list[CustomerWithBalance]:
    """The customers list_customers() finds (same search, order and limit), each with its
    posted, held and credit limit; a customer without a ledger account shows zeros."""
    found = customers.list_customers(session, search=search, limit=limit)
    if not found:
        return []
    a = LedgerAccount
    rows = session.execute(
        select(
            col(a.customer_id),
            col(a.credits_posted) - col(a.debits_posted),
            col(a.debits_pending),
            col(a.credit_limit_micros),
        ).where(col(a.customer_id).in_([c.id for c in found]))
    ).all()
    by_customer = {row[0]: (int(row[1]), int(row[2]), int(row[3])) for row in rows}
    return [CustomerWithBalance(c, *by_customer.get(c.id, (0, 0, 0))) for c in found]
