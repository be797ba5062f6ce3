"""gateway catalog, usage records, per-key limits

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "providers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("base_url", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
        sa.Column("api_key_encrypted", sa.Text(), nullable=False),
        sa.Column("api_key_last4", sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
        sa.Column("timeout_s", sa.Integer(), nullable=False),
        sa.Column("extra_headers_json", sa.Text(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("updated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.CheckConstraint("kind IN ('openai', 'sandbox')", name="ck_providers_kind"),
        sa.CheckConstraint("timeout_s > 0 AND timeout_s <= 3600", name="ck_providers_timeout"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "public_models",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column(
            "input_price_micros_per_mtok", sa.BigInteger(), server_default="0", nullable=False
        ),
        sa.Column(
            "output_price_micros_per_mtok", sa.BigInteger(), server_default="0", nullable=False
        ),
        sa.Column(
            "cached_input_price_micros_per_mtok",
            sa.BigInteger(),
            server_default="0",
            nullable=False,
        ),
        sa.Column("request_fee_micros", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("max_output_tokens", sa.Integer(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("updated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "input_price_micros_per_mtok >= 0 AND output_price_micros_per_mtok >= 0 AND cached_input_price_micros_per_mtok >= 0 AND request_fee_micros >= 0",
            name="ck_public_models_prices",
        ),
        sa.CheckConstraint("max_output_tokens > 0", name="ck_public_models_max_output"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "routes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("provider_id", sa.Integer(), nullable=False),
        sa.Column("upstream_model", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("weight", sa.Integer(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column(
            "input_cost_micros_per_mtok", sa.BigInteger(), server_default="0", nullable=False
        ),
        sa.Column(
            "output_cost_micros_per_mtok", sa.BigInteger(), server_default="0", nullable=False
        ),
        sa.Column(
            "cached_input_cost_micros_per_mtok", sa.BigInteger(), server_default="0", nullable=False
        ),
        sa.Column("request_cost_micros", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "input_cost_micros_per_mtok >= 0 AND output_cost_micros_per_mtok >= 0 AND cached_input_cost_micros_per_mtok >= 0 AND request_cost_micros >= 0",
            name="ck_routes_costs",
        ),
        sa.CheckConstraint("weight >= 0", name="ck_routes_weight"),
        sa.ForeignKeyConstraint(
            ["model_id"],
            ["public_models.id"],
        ),
        sa.ForeignKeyConstraint(
            ["provider_id"],
            ["providers.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("model_id", "provider_id", "upstream_model", name="uq_routes_target"),
    )
    with op.batch_alter_table("routes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_routes_model_id"), ["model_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_routes_provider_id"), ["provider_id"], unique=False)

    op.create_table(
        "usage_records",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("customer_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("api_key_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("endpoint", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("public_model", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
        sa.Column("provider", sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
        sa.Column("upstream_model", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("stream", sa.Boolean(), nullable=False),
        sa.Column("http_status", sa.Integer(), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("prompt_tokens", sa.BigInteger(), nullable=False),
        sa.Column("completion_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cached_tokens", sa.BigInteger(), nullable=False),
        sa.Column("reasoning_tokens", sa.BigInteger(), nullable=False),
        sa.Column("usage_source", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("upstream_cost_micros", sa.BigInteger(), nullable=False),
        sa.Column("price_micros", sa.BigInteger(), nullable=False),
        sa.Column("unbilled_micros", sa.BigInteger(), nullable=False),
        sa.Column("balance_after_micros", sa.BigInteger(), nullable=False),
        sa.Column("latency_ms", sa.Integer(), nullable=False),
        sa.Column("ttfb_ms", sa.Integer(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("attempts_json", sa.Text(), nullable=False),
        sa.Column("hold_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "usage_source IN ('provider', 'estimated', 'none')", name="ck_usage_records_source"
        ),
        sa.ForeignKeyConstraint(
            ["api_key_id"],
            ["api_keys.id"],
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
        ),
        sa.ForeignKeyConstraint(
            ["hold_id"],
            ["transfers.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("usage_records", schema=None) as batch_op:
        batch_op.create_index(
            "ix_usage_records_customer_created", ["customer_id", "created_at"], unique=False
        )
        batch_op.create_index(
            "ix_usage_records_key_created", ["api_key_id", "created_at"], unique=False
        )

    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("rpm_limit", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("concurrency_limit", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("monthly_spend_cap_micros", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("allowed_models_json", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_column("allowed_models_json")
        batch_op.drop_column("monthly_spend_cap_micros")
        batch_op.drop_column("concurrency_limit")
        batch_op.drop_column("rpm_limit")

    with op.batch_alter_table("usage_records", schema=None) as batch_op:
        batch_op.drop_index("ix_usage_records_key_created")
        batch_op.drop_index("ix_usage_records_customer_created")

    op.drop_table("usage_records")
    with op.batch_alter_table("routes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_routes_provider_id"))
        batch_op.drop_index(batch_op.f("ix_routes_model_id"))

    op.drop_table("routes")
    op.drop_table("public_models")
    op.drop_table("providers")
