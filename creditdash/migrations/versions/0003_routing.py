"""routing policy, margin acknowledgement, workspace model allow-list

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("allowed_models_json", sa.Text(), nullable=True))

    with op.batch_alter_table("public_models", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "fallback_on",
                sqlmodel.sql.sqltypes.AutoString(length=80),
                nullable=False,
                server_default="connect_error,timeout,429,5xx",
            )
        )
        batch_op.add_column(
            sa.Column("max_attempts", sa.Integer(), nullable=False, server_default="3")
        )
        batch_op.add_column(sa.Column("attempt_timeout_s", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column("cooldown_failures", sa.Integer(), nullable=False, server_default="3")
        )
        batch_op.add_column(
            sa.Column("cooldown_s", sa.Integer(), nullable=False, server_default="30")
        )

    with op.batch_alter_table("routes", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "negative_margin_acknowledged_at",
                sqlmodel.sql.sqltypes.UTCDateTime(),
                nullable=True,
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("routes", schema=None) as batch_op:
        batch_op.drop_column("negative_margin_acknowledged_at")

    with op.batch_alter_table("public_models", schema=None) as batch_op:
        batch_op.drop_column("cooldown_s")
        batch_op.drop_column("cooldown_failures")
        batch_op.drop_column("attempt_timeout_s")
        batch_op.drop_column("max_attempts")
        batch_op.drop_column("fallback_on")

    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.drop_column("allowed_models_json")
