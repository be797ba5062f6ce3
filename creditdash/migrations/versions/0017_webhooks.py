"""webhooks: endpoints, one delivery per (endpoint, event), and each HTTP attempt

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06

The integrator re-chains this after 0015/0016; it only adds tables.
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

_str = sqlmodel.sql.sqltypes.AutoString
_time = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "webhook_endpoints",
        sa.Column("id", _str(length=40), nullable=False),
        sa.Column("customer_id", _str(length=40), nullable=False),
        sa.Column("url", _str(length=2000), nullable=False),
        sa.Column("description", _str(length=200), nullable=False),
        sa.Column("secret", sa.Text(), nullable=False),
        sa.Column("event_types_json", sa.Text(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("disabled_reason", _str(length=300), nullable=False),
        sa.Column("consecutive_failures", sa.Integer(), nullable=False),
        sa.Column("created_at", _time(), nullable=False),
        sa.Column("created_by_user_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"]),
        sa.ForeignKeyConstraint(["created_by_user_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("webhook_endpoints") as batch:
        batch.create_index("ix_webhook_endpoints_customer_id", ["customer_id"], unique=False)
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", _str(length=40), nullable=False),
        sa.Column("endpoint_id", _str(length=40), nullable=False),
        sa.Column("event_id", _str(length=40), nullable=False),
        sa.Column("status", _str(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", _time(), nullable=False),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", _str(length=500), nullable=False),
        sa.Column("last_attempt_at", _time(), nullable=True),
        sa.Column("delivered_at", _time(), nullable=True),
        sa.Column("created_at", _time(), nullable=False),
        sa.ForeignKeyConstraint(["endpoint_id"], ["webhook_endpoints.id"]),
        sa.ForeignKeyConstraint(["event_id"], ["events.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("endpoint_id", "event_id", name="uq_webhook_deliveries_endpoint_event"),
    )
    with op.batch_alter_table("webhook_deliveries") as batch:
        batch.create_index("ix_webhook_deliveries_endpoint_id", ["endpoint_id"], unique=False)
        batch.create_index("ix_webhook_deliveries_due", ["status", "next_attempt_at"], unique=False)
    op.create_table(
        "webhook_attempts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("delivery_id", _str(length=40), nullable=False),
        sa.Column("at", _time(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", _str(length=500), nullable=False),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["delivery_id"], ["webhook_deliveries.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("webhook_attempts") as batch:
        batch.create_index("ix_webhook_attempts_delivery_id", ["delivery_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("webhook_attempts") as batch:
        batch.drop_index("ix_webhook_attempts_delivery_id")
    op.drop_table("webhook_attempts")
    with op.batch_alter_table("webhook_deliveries") as batch:
        batch.drop_index("ix_webhook_deliveries_due")
        batch.drop_index("ix_webhook_deliveries_endpoint_id")
    op.drop_table("webhook_deliveries")
    with op.batch_alter_table("webhook_endpoints") as batch:
        batch.drop_index("ix_webhook_endpoints_customer_id")
    op.drop_table("webhook_endpoints")
