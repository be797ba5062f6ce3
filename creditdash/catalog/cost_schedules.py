"""Route costs that take effect at a set time: the cost-side twin of the price schedules.

An admin's edit and `prices sync` both write them; housekeeping applies each once, when due,
with a conditional status change (several processes may run housekeeping). A route is costed
at whatever cost is current when a request runs, and each usage record keeps the upstream cost
it ran at, so a schedule never changes past usage.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlmodel import Session, col

from creditdash.catalog.models import (
    COST_SCHEDULE_SOURCES,
    Provider,
    PublicModel,
    Route,
    RouteCostSchedule,
)
from creditdash.catalog.prices import Price
from creditdash.core import db
from creditdash.core.audit import Actor, record
from creditdash.core.errors import ValidationFailed
from creditdash.core.money import format_credits
from creditdash.core.timeutil import utcnow


def route_cost(route: Route) -> Price:
    """The route's upstream cost as a Price (also catalog/pricing.py's)."""
    return Price(
        route.input_cost_micros_per_mtok,
        route.output_cost_micros_per_mtok,
        route.cached_input_cost_micros_per_mtok,
        route.request_cost_micros,
        route.cache_write_cost_micros_per_mtok,
    )


def schedule_cost(schedule: RouteCostSchedule) -> Price:
    return Price(
        schedule.input_cost_micros_per_mtok,
        schedule.output_cost_micros_per_mtok,
        schedule.cached_input_cost_micros_per_mtok,
        schedule.request_cost_micros,
        schedule.cache_write_cost_micros_per_mtok,
    )


def describe_cost(cost: Price) -> dict[str, str]:
    """A cost (or a price) as decimal credit strings, for the audit log and the pages."""
    described = {
        "input_per_mtok": format_credits(cost.input_micros_per_mtok),
        "cached_input_per_mtok": format_credits(cost.cached_input_micros_per_mtok),
        "output_per_mtok": format_credits(cost.output_micros_per_mtok),
        "per_request": format_credits(cost.request_fee_micros),
    }
    if cost.cache_write_micros_per_mtok is not None:
        described["cache_write_per_mtok"] = format_credits(cost.cache_write_micros_per_mtok)
    return described


def same_cost(a: Price, b: Price) -> bool:
    """Equal as charged: a cache write cost left unset is the input cost."""
    return (
        a.input_micros_per_mtok == b.input_micros_per_mtok
        and a.output_micros_per_mtok == b.output_micros_per_mtok
        and a.cached_input_micros_per_mtok == b.cached_input_micros_per_mtok
        and a.cache_write_micros == b.cache_write_micros
        and a.request_fee_micros == b.request_fee_micros
    )


def route_label(model: str, provider: str, upstream_model: str) -> str:
    return f"{model}:{provider}/{upstream_model}"


def add_cost_schedule(
    session: Session,
    *,
    route: Route,
    cost: Price,
    effective_at: datetime,
    actor: Actor,
    source: str,
    label: str,
) -> RouteCostSchedule:
    """Write one pending cost schedule (the caller reviewed the margin) and audit it."""
    if source not in COST_SCHEDULE_SOURCES:
        raise ValidationFailed(f"unknown schedule source {source!r}")
    if effective_at.tzinfo is None:
        raise ValidationFailed("the effective time needs a time zone (UTC)")
    if cost.has_negative:
        raise ValidationFailed("costs cannot be negative")
    assert route.id is not None
    schedule = RouteCostSchedule(
        route_id=route.id,
        effective_at=effective_at,
        input_cost_micros_per_mtok=cost.input_micros_per_mtok,
        output_cost_micros_per_mtok=cost.output_micros_per_mtok,
        cached_input_cost_micros_per_mtok=cost.cached_input_micros_per_mtok,
        request_cost_micros=cost.request_fee_micros,
        cache_write_cost_micros_per_mtok=cost.cache_write_micros_per_mtok,
        source=source,
        created_by_label=actor.label[:200],
    )
    session.add(schedule)
    session.flush()
    record(
        session,
        actor=actor,
        action="route.cost_scheduled",
        target_type="route",
        target_id=label[:80],
        before=describe_cost(route_cost(route)),
        after={**describe_cost(cost), "effective_at": effective_at.isoformat(), "source": source},
    )
    return schedule


def pending_cost(session: Session, *, route_id: int) -> RouteCostSchedule | None:
    """The latest cost still to come for a route, if any: what it will cost once it applies."""
    return session.execute(
        select(RouteCostSchedule)
        .where(
            col(RouteCostSchedule.route_id) == route_id, col(RouteCostSchedule.status) == "pending"
        )
        .order_by(col(RouteCostSchedule.effective_at).desc(), col(RouteCostSchedule.id).desc())
        .limit(1)
    ).scalar_one_or_none()


def cancel_cost_schedule(
    session: Session, *, schedule_id: int, actor: Actor, reason: str = ""
) -> bool:
    """Cancel a pending schedule; False when it was no longer pending (applied or cancelled)."""
    result = session.execute(
        update(RouteCostSchedule)
        .where(col(RouteCostSchedule.id) == schedule_id, col(RouteCostSchedule.status) == "pending")
        .values(status="cancelled")
        .execution_options(synchronize_session=False)
    )
    if db.rowcount(result) != 1:
        return False
    record(
        session,
        actor=actor,
        action="route.cost_schedule_cancelled",
        target_type="route_cost_schedule",
        target_id=str(schedule_id),
        reason=reason,
    )
    return True


def set_route_cost(
    session: Session, *, route: Route, cost: Price, actor: Actor, label: str, reason: str
) -> None:
    """Make a cost current on a route now, audited (a due schedule, or a rejected one undone)."""
    before = describe_cost(route_cost(route))
    route.input_cost_micros_per_mtok = cost.input_micros_per_mtok
    route.output_cost_micros_per_mtok = cost.output_micros_per_mtok
    route.cached_input_cost_micros_per_mtok = cost.cached_input_micros_per_mtok
    route.request_cost_micros = cost.request_fee_micros
    route.cache_write_cost_micros_per_mtok = cost.cache_write_micros_per_mtok
    session.add(route)
    session.flush()
    record(
        session,
        actor=actor,
        action="route.cost",
        target_type="route",
        target_id=label[:80],
        before=before,
        after=describe_cost(cost),
        reason=reason,
    )


def apply_due_cost_schedules(session: Session, *, now: datetime | None = None) -> int:
    """Make due route costs current, oldest first; each schedule takes effect exactly once."""
    now = now or utcnow()
    due = session.execute(
        select(RouteCostSchedule, Route, col(PublicModel.name), col(Provider.name))
        .join(Route, col(Route.id) == col(RouteCostSchedule.route_id))
        .join(PublicModel, col(PublicModel.id) == col(Route.model_id))
        .join(Provider, col(Provider.id) == col(Route.provider_id))
        .where(
            col(RouteCostSchedule.status) == "pending", col(RouteCostSchedule.effective_at) <= now
        )
        .order_by(col(RouteCostSchedule.effective_at), col(RouteCostSchedule.id))
    ).all()
    applied = 0
    for schedule, route, model, provider in due:
        claimed = session.execute(
            update(RouteCostSchedule)
            .where(
                col(RouteCostSchedule.id) == schedule.id, col(RouteCostSchedule.status) == "pending"
            )
            .values(status="applied", applied_at=now)
            .execution_options(synchronize_session=False)
        )
        if db.rowcount(claimed) != 1:
            continue
        # Reviewed when it was scheduled (a sync's review may have closed the route for it).
        set_route_cost(
            session,
            route=route,
            cost=schedule_cost(schedule),
            actor=Actor(label=f"cost-schedule:{schedule.id}"),
            label=route_label(model, provider, route.upstream_model),
            reason=f"{schedule.source} schedule due {schedule.effective_at.isoformat()}",
        )
        applied += 1
    return applied


@dataclass(frozen=True)
class CostScheduleView:
    id: int
    route: str
    effective_at: datetime
    cost: Price
    status: str
    source: str
    created_by: str


def list_cost_schedules(session: Session, *, limit: int = 100) -> list[CostScheduleView]:
    rows = session.execute(
        select(RouteCostSchedule, Route, col(PublicModel.name), col(Provider.name))
        .join(Route, col(Route.id) == col(RouteCostSchedule.route_id))
        .join(PublicModel, col(PublicModel.id) == col(Route.model_id))
        .join(Provider, col(Provider.id) == col(Route.provider_id))
        .order_by(col(RouteCostSchedule.effective_at).desc(), col(RouteCostSchedule.id).desc())
        .limit(limit)
    ).all()
    return [
        CostScheduleView(
            s.id or 0,
            route_label(model, provider, route.upstream_model),
            s.effective_at,
            schedule_cost(s),
            s.status,
            s.source,
            s.created_by_label,
        )
        for s, route, model, provider in rows
    ]
