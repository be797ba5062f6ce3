"""budgets.spent_micros becomes the running total of every budget: recount the current month

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-06

Until now a soft budget's row kept the spend of the moment it was set (its status summed the
month's usage records instead), and a hard budget's row counted only the holds placed while it
was hard. From here every usage record adds its price to its workspace's row
(billing/budget_holds.py), so each row starts from the month's usage records as they are.
Data only: the downgrade leaves the recounted figures, which the older code also reads.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None

_usage = sa.table(
    "usage_records",
    sa.column("customer_id", sa.String()),
    sa.column("price_micros", sa.BigInteger()),
    sa.column("created_at", sqlmodel.sql.sqltypes.UTCDateTime()),
)
_budgets = sa.table(
    "budgets",
    sa.column("customer_id", sa.String()),
    sa.column("period", sa.String()),
    sa.column("spent_micros", sa.BigInteger()),
)


def upgrade() -> None:
    now = datetime.now(UTC)
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    month = (
        sa.select(sa.func.coalesce(sa.func.sum(_usage.c.price_micros), 0))
        .where(
            _usage.c.customer_id == _budgets.c.customer_id,
            _usage.c.created_at >= start,
        )
        .scalar_subquery()
    )
    op.execute(_budgets.update().values(spent_micros=month, period=now.strftime("%Y-%m")))


def downgrade() -> None:
    pass
