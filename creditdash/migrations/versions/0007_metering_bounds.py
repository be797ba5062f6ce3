"""metering bounds: disputed output tokens, media limits per model

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("usage_records") as batch:
        batch.add_column(
            sa.Column(
                "disputed_completion_tokens", sa.BigInteger(), server_default="0", nullable=False
            )
        )
    with op.batch_alter_table("public_models") as batch:
        batch.add_column(
            sa.Column("max_media_parts", sa.Integer(), server_default="16", nullable=False)
        )
        batch.add_column(
            sa.Column("media_part_tokens", sa.Integer(), server_default="3000", nullable=False)
        )
        batch.create_check_constraint(
            "ck_public_models_media", "max_media_parts >= 0 AND media_part_tokens >= 0"
        )


def downgrade() -> None:
    with op.batch_alter_table("public_models") as batch:
        batch.drop_constraint("ck_public_models_media", type_="check")
        batch.drop_column("media_part_tokens")
        batch.drop_column("max_media_parts")
    with op.batch_alter_table("usage_records") as batch:
        batch.drop_column("disputed_completion_tokens")
