"""Importing what providers charged from a CSV, all or nothing.

The file has a header row naming (at least) day, provider, model and cost: day is a UTC date
(YYYY-MM-DD, not in the future), provider a provider's name in the catalog, model the upstream
model as the provider bills it, cost the provider's charge in USD as a plain decimal (at most
12 decimals; no sign, no exponent, no currency symbol). Every row is checked before anything
is written, and a file with any bad row is refused with each bad row's line number and reason.
"""

from __future__ import annotations

import csv
import io
import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from sqlalchemy import select
from sqlmodel import Session, col

from creditdash.catalog.models import SANDBOX_KINDS, Provider
from creditdash.core.audit import Actor
from creditdash.core.errors import ValidationFailed
from creditdash.core.timeutil import utcnow
from creditdash.upstream.cost_reports import ReportedCost
from creditdash.upstream.reconcile import store_costs

COLUMNS = ("day", "provider", "model", "cost")
MAX_BYTES = 10 * 1024 * 1024
MAX_ROWS = 100_000
MAX_ERRORS_SHOWN = 20
_AMOUNT = re.compile(r"\A[0-9]{1,12}(\.[0-9]{1,12})?\Z", re.ASCII)
_DAY = re.compile(r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}\Z", re.ASCII)


@dataclass(frozen=True)
class _Row:
    provider: Provider
    cost: ReportedCost


def _row(line: int, raw: dict[str, str | None], providers: dict[str, Provider], today: date,
         seen: set[tuple[str, date, str]]) -> tuple[_Row | None, str | None]:  # fmt: skip
    cells = {name: (raw.get(name) or "").strip() for name in COLUMNS}
    if None in raw:  # csv puts cells beyond the header under the key None
        return None, f"line {line}: more cells than the header has columns"
    if not _DAY.match(cells["day"]):
        return None, f"line {line}: day {cells['day']!r} is not a date (YYYY-MM-DD)"
    try:
        day = date.fromisoformat(cells["day"])
    except ValueError:
        return None, f"line {line}: day {cells['day']!r} is not a real date"
    if day > today:
        return None, f"line {line}: day {day.isoformat()} is in the future"
    provider = providers.get(cells["provider"])
    if provider is None:
        return None, f"line {line}: no provider named {cells['provider']!r}"
    if provider.kind in SANDBOX_KINDS:
        return None, f"line {line}: provider {provider.name} is the built-in sandbox"
    if not cells["model"] or len(cells["model"]) > 200:
        return None, f"line {line}: model must be 1 to 200 characters"
    if not _AMOUNT.match(cells["cost"]):
        return None, (
            f"line {line}: cost {cells['cost']!r} is not a plain decimal amount of USD "
            '(e.g. "12.345678")'
        )
    key = (provider.name, day, cells["model"])
    if key in seen:
        return None, f"line {line}: a second row for {provider.name} {day} {cells['model']}"
    seen.add(key)
    return _Row(provider, ReportedCost(day, cells["model"], Decimal(cells["cost"]))), None


def parse_costs_csv(session: Session, text: str) -> list[_Row]:
    """Every row checked; ValidationFailed naming the bad ones, if any."""
    if len(text.encode("utf-8")) > MAX_BYTES:
        raise ValidationFailed(f"the file is over {MAX_BYTES} bytes")
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in reader.fieldnames or []]
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise ValidationFailed(
            f"the header row must name {', '.join(COLUMNS)}; missing {', '.join(missing)}"
        )
    reader.fieldnames = header
    providers = {
        p.name: p for p in session.execute(select(Provider).order_by(col(Provider.name))).scalars()
    }
    today = utcnow().date()
    rows: list[_Row] = []
    errors: list[str] = []
    seen: set[tuple[str, date, str]] = set()
    for index, raw in enumerate(reader):
        if index >= MAX_ROWS:
            raise ValidationFailed(f"the file has more than {MAX_ROWS} rows")
        row, error = _row(reader.line_num, raw, providers, today, seen)
        if error:
            errors.append(error)
        elif row:
            rows.append(row)
    if errors:
        shown = errors[:MAX_ERRORS_SHOWN]
        more = len(errors) - len(shown)
        raise ValidationFailed(
            f"{len(errors)} bad rows, nothing imported:\n  "
            + "\n  ".join(shown)
            + (f"\n  … and {more} more" if more else "")
        )
    if not rows:
        raise ValidationFailed("the file has no rows")
    return rows


def import_costs_csv(session: Session, *, text: str, actor: Actor) -> dict[str, int]:
    """Store every row (a day and model already stored is replaced); rows per provider."""
    rows = parse_costs_csv(session, text)
    by_provider: dict[str, list[_Row]] = defaultdict(list)
    for row in rows:
        by_provider[row.provider.name].append(row)
    counts = {}
    for name, group in sorted(by_provider.items()):
        provider_id = group[0].provider.id
        assert provider_id is not None
        counts[name] = store_costs(
            session,
            provider_id=provider_id,
            provider=name,
            rows=[r.cost for r in group],
            source="csv",
            actor=actor,
        )
    return counts
