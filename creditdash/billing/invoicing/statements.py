"""Statements: a customer's ledger for a period as CSV, and their request log as CSV.

The statement lists every posted movement of the customer's credit account (top-ups, bonus,
usage, refunds, grants and corrections; holds are not movements until posted) between an
opening and a closing row, so opening + credits - debits = closing, exactly, in credits.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import and_, case, func, or_, select
from sqlmodel import Session, col

from creditdash.billing import ledger
from creditdash.billing.codes import TransferCode
from creditdash.billing.models import Transfer, UsageRecord
from creditdash.billing.usage import charged_micros
from creditdash.core.errors import ValidationFailed
from creditdash.core.money import format_credits

MAX_DAYS = 400
STATEMENT_HEADER = ("date", "type", "reference", "description", "amount", "balance_after")
REQUEST_LOG_HEADER = (
    "date",
    "request_id",
    "api_key_id",
    "model",
    "provider",
    "upstream_model",
    "stream",
    "status",
    "http_status",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "reasoning_tokens",
    "usage_source",
    "cost",
    "latency_ms",
    "attempts",
)
OPERATOR_COLUMNS = ("customer_id", "unbilled", "disputed_completion_tokens")
# The statement's row type for each transfer code (an unknown code is its own type).
_TYPES = {
    TransferCode.TOPUP: "topup",
    TransferCode.TOPUP_BONUS: "bonus",
    TransferCode.USAGE: "usage",
    TransferCode.USAGE_OVERAGE: "usage",
    TransferCode.REFUND: "refund",
    TransferCode.REFUND_REVERSAL: "refund_reversal",
    TransferCode.GRANT: "grant",
    TransferCode.DEBIT_ADJUSTMENT: "adjustment",
}
_MOVES = ("single", "post")


@dataclass(frozen=True)
class Period:
    start: datetime
    end: datetime  # exclusive: midnight after the last day

    @classmethod
    def of_days(cls, first: date, last: date) -> Period:
        """Both days included, in UTC."""
        if last < first:
            raise ValidationFailed("the period ends before it starts")
        if (last - first).days >= MAX_DAYS:
            raise ValidationFailed(f"a statement covers at most {MAX_DAYS} days")
        start = datetime.combine(first, time.min, tzinfo=UTC)
        return cls(start, datetime.combine(last + timedelta(days=1), time.min, tzinfo=UTC))


@dataclass(frozen=True)
class StatementRow:
    at: datetime
    type: str
    reference: str
    description: str
    amount_micros: int
    balance_after_micros: int

    def as_csv(self) -> list[str]:
        return [
            self.at.isoformat(),
            self.type,
            safe_cell(self.reference),
            safe_cell(self.description),
            format_credits(self.amount_micros),
            format_credits(self.balance_after_micros),
        ]


def safe_cell(text: str) -> str:
    """Text a spreadsheet would run as a formula gets a leading apostrophe (amounts, which are
    legitimately negative, are written without this)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def parse_day(text: str, name: str) -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise ValidationFailed(f"{name} must be a date like 2026-11-28") from None


def statement(session: Session, *, customer_id: str, period: Period) -> list[StatementRow]:
    account = ledger.customer_account_id(session, customer_id)
    signed = case(
        (col(Transfer.credit_account_id) == account, col(Transfer.amount_micros)),
        else_=-col(Transfer.amount_micros),
    )
    touches = or_(
        col(Transfer.debit_account_id) == account, col(Transfer.credit_account_id) == account
    )
    moves = and_(touches, col(Transfer.kind).in_(_MOVES))
    opening = int(
        session.execute(
            select(func.coalesce(func.sum(signed), 0)).where(
                moves, col(Transfer.created_at) < period.start
            )
        ).scalar_one()
    )
    rows = session.execute(
        select(Transfer, UsageRecord)
        .outerjoin(
            UsageRecord,
            and_(
                col(Transfer.kind) == "post", col(UsageRecord.hold_id) == col(Transfer.pending_id)
            ),
        )
        .where(
            moves, col(Transfer.created_at) >= period.start, col(Transfer.created_at) < period.end
        )
        .order_by(col(Transfer.created_at), col(Transfer.id))
    ).all()
    balance = opening
    result = [StatementRow(period.start, "opening", "", "opening balance", 0, opening)]
    for transfer, usage in rows:
        amount = (
            transfer.amount_micros
            if transfer.credit_account_id == account
            else (-transfer.amount_micros)
        )
        if amount == 0:
            continue  # a hold posted at zero moved nothing
        balance += amount
        reference, description = _describe(transfer, usage)
        result.append(
            StatementRow(
                transfer.created_at,
                _TYPES.get(transfer.code, transfer.code),
                reference,
                description,
                amount,
                balance,
            )
        )
    closing_at = period.end - timedelta(microseconds=1)
    result.append(StatementRow(closing_at, "closing", "", "closing balance", 0, balance))
    return result


def _describe(transfer: Transfer, usage: UsageRecord | None) -> tuple[str, str]:
    if usage is not None:
        return usage.id, (
            f"{usage.public_model}: {usage.prompt_tokens} prompt + "
            f"{usage.completion_tokens} completion tokens"
        )
    if transfer.code == TransferCode.USAGE_OVERAGE:
        return transfer.reference or "", "usage beyond the hold"
    return transfer.reference or transfer.idempotency_key, transfer.memo or transfer.code


def statement_csv(rows: Iterable[StatementRow]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(STATEMENT_HEADER)
    for row in rows:
        writer.writerow(row.as_csv())
    return out.getvalue()


def request_log_csv(
    session: Session, *, customer_id: str | None, period: Period, operator: bool = False
) -> str:
    """The request log as CSV; customer_id None: every customer's (admins only).

    cost is what was charged (the request's usage debits on the ledger). operator=True (the
    admin export) adds customer_id, unbilled (priced but not charged: the balance was short or
    the key's cap admitted only the hold) and disputed_completion_tokens (output reported beyond
    the cap the upstream was sent, not charged).
    """
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(REQUEST_LOG_HEADER + (OPERATOR_COLUMNS if operator else ()))
    conditions = [
        col(UsageRecord.created_at) >= period.start,
        col(UsageRecord.created_at) < period.end,
    ]
    if customer_id is not None:
        conditions.append(col(UsageRecord.customer_id) == customer_id)
    records = session.execute(
        select(UsageRecord)
        .where(*conditions)
        .order_by(col(UsageRecord.created_at), col(UsageRecord.id))
    ).scalars()
    for r in records:
        extra = (
            [r.customer_id, format_credits(r.unbilled_micros), str(r.disputed_completion_tokens)]
            if operator
            else []
        )
        writer.writerow(
            [
                r.created_at.isoformat(),
                r.id,
                r.api_key_id,
                safe_cell(r.public_model),
                safe_cell(r.provider),
                safe_cell(r.upstream_model),
                "true" if r.stream else "false",
                r.status,
                r.http_status,
                r.prompt_tokens,
                r.completion_tokens,
                r.cached_tokens,
                r.reasoning_tokens,
                r.usage_source,
                format_credits(charged_micros(r)),
                r.latency_ms,
                r.attempts,
                *extra,
            ]
        )
    return out.getvalue()
