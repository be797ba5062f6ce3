"""autotopup: saved payment methods with their consent, one auto top-up rule per workspace,
and one attempt row per automatic purchase

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-06

autotopup_attempts.in_flight_key is UNIQUE and set only while an attempt is unresolved: at most
one automatic purchase in flight per workspace, enforced by the database.
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

_str = sqlmodel.sql.sqltypes.AutoString
_time = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "autotopup_methods",
        sa.Column("id", _str(length=40), nullable=False),
        sa.Column("customer_id", _str(length=40), nullable=False),
        sa.Column("provider", _str(length=16), nullable=False),
        sa.Column("customer_ref", _str(length=255), nullable=False),
        sa.Column("setup_session_id", _str(length=255), nullable=True),
        sa.Column("setup_url", _str(length=2000), nullable=True),
        sa.Column("method_ref", _str(length=255), nullable=True),
        sa.Column("brand", _str(length=32), nullable=False),
        sa.Column("last4", _str(length=4), nullable=False),
        sa.Column("exp_month", sa.Integer(), nullable=True),
        sa.Column("exp_year", sa.Integer(), nullable=True),
        sa.Column("status", _str(length=16), nullable=False),
        sa.Column("consent_text", sa.Text(), nullable=False),
        sa.Column("consent_terms_version", _str(length=40), nullable=False),
        sa.Column("consent_at", _time(), nullable=False),
        sa.Column("created_by_user_id", sa.Integer(), nullable=True),
        sa.Column("created_by_label", _str(length=200), nullable=False),
        sa.Column("created_at", _time(), nullable=False),
        sa.Column("activated_at", _time(), nullable=True),
        sa.Column("removed_at", _time(), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'active', 'removed')", name="ck_autotopup_methods_status"
        ),
        sa.ForeignKeyConstraint(
            ["created_by_user_id"],
            ["users.id"],
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("provider", "method_ref", name="uq_autotopup_methods_ref"),
        sa.UniqueConstraint("provider", "setup_session_id", name="uq_autotopup_methods_setup"),
    )
    with op.batch_alter_table("autotopup_methods", schema=None) as batch_op:
        batch_op.create_index(
            "ix_autotopup_methods_customer", ["customer_id", "status"], unique=False
        )

    op.create_table(
        "autotopup_attempts",
        sa.Column("id", _str(length=40), nullable=False),
        sa.Column("customer_id", _str(length=40), nullable=False),
        sa.Column("in_flight_key", _str(length=40), nullable=True),
        sa.Column("order_id", _str(length=40), nullable=False),
        sa.Column("method_id", _str(length=40), nullable=False),
        sa.Column("provider", _str(length=16), nullable=False),
        sa.Column("status", _str(length=16), nullable=False),
        sa.Column("trigger", _str(length=16), nullable=False),
        sa.Column("available_micros", sa.BigInteger(), nullable=False),
        sa.Column("credits_micros", sa.BigInteger(), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", _str(length=3), nullable=False),
        sa.Column("provider_payment_id", _str(length=255), nullable=True),
        sa.Column("failure_code", _str(length=64), nullable=False),
        sa.Column("failure_message", _str(length=500), nullable=False),
        sa.Column("created_at", _time(), nullable=False),
        sa.Column("resolved_at", _time(), nullable=True),
        sa.CheckConstraint(
            "status IN ('charging', 'succeeded', 'failed', 'requires_action')",
            name="ck_autotopup_attempts_status",
        ),
        sa.CheckConstraint(
            "credits_micros > 0 AND amount_minor > 0", name="ck_autotopup_attempts_amounts"
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
        ),
        sa.ForeignKeyConstraint(
            ["method_id"],
            ["autotopup_methods.id"],
        ),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["payment_orders.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("in_flight_key", name="uq_autotopup_attempts_in_flight"),
        sa.UniqueConstraint("order_id", name="uq_autotopup_attempts_order"),
    )
    with op.batch_alter_table("autotopup_attempts", schema=None) as batch_op:
        batch_op.create_index(
            "ix_autotopup_attempts_customer_created", ["customer_id", "created_at"], unique=False
        )

    op.create_table(
        "autotopup_rules",
        sa.Column("customer_id", _str(length=40), nullable=False),
        sa.Column("status", _str(length=16), nullable=False),
        sa.Column("threshold_micros", sa.BigInteger(), nullable=False),
        sa.Column("package_id", _str(length=40), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("monthly_cap_micros", sa.BigInteger(), nullable=True),
        sa.Column("daily_cap_micros", sa.BigInteger(), nullable=True),
        sa.Column("cooldown_s", sa.Integer(), nullable=False),
        sa.Column("method_id", _str(length=40), nullable=True),
        sa.Column("consecutive_failures", sa.Integer(), nullable=False),
        sa.Column("in_flight_attempt_id", _str(length=40), nullable=True),
        sa.Column("last_attempt_at", _time(), nullable=True),
        sa.Column("paused_reason", _str(length=500), nullable=False),
        sa.Column("created_at", _time(), nullable=False),
        sa.Column("updated_at", _time(), nullable=False),
        sa.CheckConstraint(
            "status IN ('active', 'paused', 'disabled')", name="ck_autotopup_rules_status"
        ),
        sa.CheckConstraint(
            "threshold_micros > 0 AND quantity >= 1 AND cooldown_s >= 0 AND consecutive_failures >= 0 AND (monthly_cap_micros IS NULL OR monthly_cap_micros > 0) AND (daily_cap_micros IS NULL OR daily_cap_micros > 0)",
            name="ck_autotopup_rules_amounts",
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
        ),
        sa.ForeignKeyConstraint(
            ["method_id"],
            ["autotopup_methods.id"],
        ),
        sa.ForeignKeyConstraint(
            ["package_id"],
            ["credit_packages.id"],
        ),
        sa.PrimaryKeyConstraint("customer_id"),
    )


def downgrade() -> None:
    op.drop_table("autotopup_rules")
    with op.batch_alter_table("autotopup_attempts", schema=None) as batch_op:
        batch_op.drop_index("ix_autotopup_attempts_customer_created")

    op.drop_table("autotopup_attempts")
    with op.batch_alter_table("autotopup_methods", schema=None) as batch_op:
        batch_op.drop_index("ix_autotopup_methods_customer")

    op.drop_table("autotopup_methods")
