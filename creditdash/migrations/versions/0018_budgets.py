"""budgets: a monthly budget per workspace (hard or soft), its alert thresholds, a low-balance
alert, and the budget share of every open hold

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-06

budgets: one row per workspace, with the spend of the current UTC month and what its open holds
keep reserved against the budget. budget_holds: one row per open hold counted in held_micros,
deleted when the hold resolves.
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

_str = sqlmodel.sql.sqltypes.AutoString
_time = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "budgets",
        sa.Column("customer_id", _str(length=40), nullable=False),
        sa.Column("monthly_budget_micros", sa.BigInteger(), nullable=True),
        sa.Column("hard", sa.Boolean(), nullable=False),
        sa.Column("thresholds_json", _str(length=200), nullable=False),
        sa.Column("low_balance_micros", sa.BigInteger(), nullable=True),
        sa.Column("low_balance_armed", sa.Boolean(), nullable=False),
        sa.Column("period", _str(length=7), nullable=False),
        sa.Column("spent_micros", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("held_micros", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("updated_at", _time(), nullable=False),
        sa.CheckConstraint("spent_micros >= 0 AND held_micros >= 0", name="ck_budgets_nonnegative"),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"]),
        sa.PrimaryKeyConstraint("customer_id"),
    )
    op.create_table(
        "budget_holds",
        sa.Column("hold_id", sa.Integer(), nullable=False),
        sa.Column("customer_id", _str(length=40), nullable=False),
        sa.Column("amount_micros", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"]),
        sa.ForeignKeyConstraint(["hold_id"], ["transfers.id"]),
        sa.PrimaryKeyConstraint("hold_id"),
    )
    with op.batch_alter_table("budget_holds") as batch:
        batch.create_index("ix_budget_holds_customer_id", ["customer_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("budget_holds") as batch:
        batch.drop_index("ix_budget_holds_customer_id")
    op.drop_table("budget_holds")
    op.drop_table("budgets")
