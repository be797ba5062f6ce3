"""Upstream cost reconciliation: what each provider says it charged, per UTC day and model,
against the upstream cost the gateway recorded on its usage records for the same day, provider
and upstream model.

Reported costs (from the provider's cost report, or a CSV) are stored per provider, day and
model in micros of a credit, converted from USD at CREDITDASH_PRICE_SYNC_CREDITS_PER_USD and
rounded half-up to the micro; a later report of the same day and model replaces the earlier.
A provider names models with their dated version ("gpt-4o-mini-2024-07-18",
"claude-3-5-haiku-20241022") where a route may name the alias, so a reported model that is not
recorded under its own name is matched to a recorded one without the date suffix.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy import Date, cast, delete, func, select
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Session, col

from creditdash.billing.models import UsageRecord
from creditdash.core.audit import Actor, record
from creditdash.core.settings import get_settings
from creditdash.upstream.cost_reports import ReportedCost, check_range, fetch_costs
from creditdash.upstream.models import UpstreamDailyCost
from creditdash.upstream.sources import find_provider, report_access

MICROS = Decimal(1_000_000)
_DATED = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{8})$")


def usd_micros(usd: Decimal) -> int:
    """USD in micros of a credit at the configured rate, half-up to the micro."""
    exact = usd * get_settings().price_sync_credits_per_usd * MICROS
    return int(exact.to_integral_value(rounding=ROUND_HALF_UP))


def store_costs(
    session: Session,
    *,
    provider_id: int,
    provider: str,
    rows: list[ReportedCost],
    source: str,
    actor: Actor,
    days: tuple[date, date] | None = None,
) -> int:
    """Replace what is stored for these days and models with the rows; audited. With days, a
    fetched report replaces everything stored for the provider in that range (a model the
    provider no longer reports for a day is gone from it)."""
    if days is not None:
        session.execute(
            delete(UpstreamDailyCost).where(
                col(UpstreamDailyCost.provider_id) == provider_id,
                col(UpstreamDailyCost.day) >= days[0],
                col(UpstreamDailyCost.day) <= days[1],
            )
        )
    for row in rows:
        session.execute(
            delete(UpstreamDailyCost).where(
                col(UpstreamDailyCost.provider_id) == provider_id,
                col(UpstreamDailyCost.day) == row.day,
                col(UpstreamDailyCost.model) == row.model,
            )
        )
        session.add(
            UpstreamDailyCost(
                provider_id=provider_id,
                day=row.day,
                model=row.model[:200],
                cost_micros=usd_micros(row.usd),
                source=source,
            )
        )
    session.flush()
    record(
        session,
        actor=actor,
        action="upstream.costs_stored",
        target_type="provider",
        target_id=provider,
        after={
            "rows": len(rows),
            "source": source,
            "days": [d.isoformat() for d in days] if days else None,
            "total_micros": sum(usd_micros(r.usd) for r in rows),
        },
    )
    return len(rows)


def fetch_and_store(
    session: Session, *, provider: str, first_day: date, last_day: date, actor: Actor
) -> int:
    """Read the provider's cost report for the days and store it (nothing on any failure)."""
    access = report_access(session, provider=provider)
    rows = fetch_costs(access, first_day=first_day, last_day=last_day)
    return store_costs(
        session,
        provider_id=access.provider_id,
        provider=access.provider,
        rows=rows,
        source=f"{access.kind}_api",
        actor=actor,
        days=(first_day, last_day),
    )


@dataclass(frozen=True)
class DayLine:
    day: date
    model: str
    reported_micros: int | None  # None: the provider reported nothing for it
    recorded_micros: int
    requests: int

    @property
    def difference_micros(self) -> int:
        return (self.reported_micros or 0) - self.recorded_micros


