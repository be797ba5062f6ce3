"""Customers with their balances: the same rows and numbers as one customer_balance() call per
customer, in a number of queries that does not grow with the customers."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

from creditdash.accounts.customers import list_customers
from creditdash.billing import balances, ledger
from creditdash.core import db
from tests.factories import funded_customer


@contextmanager
def _counting(engine: Engine) -> Iterator[list[str]]:
    seen: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", count)


def _statements(engine: Engine) -> int:
    with db.session_scope(readonly=True) as session, _counting(engine) as seen:
        found = balances.customers_with_balances(session, search="", limit=100)
        assert found
    return len(seen)


def test_the_query_count_does_not_grow_with_the_customers(engine: Engine) -> None:
    for i in range(3):
        funded_customer(engine, credits_micros=1_000_000 * (i + 1))
    with_three = _statements(engine)
    for i in range(27):
        funded_customer(engine, credits_micros=1_000_000 * (i + 1))
    with_thirty = _statements(engine)
    assert with_three == with_thirty
    # The customers, then all their ledger accounts (SQLite adds its BEGIN to the count).
    assert with_thirty <= 3


def test_the_rows_match_one_balance_per_customer(engine: Engine) -> None:
    first = funded_customer(engine, credits_micros=5_000_000, name="Alpha")
    funded_customer(engine, credits_micros=7_000_000, name="Beta")
    with db.session_scope() as session:
        ledger.set_credit_limit(session, account_id=first.account_id, credit_limit_micros=2_000_000)
    with db.session_scope(readonly=True) as session:
        rows = balances.customers_with_balances(session, search="alpha")
        assert [r.customer.id for r in rows] == [
            c.id for c in list_customers(session, search="alpha")
        ]
        everyone = balances.customers_with_balances(session)
        assert [r.customer.id for r in everyone] == [c.id for c in list_customers(session)]
        for row in everyone:
            one = balances.customer_balance(session, row.customer.id)
            assert (row.posted_micros, row.held_micros, row.available_micros) == (
                one.posted_micros,
                one.held_micros,
                one.available_micros,
            )
    assert rows[0].customer.id == first.customer_id and rows[0].credit_limit_micros == 2_000_000
