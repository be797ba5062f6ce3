"""Usage revenue in 16 shards; API keys' spend caps kept in the database

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-06

Usage revenue was one account that every metered request credited, so on PostgreSQL all
traffic queued on its row. It is now 16 accounts ("platform:usage_revenue" stays shard 0), and a
customer's charges credit the shard of its own account id (billing/ledger.py). The platform
accounts used to be opened on first use; here they are all opened once, so several gateway
processes starting together never race to open one.

key_spend and key_holds: an API key's monthly spend and what its open capped holds keep back,
so that its spend cap holds across gateway processes (billing/key_caps.py). Rows are made as
capped keys first hold; nothing to fill in here.

Existing charges stay in shard 0, so they move to the shard of their customer: one transfer per
shard with history, from shard 0, for exactly what that shard's customers' usage records
charged. Downgrade moves them back and closes the empty shards.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None

SHARDS = 16
BASE = "platform:usage_revenue"
OTHERS = (
    "platform:payments_clearing",
    "platform:promotions",
    "platform:refunds",
    "platform:adjustments",
    "platform:disputes",
)


def _code(shard: int) -> str:
    return BASE if shard == 0 else f"{BASE}:{shard:02d}"


def _open(bind: sa.engine.Connection, code: str, now: datetime) -> int:
    found = bind.execute(sa.text("SELECT id FROM ledger_accounts WHERE code = :c"), {"c": code})
    account_id = found.scalar()
    if account_id is None:
        bind.execute(
            sa.text(
                "INSERT INTO ledger_accounts (code, kind, enforce_limit, credit_limit_micros, "
                "credits_posted, debits_posted, credits_pending, debits_pending, created_at) "
                "VALUES (:c, 'platform', :f, 0, 0, 0, 0, 0, :now)"
            ),
            {"c": code, "f": False, "now": now},
        )
        account_id = bind.execute(
            sa.text("SELECT id FROM ledger_accounts WHERE code = :c"), {"c": code}
        ).scalar_one()
    return int(account_id)


def _move(bind: sa.engine.Connection, debit: int, credit: int, amount: int, key: str) -> None:
    now = datetime.now(UTC)
    bind.execute(
        sa.text(
            "INSERT INTO transfers (idempotency_key, kind, debit_account_id, credit_account_id, "
            "amount_micros, code, reference, memo, created_at) "
            "VALUES (:k, 'single', :d, :c, :a, 'revenue_shard', '', :m, :now)"
        ),
        {"k": key, "d": debit, "c": credit, "a": amount, "m": "usage revenue resharded",
         "now": now},
    )  # fmt: skip
    for account, column in ((debit, "debits_posted"), (credit, "credits_posted")):
        bind.execute(
            sa.text(f"UPDATE ledger_accounts SET {column} = {column} + :a WHERE id = :i"),  # noqa: S608
            {"a": amount, "i": account},
        )


def _charged_by_shard(bind: sa.engine.Connection) -> dict[int, int]:
    rows = bind.execute(
        sa.text(
            "SELECT a.id % 16, SUM(u.price_micros) FROM usage_records u "
            "JOIN ledger_accounts a ON a.customer_id = u.customer_id GROUP BY a.id % 16"
        )
    )
    return {int(shard): int(total or 0) for shard, total in rows}


_str = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    op.create_table(
        "key_spend",
        sa.Column("api_key_id", _str(length=40), nullable=False),
        sa.Column("period", _str(length=7), nullable=False),
        sa.Column("spent_micros", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("held_micros", sa.BigInteger(), server_default="0", nullable=False),
        sa.CheckConstraint(
            "spent_micros >= 0 AND held_micros >= 0", name="ck_key_spend_nonnegative"
        ),
        sa.ForeignKeyConstraint(["api_key_id"], ["api_keys.id"]),
        sa.PrimaryKeyConstraint("api_key_id"),
    )
    op.create_table(
        "key_holds",
        sa.Column("hold_id", sa.Integer(), nullable=False),
        sa.Column("api_key_id", _str(length=40), nullable=False),
        sa.Column("amount_micros", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["api_key_id"], ["api_keys.id"]),
        sa.ForeignKeyConstraint(["hold_id"], ["transfers.id"]),
        sa.PrimaryKeyConstraint("hold_id"),
    )
    with op.batch_alter_table("key_holds") as batch:
        batch.create_index("ix_key_holds_api_key_id", ["api_key_id"], unique=False)
    bind = op.get_bind()
    now = datetime.now(UTC)
    for code in OTHERS:
        _open(bind, code, now)
    ids = [_open(bind, _code(shard), now) for shard in range(SHARDS)]
    for shard, amount in sorted(_charged_by_shard(bind).items()):
        if shard and amount > 0:
            _move(
                bind, ids[0], ids[shard], amount, f"migration:0023:shard:{shard}:{now.isoformat()}"
            )


def downgrade() -> None:
    with op.batch_alter_table("key_holds") as batch:
        batch.drop_index("ix_key_holds_api_key_id")
    op.drop_table("key_holds")
    op.drop_table("key_spend")
    bind = op.get_bind()
    now = datetime.now(UTC)
    ids = [_open(bind, _code(shard), now) for shard in range(SHARDS)]
    for shard in range(1, SHARDS):
        row = bind.execute(
            sa.text(
                "SELECT credits_posted - debits_posted, credits_pending, debits_pending "
                "FROM ledger_accounts WHERE id = :i"
            ),
            {"i": ids[shard]},
        ).one()
        net, pending_in, pending_out = (int(value) for value in row)
        if pending_in or pending_out:
            raise RuntimeError(f"{_code(shard)} has open holds: settle them before downgrading")
        if net > 0:
            _move(
                bind, ids[shard], ids[0], net, f"migration:0023:unshard:{shard}:{now.isoformat()}"
            )
        used = bind.execute(
            sa.text(
                "SELECT COUNT(*) FROM transfers WHERE debit_account_id = :i "
                "OR credit_account_id = :i"
            ),
            {"i": ids[shard]},
        ).scalar_one()
        if not used:
            bind.execute(sa.text("DELETE FROM ledger_accounts WHERE id = :i"), {"i": ids[shard]})