@dataclass(frozen=True)
class Reconciliation:
    provider: str
    first_day: date
    last_day: date
    tolerance_micros: int
    lines: list[DayLine]

    @property
    def differences(self) -> list[DayLine]:
        return [ln for ln in self.lines if abs(ln.difference_micros) > self.tolerance_micros]

    @property
    def reported_total_micros(self) -> int:
        return sum(ln.reported_micros or 0 for ln in self.lines)

    @property
    def recorded_total_micros(self) -> int:
        return sum(ln.recorded_micros for ln in self.lines)

    def as_json(self) -> dict[str, object]:
        return {
            "provider": self.provider,
            "from": self.first_day.isoformat(),
            "to": self.last_day.isoformat(),
            "tolerance_micros": self.tolerance_micros,
            "reported_total_micros": self.reported_total_micros,
            "recorded_total_micros": self.recorded_total_micros,
            "lines": [_line_json(ln, self.tolerance_micros) for ln in self.lines],
        }


def _line_json(line: DayLine, tolerance: int) -> dict[str, object]:
    return {
        "day": line.day.isoformat(),
        "model": line.model,
        "reported_micros": line.reported_micros,
        "recorded_micros": line.recorded_micros,
        "difference_micros": line.difference_micros,
        "requests": line.requests,
        "over_tolerance": abs(line.difference_micros) > tolerance,
    }


def _day_of(session: Session) -> ColumnElement[date]:
    # SQLite keeps timestamps as text, where date() gives the day; PostgreSQL casts.
    if session.get_bind().dialect.name == "sqlite":
        return func.date(col(UsageRecord.created_at))
    return cast(col(UsageRecord.created_at), Date)


def _recorded(
    session: Session, provider: str, first_day: date, last_day: date
) -> dict[tuple[date, str], tuple[int, int]]:
    day = _day_of(session)
    rows = session.execute(
        select(
            day,
            col(UsageRecord.upstream_model),
            func.sum(col(UsageRecord.upstream_cost_micros)),
            func.count(),
        )
        .where(
            col(UsageRecord.provider) == provider,
            col(UsageRecord.created_at) >= datetime.combine(first_day, time.min, tzinfo=UTC),
            col(UsageRecord.created_at)
            < datetime.combine(last_day + timedelta(days=1), time.min, tzinfo=UTC),
        )
        .group_by(day, col(UsageRecord.upstream_model))
    ).all()
    found = {}
    for raw_day, model, cost, count in rows:
        as_date = raw_day if isinstance(raw_day, date) else date.fromisoformat(str(raw_day))
        found[(as_date, model)] = (int(cost or 0), int(count))
    return found


def reconcile(
    session: Session,
    *,
    provider: str,
    first_day: date,
    last_day: date,
    tolerance_micros: int | None = None,
) -> Reconciliation:
    """Stored reported costs against recorded ones, per day and model, both days included."""
    check_range(first_day, last_day)
    found = find_provider(session, provider)
    tolerance = (
        get_settings().reconcile_tolerance_micros if tolerance_micros is None else tolerance_micros
    )
    recorded = _recorded(session, found.name, first_day, last_day)
    reported: dict[tuple[date, str], int] = defaultdict(int)
    stored = session.execute(
        select(UpstreamDailyCost).where(
            col(UpstreamDailyCost.provider_id) == found.id,
            col(UpstreamDailyCost.day) >= first_day,
            col(UpstreamDailyCost.day) <= last_day,
        )
    ).scalars()
    recorded_models = {model for _, model in recorded}
    for row in stored:
        reported[(row.day, _match(row.model, recorded_models))] += row.cost_micros
    keys = sorted(set(recorded) | set(reported))
    lines = [
        DayLine(
            day,
            model,
            reported.get((day, model)),
            recorded.get((day, model), (0, 0))[0],
            recorded.get((day, model), (0, 0))[1],
        )
        for day, model in keys
    ]
    return Reconciliation(found.name, first_day, last_day, tolerance, lines)


def _match(reported_model: str, recorded_models: set[str]) -> str:
    if reported_model in recorded_models:
        return reported_model
    undated = _DATED.sub("", reported_model)
    return undated if undated in recorded_models else reported_model
