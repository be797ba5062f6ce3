"""roles and invites: five member roles, and invitations by email

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06

memberships.role admits owner/admin/developer/billing/viewer; the old 'member' becomes
'developer' (keys and usage, what a member could do before). invites: one row per invitation,
with only the SHA-256 of its single-use token and a partial unique index that allows one open
(neither accepted nor revoked) invite per workspace and address.
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

_str = sqlmodel.sql.sqltypes.AutoString
_time = sqlmodel.sql.sqltypes.UTCDateTime

_OLD_ROLES = "role IN ('owner', 'admin', 'member')"
_NEW_ROLES = "role IN ('owner', 'admin', 'developer', 'billing', 'viewer')"
_OPEN = sa.text("accepted_at IS NULL AND revoked_at IS NULL")


def upgrade() -> None:
    # The CHECK goes first, so that the rows can take their new values in between.
    with op.batch_alter_table("memberships") as batch:
        batch.drop_constraint("ck_memberships_role", type_="check")
    op.execute("UPDATE memberships SET role = 'developer' WHERE role = 'member'")
    with op.batch_alter_table("memberships") as batch:
        batch.create_check_constraint("ck_memberships_role", _NEW_ROLES)
    op.create_table(
        "invites",
        sa.Column("id", _str(length=40), nullable=False),
        sa.Column("customer_id", _str(length=40), nullable=False),
        sa.Column("email", _str(length=320), nullable=False),
        sa.Column("role", _str(length=16), nullable=False),
        sa.Column("token_hash", _str(length=64), nullable=False),
        sa.Column("invited_by_user_id", sa.Integer(), nullable=True),
        sa.Column("created_at", _time(), nullable=False),
        sa.Column("expires_at", _time(), nullable=False),
        sa.Column("accepted_at", _time(), nullable=True),
        sa.Column("accepted_by_user_id", sa.Integer(), nullable=True),
        sa.Column("revoked_at", _time(), nullable=True),
        sa.CheckConstraint(_NEW_ROLES, name="ck_invites_role"),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"]),
        sa.ForeignKeyConstraint(["invited_by_user_id"], ["users.id"]),
        sa.ForeignKeyConstraint(["accepted_by_user_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
    )
    with op.batch_alter_table("invites") as batch:
        batch.create_index("ix_invites_customer_id", ["customer_id"], unique=False)
        batch.create_index(
            "uq_invites_open",
            ["customer_id", "email"],
            unique=True,
            sqlite_where=_OPEN,
            postgresql_where=_OPEN,
        )


def downgrade() -> None:
    with op.batch_alter_table("invites") as batch:
        batch.drop_index("uq_invites_open")
        batch.drop_index("ix_invites_customer_id")
    op.drop_table("invites")
    with op.batch_alter_table("memberships") as batch:
        batch.drop_constraint("ck_memberships_role", type_="check")
    op.execute(
        "UPDATE memberships SET role = 'member' WHERE role IN ('developer', 'billing', 'viewer')"
    )
    with op.batch_alter_table("memberships") as batch:
        batch.create_check_constraint("ck_memberships_role", _OLD_ROLES)
