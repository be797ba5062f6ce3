"""Reading usage back: spend totals, daily series for charts, and the paged request log.

Aggregation happens in SQL; callers get only the numbers they show. Every query is filtered by
the customer in the query itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import Date, cast, func, select
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Session, col

from creditdash.billing.models import UsageRecord
from creditdash.core.errors import NotFound, ValidationFailed
from creditdash.core.timeutil import utcnow

MAX_PAGE_SIZE = 100
MAX_PAGE = 10_000
MAX_CHART_DAYS = 366
# What a request charged is price_micros: settle() stores there the amount actually moved on
# the ledger. unbilled_micros is the part the balance could not cover; it was never charged and
# is already left out of price_micros, so it must not be subtracted again.
_CHARGED = col(UsageRecord.price_micros)


@dataclass(frozen=True)
class SpendTotals:
    today_micros: int
    month_micros: int
    requests_today: int


@dataclass(frozen=True)
class DailyPoint:
    day: date
    model: str
    spend_micros: int
    prompt_tokens: int
    completion_tokens: int
    requests: int


@dataclass(frozen=True)
class RequestFilters:
    model: str = ""
    api_key_id: str = ""
    status: str = ""
    first_day: date | None = None
    last_day: date | None = None


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def spend_totals(session: Session, *, customer_id: str, now: datetime | None = None) -> SpendTotals:
    now = now or utcnow()
    today = _day_start(now.date())
    month = _day_start(now.date().replace(day=1))
    mine = col(UsageRecord.customer_id) == customer_id
    month_spend = session.execute(
        select(func.coalesce(func.sum(_CHARGED), 0)).where(
            mine, col(UsageRecord.created_at) >= month
        )
    ).scalar_one()
    today_spend, today_count = session.execute(
        select(func.coalesce(func.sum(_CHARGED), 0), func.count()).where(
            mine, col(UsageRecord.created_at) >= today
        )
    ).one()
    return SpendTotals(int(today_spend), int(month_spend), int(today_count))


def _day_of(session: Session) -> ColumnElement[date]:
    # SQLite keeps timestamps as text, where date() gives the day; PostgreSQL casts.
    if session.get_bind().dialect.name == "sqlite":
        return func.date(col(UsageRecord.created_at))
    return cast(col(UsageRecord.created_at), Date)


def daily_usage(
    session: Session, *, customer_id: str, first_day: date, last_day: date
) -> list[DailyPoint]:
    """Spend, tokens and requests per UTC day and model, both days included."""
    if last_day < first_day or (last_day - first_day).days >= MAX_CHART_DAYS:
        raise ValidationFailed(f"choose a range of 1 to {MAX_CHART_DAYS} days")
    day = _day_of(session)
    rows = session.execute(
        select(
            day,
            col(UsageRecord.public_model),
            func.sum(_CHARGED),
            func.sum(col(UsageRecord.prompt_tokens)),
            func.sum(col(UsageRecord.completion_tokens)),
            func.count(),
        )
        .where(
            col(UsageRecord.customer_id) == customer_id,
            col(UsageRecord.created_at) >= _day_start(first_day),
            col(UsageRecord.created_at) < _day_start(last_day + timedelta(days=1)),
        )
        .group_by(day, col(UsageRecord.public_model))
        .order_by(day, col(UsageRecord.public_model))
    ).all()
    points = []
    for raw_day, model, spend, prompt, completion, count in rows:
        as_date = raw_day if isinstance(raw_day, date) else date.fromisoformat(str(raw_day))
        points.append(
            DailyPoint(as_date, model, int(spend), int(prompt), int(completion), int(count))
        )
    return points


def list_requests(
    session: Session,
    *,
    customer_id: str | None,
    filters: RequestFilters,
    page: int = 1,
    page_size: int = 25,
) -> tuple[list[UsageRecord], int]:
    """One page of the customer's request log (customer_id None: every customer's, for admins),
    newest first, and how many match in all."""
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ValidationFailed(f"page size must be 1-{MAX_PAGE_SIZE}")
    page = min(max(1, page), MAX_PAGE)
    conditions = [] if customer_id is None else [col(UsageRecord.customer_id) == customer_id]
    if filters.model:
        conditions.append(col(UsageRecord.public_model) == filters.model)
    if filters.api_key_id:
        conditions.append(col(UsageRecord.api_key_id) == filters.api_key_id)
    if filters.status:
        conditions.append(col(UsageRecord.status) == filters.status)
    if filters.first_day:
        conditions.append(col(UsageRecord.created_at) >= _day_start(filters.first_day))
    if filters.last_day:
        end = _day_start(filters.last_day + timedelta(days=1))
        conditions.append(col(UsageRecord.created_at) < end)
    total = session.execute(
        select(func.count()).select_from(UsageRecord).where(*conditions)
    ).scalar_one()
    rows = session.execute(
        select(UsageRecord)
        .where(*conditions)
        .order_by(col(UsageRecord.created_at).desc(), col(UsageRecord.id).desc())
        .offset((page - 1) * page_size)
        .limit(page_size)
    ).scalars()
    return list(rows), int(total)


# The API names usage records carry (docs/contract.md, "Usage"), as the request log shows them.
PROTOCOL_NAMES = {
    "chat": "Chat Completions",
    "completions": "Completions",
    "embeddings": "Embeddings",
    "responses": "Responses",
    "messages": "Anthropic Messages",
}


def protocol_label(record: UsageRecord) -> str:
    """The API the client called, and the upstream's when the gateway translated between them:
    "Anthropic Messages" when it passed through, "Responses → Chat Completions" when not."""
    client = PROTOCOL_NAMES.get(record.endpoint, record.endpoint)
    upstream = record.upstream_endpoint
    if not upstream or upstream == record.endpoint:
        return client
    return f"{client} → {PROTOCOL_NAMES.get(upstream, upstream)}"


def charged_micros(record: UsageRecord) -> int:
    """What the customer was charged for one request: equal to its usage debits on the ledger."""
    return record.price_micros


def get_request(session: Session, *, customer_id: str, request_id: str) -> UsageRecord:
    record = session.get(UsageRecord, request_id)
    if record is None or record.customer_id != customer_id:
        raise NotFound("request not found")
    return record


def models_used(session: Session, *, customer_id: str) -> list[str]:
    return list(
        session.execute(
            select(col(UsageRecord.public_model))
            .where(col(UsageRecord.customer_id) == customer_id)
            .distinct()
            .order_by(col(UsageRecord.public_model))
        ).scalars()
    )


@dataclass(frozen=True)
class DailyMargin:
    day: date
    revenue_micros: int
    cost_micros: int
    requests: int
    # Priced but not charged (the balance was short): not revenue, shown to operators apart.
    unbilled_micros: int = 0

    @property
    def margin_micros(self) -> int:
        return self.revenue_micros - self.cost_micros


def daily_margin(session: Session, *, first_day: date, last_day: date) -> list[DailyMargin]:
    """What customers were charged and what the upstreams cost, per UTC day, all customers."""
    if last_day < first_day or (last_day - first_day).days >= MAX_CHART_DAYS:
        raise ValidationFailed(f"choose a range of 1 to {MAX_CHART_DAYS} days")
    day = _day_of(session)
    rows = session.execute(
        select(
            day,
            func.sum(_CHARGED),
            func.sum(col(UsageRecord.upstream_cost_micros)),
            func.count(),
            func.sum(col(UsageRecord.unbilled_micros)),
        )
        .where(
            col(UsageRecord.created_at) >= _day_start(first_day),
            col(UsageRecord.created_at) < _day_start(last_day + timedelta(days=1)),
        )
        .group_by(day)
        .order_by(day)
    ).all()
    return [
        DailyMargin(
            raw if isinstance(raw, date) else date.fromisoformat(str(raw)),
            int(revenue),
            int(cost),
            int(count),
            int(unbilled),
        )
        for raw, revenue, cost, count, unbilled in rows
    ]
