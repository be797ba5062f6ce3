"""route output cap parameter: which field a route's upstream takes the output cap in

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06

routes.output_cap_param is 'auto' (chat: the name the client used, else max_tokens),
'max_tokens' or 'max_completion_tokens' (reasoning models refuse max_tokens).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_CHECK = "output_cap_param IN ('auto', 'max_tokens', 'max_completion_tokens')"


def upgrade() -> None:
    with op.batch_alter_table("routes") as batch:
        batch.add_column(
            sa.Column("output_cap_param", sa.String(24), server_default="auto", nullable=False)
        )
        batch.create_check_constraint("ck_routes_output_cap_param", _CHECK)


def downgrade() -> None:
    with op.batch_alter_table("routes") as batch:
        batch.drop_constraint("ck_routes_output_cap_param", type_="check")
        batch.drop_column("output_cap_param")
