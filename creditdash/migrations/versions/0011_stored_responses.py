"""stored responses: Responses-API answers kept for GET and previous_response_id

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06

One row per stored response, owned by a customer: the response object as the client got it
and the conversation items a later request continues from.
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stored_responses",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("customer_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("request_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("response_json", sa.Text(), nullable=False),
        sa.Column("conversation_json", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("stored_responses") as batch:
        batch.create_index(
            "ix_stored_responses_customer_created", ["customer_id", "created_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("stored_responses") as batch:
        batch.drop_index("ix_stored_responses_customer_created")
    op.drop_table("stored_responses")
