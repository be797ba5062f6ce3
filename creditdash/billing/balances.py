"""Customers with their balances, for lists: a bounded number of queries however many rows.

customers.customer_balance() is right for one customer (it checks the customer exists and reads
its account), but calling it per row turned the admin home into one query per customer, twice
over. Here the customers come from the same search as customers.list_customers() and all their
ledger accounts from one more query.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlmodel import Session, col

from creditdash.accounts import customers
from creditdash.accounts.models import Customer
from creditdash.billing.models import LedgerAccount


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
