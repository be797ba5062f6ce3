"""outbox: events and the email outbox, written in the transaction of what caused them

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06

events: one row per thing a workspace should hear about, with a unique dedupe key (threshold
alerts once per period) and two marks the notify layer sets when it made the event's emails and
webhook deliveries. outbox_mail: one email to one address, kept until sent.
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

_str = sqlmodel.sql.sqltypes.AutoString
_time = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", _str(length=40), nullable=False),
        sa.Column("customer_id", _str(length=40), nullable=True),
        sa.Column("type", _str(length=64), nullable=False),
        sa.Column("data_json", sa.Text(), nullable=False),
        sa.Column("created_at", _time(), nullable=False),
        sa.Column("dedupe_key", _str(length=200), nullable=True),
        sa.Column("mailed_at", _time(), nullable=True),
        sa.Column("hooked_at", _time(), nullable=True),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("dedupe_key"),
    )
    with op.batch_alter_table("events") as batch:
        batch.create_index("ix_events_customer_id", ["customer_id"], unique=False)
        batch.create_index("ix_events_unmailed", ["mailed_at"], unique=False)
        batch.create_index("ix_events_unhooked", ["hooked_at"], unique=False)
    op.create_table(
        "outbox_mail",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("customer_id", _str(length=40), nullable=True),
        sa.Column("event_id", _str(length=40), nullable=True),
        sa.Column("kind", _str(length=64), nullable=False),
        sa.Column("to_addr", _str(length=320), nullable=False),
        sa.Column("subject", _str(length=300), nullable=False),
        sa.Column("body_text", sa.Text(), nullable=False),
        sa.Column("attachment", _str(length=120), nullable=True),
        sa.Column("status", _str(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", _time(), nullable=False),
        sa.Column("last_error", _str(length=500), nullable=False),
        sa.Column("created_at", _time(), nullable=False),
        sa.Column("sent_at", _time(), nullable=True),
        sa.Column("dedupe_key", _str(length=200), nullable=True),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"]),
        sa.ForeignKeyConstraint(["event_id"], ["events.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("dedupe_key"),
    )
    with op.batch_alter_table("outbox_mail") as batch:
        batch.create_index("ix_outbox_mail_due", ["status", "next_attempt_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("outbox_mail") as batch:
        batch.drop_index("ix_outbox_mail_due")
    op.drop_table("outbox_mail")
    with op.batch_alter_table("events") as batch:
        batch.drop_index("ix_events_unhooked")
        batch.drop_index("ix_events_unmailed")
        batch.drop_index("ix_events_customer_id")
    op.drop_table("events")
