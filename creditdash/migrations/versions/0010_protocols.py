"""protocols: Anthropic provider kinds, Responses pass-through, prompt-cache writes

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06

providers.kind admits 'anthropic' and 'anthropic-sandbox' (and grows to 24 characters);
providers.serves_responses marks an OpenAI-kind upstream with its own /v1/responses. Prices,
route costs and price schedules gain a nullable cache-write price (NULL: the input price), and
usage records the tokens written to a prompt cache and the API the upstream was sent.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_OLD_KINDS = "kind IN ('openai', 'sandbox')"
_NEW_KINDS = "kind IN ('openai', 'anthropic', 'sandbox', 'anthropic-sandbox')"
_PRICE_TABLES = (
    ("public_models", "cache_write_price_micros_per_mtok", "ck_public_models_cache_write"),
    ("routes", "cache_write_cost_micros_per_mtok", "ck_routes_cache_write"),
    ("price_schedules", "cache_write_price_micros_per_mtok", "ck_price_schedules_cache_write"),
)


def upgrade() -> None:
    with op.batch_alter_table("providers") as batch:
        batch.drop_constraint("ck_providers_kind", type_="check")
        batch.alter_column(
            "kind", existing_type=sa.String(16), type_=sa.String(24), existing_nullable=False
        )
        batch.create_check_constraint("ck_providers_kind", _NEW_KINDS)
        batch.add_column(
            sa.Column("serves_responses", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
    for table, column, check in _PRICE_TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column(column, sa.BigInteger(), nullable=True))
            batch.create_check_constraint(check, f"{column} IS NULL OR {column} >= 0")
    with op.batch_alter_table("usage_records") as batch:
        batch.add_column(
            sa.Column("cache_write_tokens", sa.BigInteger(), server_default="0", nullable=False)
        )
        batch.add_column(
            sa.Column("upstream_endpoint", sa.String(40), server_default="", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("usage_records") as batch:
        batch.drop_column("upstream_endpoint")
        batch.drop_column("cache_write_tokens")
    for table, column, check in _PRICE_TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(check, type_="check")
            batch.drop_column(column)
    anthropic = op.get_bind().execute(
        sa.text("SELECT count(*) FROM providers WHERE kind IN ('anthropic', 'anthropic-sandbox')")
    )
    if anthropic.scalar():
        raise RuntimeError("remove the Anthropic-kind providers before downgrading past 0010")
    with op.batch_alter_table("providers") as batch:
        batch.drop_column("serves_responses")
        batch.drop_constraint("ck_providers_kind", type_="check")
        batch.alter_column(
            "kind", existing_type=sa.String(24), type_=sa.String(16), existing_nullable=False
        )
        batch.create_check_constraint("ck_providers_kind", _OLD_KINDS)
