"""Budget tables: one budget row per workspace, and the budget share of each open hold.

budgets.held_micros is the sum of budget_holds.amount_micros for the workspace: a hold placed
for a workspace with a hard budget also adds a budget_holds row in the same transaction, and
whatever resolves the hold (post, void, expire) deletes that row and moves its amount out of
held (into spent for what was posted). `ledger verify` checks the two agree.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, Column
from sqlmodel import Field, SQLModel

from creditdash.core.timeutil import utcnow

DEFAULT_THRESHOLDS = (50, 80, 100)


def _micros() -> Column:  # type: ignore[type-arg,unused-ignore]
    return Column(BigInteger, nullable=False, default=0, server_default="0")


class Budget(SQLModel, table=True):
    __tablename__ = "budgets"
    __table_args__ = (
        CheckConstraint("spent_micros >= 0 AND held_micros >= 0", name="ck_budgets_nonnegative"),
    )

    customer_id: str = Field(primary_key=True, foreign_key="customers.id", max_length=40)
    # NULL: no monthly budget (the row may still carry a low-balance alert).
    monthly_budget_micros: int | None = Field(default=None, sa_type=BigInteger)
    hard: bool = False
    # JSON list of percents of the budget that raise a budget.threshold event.
    thresholds_json: str = Field(default="[50, 80, 100]", max_length=200)
    # NULL: no low-balance alert.
    low_balance_micros: int | None = Field(default=None, sa_type=BigInteger)
    # True while the available balance is at or above low_balance_micros (the alert is armed).
    low_balance_armed: bool = True
    # The UTC calendar month ('YYYY-MM') spent_micros counts.
    period: str = Field(max_length=7)
    spent_micros: int = Field(sa_column=_micros())
    held_micros: int = Field(sa_column=_micros())
    updated_at: datetime = Field(default_factory=utcnow)


class BudgetHold(SQLModel, table=True):
    """The amount of one open hold counted in its workspace's budget held_micros."""

    __tablename__ = "budget_holds"

    hold_id: int = Field(primary_key=True, foreign_key="transfers.id")
    customer_id: str = Field(foreign_key="customers.id", max_length=40, index=True)
    amount_micros: int = Field(sa_type=BigInteger)


class KeySpend(SQLModel, table=True):
    """One API key's month: what it spent and what its open holds keep back, for its monthly
    spend cap (billing/key_caps.py). The cap itself stays on the key (api_keys)."""

    __tablename__ = "key_spend"
    __table_args__ = (
        CheckConstraint("spent_micros >= 0 AND held_micros >= 0", name="ck_key_spend_nonnegative"),
    )

    api_key_id: str = Field(primary_key=True, foreign_key="api_keys.id", max_length=40)
    # The UTC calendar month ('YYYY-MM') spent_micros counts.
    period: str = Field(max_length=7)
    spent_micros: int = Field(sa_column=_micros())
    held_micros: int = Field(sa_column=_micros())


class KeyHold(SQLModel, table=True):
    """The amount of one open hold counted in its key's key_spend.held_micros."""

    __tablename__ = "key_holds"

    hold_id: int = Field(primary_key=True, foreign_key="transfers.id")
    api_key_id: str = Field(foreign_key="api_keys.id", max_length=40, index=True)
    amount_micros: int = Field(sa_type=BigInteger)
