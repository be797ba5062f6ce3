"""The books' health check: one list of broken invariants for every place that asks.

The admin home and `creditdash ledger verify` used to run different checks (the page only the
ledger's, the command also the payments'), so the page could say "verified" while the command
failed. Both call check() now. Run it in a read-only snapshot: it reads the whole ledger and
every order, and a write landing halfway would show up as a false violation.
"""

from __future__ import annotations

from sqlmodel import Session

from creditdash.billing import budgets, key_caps, ledger, metering
from creditdash.billing.payments.verify import verify_payments


def check(session: Session) -> list[str]:
    """Every violated invariant, ledger first (with what budgets and capped keys hold), then
    payments; empty when the books hold."""
    return (
        ledger.verify(session)
        + metering.usage_revenue_problems(session)
        + budgets.open_budget_hold_problems(session)
        + key_caps.problems(session)
        + verify_payments(session)
    )
