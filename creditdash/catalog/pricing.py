"""Admin edits to what customers pay, and the margin review they are checked against.

A price change applies to requests priced after it (the gateway's catalog snapshot refreshes
within seconds); every usage record keeps the price it ran at, so past usage never changes.
A change that would leave an enabled route losing money needs an explicit acknowledgement,
as in `catalog import`; both are audited.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlmodel import Session, col

from creditdash.catalog.cost_schedules import describe_cost as _describe
from creditdash.catalog.cost_schedules import route_cost as _cost_of
from creditdash.catalog.importer import CooldownSpec, FallbackSpec, MarginLine
from creditdash.catalog.models import FAILURE_KINDS, PriceSchedule, Provider, PublicModel, Route
from creditdash.catalog.prices import (
    REFERENCE_MIX,
    Price,
    cost_micros,
    losing_mix,
    margin_basis_points,
)
from creditdash.core import db
from creditdash.core.audit import Actor, record
from creditdash.core.errors import NotFound, ValidationFailed
from creditdash.core.money import format_credits
from creditdash.core.timeutil import utcnow


@dataclass(frozen=True)
class ModelPrice:
    name: str
    input_micros_per_mtok: int
    output_micros_per_mtok: int
    cached_input_micros_per_mtok: int
    request_fee_micros: int
    enabled: bool
    cache_write_micros_per_mtok: int | None = None


def _price_of(model: PublicModel) -> Price:
    return Price(
        model.input_price_micros_per_mtok,
        model.output_price_micros_per_mtok,
        model.cached_input_price_micros_per_mtok,
        model.request_fee_micros,
        model.cache_write_price_micros_per_mtok,
    )


def _line(model: str, provider: str, upstream_model: str, price: Price, cost: Price) -> MarginLine:
    """A route's margin on the reference mix, and the review mix it loses money on, if any."""
    charged, paid = cost_micros(price, REFERENCE_MIX), cost_micros(cost, REFERENCE_MIX)
    return MarginLine(
        model,
        provider,
        upstream_model,
        charged,
        paid,
        margin_basis_points(charged, paid),
        losing_mix(price, cost),
    )


def list_models(session: Session) -> list[ModelPrice]:
    models = session.execute(select(PublicModel).order_by(col(PublicModel.name))).scalars()
    return [
        ModelPrice(
            m.name,
            m.input_price_micros_per_mtok,
            m.output_price_micros_per_mtok,
            m.cached_input_price_micros_per_mtok,
            m.request_fee_micros,
            m.enabled,
            m.cache_write_price_micros_per_mtok,
        )
        for m in models
    ]


def margins(session: Session) -> list[MarginLine]:
    """Every route's price and cost for the reference mix, and its margin."""
    rows = session.execute(
        select(PublicModel, Route, Provider)
        .join(Route, col(Route.model_id) == col(PublicModel.id))
        .join(Provider, col(Provider.id) == col(Route.provider_id))
        .order_by(col(PublicModel.name), col(Route.priority), col(Provider.name))
    ).all()
    lines = []
    for model, route, provider in rows:
        lines.append(_line(model.name, provider.name, route.upstream_model, _price_of(model),
                           _cost_of(route)))  # fmt: skip
    return lines


def set_model_price(
    session: Session, *, model: str, price: Price, actor: Actor, acknowledge_loss: bool = False
) -> list[MarginLine]:
    """Change a public model's customer price; refused if it would make an enabled route lose
    money unless acknowledged. Returns the model's margins at the new price."""
    for label, value in (
        ("input price", price.input_micros_per_mtok),
        ("output price", price.output_micros_per_mtok),
        ("cached input price", price.cached_input_micros_per_mtok),
        ("cache write price", price.cache_write_micros),
        ("request fee", price.request_fee_micros),
    ):
        if value < 0:
            raise ValidationFailed(f"the {label} cannot be negative")
    found = session.execute(
        select(PublicModel).where(col(PublicModel.name) == model)
    ).scalar_one_or_none()
    if found is None:
        raise NotFound(f"no model named {model!r}")
    before = _price_of(found)
    routes = session.execute(
        select(Route, Provider)
        .join(Provider, col(Provider.id) == col(Route.provider_id))
        .where(col(Route.model_id) == found.id)
    ).all()
    lines = []
    for route, provider in routes:
        line = _line(found.name, provider.name, route.upstream_model, price, _cost_of(route))
        lines.append(line)
        if route.enabled and line.loss is not None:
            if not acknowledge_loss:
                raise ValidationFailed(
                    f"at this price {provider.name}/{route.upstream_model} loses money "
                    f"(price {format_credits(line.loss.price_micros)} vs cost "
                    f"{format_credits(line.loss.cost_micros)} for {line.loss.mix}); "
                    "acknowledge the loss to save it"
                )
            if route.negative_margin_acknowledged_at is None:
                route.negative_margin_acknowledged_at = utcnow()
                session.add(route)
    found.input_price_micros_per_mtok = price.input_micros_per_mtok
    found.output_price_micros_per_mtok = price.output_micros_per_mtok
    found.cached_input_price_micros_per_mtok = price.cached_input_micros_per_mtok
    found.request_fee_micros = price.request_fee_micros
    found.cache_write_price_micros_per_mtok = price.cache_write_micros_per_mtok
    session.add(found)
    session.flush()
    record(
        session,
        actor=actor,
        action="model.price",
        target_type="public_model",
        target_id=found.name,
        before=_describe(before),
        after={**_describe(price), "acknowledged_loss": acknowledge_loss},
    )
    return lines


@dataclass(frozen=True)
class RouteView:
    model: str
    provider: str
    upstream_model: str
    priority: int
    weight: int
    enabled: bool
    cost: Price


def list_routes(session: Session) -> list[RouteView]:
    rows = session.execute(
        select(PublicModel, Route, Provider)
        .join(Route, col(Route.model_id) == col(PublicModel.id))
        .join(Provider, col(Provider.id) == col(Route.provider_id))
        .order_by(col(PublicModel.name), col(Route.priority), col(Provider.name))
    ).all()
    return [
        RouteView(m.name, p.name, r.upstream_model, r.priority, r.weight, r.enabled, _cost_of(r))
        for m, r, p in rows
    ]


def set_route(
    session: Session,
    *,
    model: str,
    provider: str,
    upstream_model: str,
    priority: int,
    weight: int,
    enabled: bool,
    cost: Price,
    actor: Actor,
    acknowledge_loss: bool = False,
) -> MarginLine:
    """Change one route's order, share and upstream cost, with the same margin review."""
    if not 0 <= priority <= 1000 or not 0 <= weight <= 1000:
        raise ValidationFailed("priority and weight are 0-1000")
    if cost.has_negative:
        raise ValidationFailed("costs cannot be negative")
    found = session.execute(
        select(PublicModel, Route)
        .join(Route, col(Route.model_id) == col(PublicModel.id))
        .join(Provider, col(Provider.id) == col(Route.provider_id))
        .where(
            col(PublicModel.name) == model,
            col(Provider.name) == provider,
            col(Route.upstream_model) == upstream_model,
        )
    ).first()
    if found is None:
        raise NotFound(f"no route {provider}/{upstream_model} for {model}")
    public, route = found
    line = _line(model, provider, upstream_model, _price_of(public), cost)
    if enabled and line.loss is not None:
        if not acknowledge_loss:
            raise ValidationFailed(
                f"{provider}/{upstream_model} would cost more than {model}'s price "
                f"({format_credits(line.loss.cost_micros)} vs "
                f"{format_credits(line.loss.price_micros)} for {line.loss.mix}); "
                "acknowledge the loss"
            )
        route.negative_margin_acknowledged_at = route.negative_margin_acknowledged_at or utcnow()
    elif line.loss is None:
        route.negative_margin_acknowledged_at = None
    before = {
        "priority": route.priority,
        "weight": route.weight,
        "enabled": route.enabled,
        **_describe(_cost_of(route)),
    }
    route.priority, route.weight, route.enabled = priority, weight, enabled
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
        action="route.update",
        target_type="route",
        target_id=f"{model}:{provider}/{upstream_model}",
        before=before,
        after={
            "priority": priority,
            "weight": weight,
            "enabled": enabled,
            **_describe(cost),
            "acknowledged_loss": acknowledge_loss,
        },
    )
    return line


@dataclass(frozen=True)
class FallbackView:
    """A model's fallback policy as stored (fall_through is the comma-separated kinds)."""

    model: str
    fall_through: str
    max_attempts: int
    attempt_timeout_s: int | None
    cooldown_failures: int
    cooldown_s: int


def list_fallbacks(session: Session) -> list[FallbackView]:
    """Every model's fallback policy, by model name (the admin prices page lists them)."""
    models = session.execute(select(PublicModel).order_by(col(PublicModel.name))).scalars()
    return [
        FallbackView(
            m.name,
            m.fallback_on,
            m.max_attempts,
            m.attempt_timeout_s,
            m.cooldown_failures,
            m.cooldown_s,
        )
        for m in models
    ]


def set_fallback(
    session: Session,
    *,
    model: str,
    fall_through: list[str],
    max_attempts: int,
    attempt_timeout_s: int | None,
    cooldown_failures: int,
    cooldown_s: int,
    actor: Actor,
) -> None:
    """A model's fallback policy, validated exactly as in `catalog import`."""
    from pydantic import ValidationError

    try:
        spec = FallbackSpec(
            fall_through=fall_through,
            max_attempts=max_attempts,
            attempt_timeout_s=attempt_timeout_s,
            cooldown=CooldownSpec(failures=cooldown_failures, seconds=cooldown_s),
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ValidationFailed(f"{'.'.join(map(str, first['loc']))}: {first['msg']}") from None
    found = session.execute(
        select(PublicModel).where(col(PublicModel.name) == model)
    ).scalar_one_or_none()
    if found is None:
        raise NotFound(f"no model named {model!r}")
    before = {
        "fall_through": found.fallback_on,
        "max_attempts": found.max_attempts,
        "attempt_timeout_s": found.attempt_timeout_s,
        "cooldown": [found.cooldown_failures, found.cooldown_s],
    }
    found.fallback_on = ",".join(k for k in FAILURE_KINDS if k in spec.fall_through)
    found.max_attempts = spec.max_attempts
    found.attempt_timeout_s = spec.attempt_timeout_s
    found.cooldown_failures = spec.cooldown.failures
    found.cooldown_s = spec.cooldown.seconds
    found.updated_at = utcnow()
    session.add(found)
    record(
        session,
        actor=actor,
        action="model.fallback",
        target_type="public_model",
        target_id=model,
        before=before,
        after={
            "fall_through": found.fallback_on,
            "max_attempts": found.max_attempts,
            "attempt_timeout_s": found.attempt_timeout_s,
            "cooldown": [found.cooldown_failures, found.cooldown_s],
        },
    )


@dataclass(frozen=True)
class ScheduleView:
    id: int
    model: str
    effective_at: datetime
    price: Price
    status: str
    created_by: str


def schedule_price(
    session: Session,
    *,
    model: str,
    price: Price,
    effective_at: datetime,
    actor: Actor,
    acknowledge_loss: bool = False,
) -> ScheduleView:
    """Set a price to take effect at effective_at (UTC, in the future); checked against the
    routes' costs now, and applied by housekeeping within its interval of that time."""
    if effective_at.tzinfo is None:
        raise ValidationFailed("the effective time needs a time zone (UTC)")
    if effective_at <= utcnow():
        raise ValidationFailed("the effective time must be in the future; edit the price instead")
    found = session.execute(
        select(PublicModel).where(col(PublicModel.name) == model)
    ).scalar_one_or_none()
    if found is None:
        raise NotFound(f"no model named {model!r}")
    # The same review as an immediate change, without changing anything now.
    trial = session.begin_nested()
    try:
        set_model_price(
            session, model=model, price=price, actor=actor, acknowledge_loss=acknowledge_loss
        )
    finally:
        trial.rollback()
    assert found.id is not None
    schedule = PriceSchedule(
        model_id=found.id,
        effective_at=effective_at,
        input_price_micros_per_mtok=price.input_micros_per_mtok,
        output_price_micros_per_mtok=price.output_micros_per_mtok,
        cached_input_price_micros_per_mtok=price.cached_input_micros_per_mtok,
        request_fee_micros=price.request_fee_micros,
        cache_write_price_micros_per_mtok=price.cache_write_micros_per_mtok,
        created_by_label=actor.label[:200],
    )
    session.add(schedule)
    session.flush()
    record(
        session,
        actor=actor,
        action="model.price_scheduled",
        target_type="public_model",
        target_id=model,
        after={
            **_describe(price),
            "effective_at": effective_at.isoformat(),
            "acknowledged_loss": acknowledge_loss,
        },
    )
    assert schedule.id is not None
    return ScheduleView(schedule.id, model, effective_at, price, "pending", actor.label)


def list_schedules(session: Session, *, limit: int = 100) -> list[ScheduleView]:
    rows = session.execute(
        select(PriceSchedule, col(PublicModel.name))
        .join(PublicModel, col(PublicModel.id) == col(PriceSchedule.model_id))
        .order_by(col(PriceSchedule.effective_at).desc())
        .limit(limit)
    ).all()
    return [
        ScheduleView(
            s.id or 0,
            name,
            s.effective_at,
            Price(
                s.input_price_micros_per_mtok,
                s.output_price_micros_per_mtok,
                s.cached_input_price_micros_per_mtok,
                s.request_fee_micros,
                s.cache_write_price_micros_per_mtok,
            ),
            s.status,
            s.created_by_label,
        )
        for s, name in rows
    ]


def cancel_schedule(session: Session, *, schedule_id: int, actor: Actor) -> None:
    result = session.execute(
        update(PriceSchedule)
        .where(col(PriceSchedule.id) == schedule_id, col(PriceSchedule.status) == "pending")
        .values(status="cancelled")
        .execution_options(synchronize_session=False)
    )
    if db.rowcount(result) != 1:
        raise ValidationFailed("only a pending schedule can be cancelled")
    record(
        session,
        actor=actor,
        action="model.price_schedule_cancelled",
        target_type="price_schedule",
        target_id=str(schedule_id),
    )


def apply_due_schedules(session: Session, *, now: datetime | None = None) -> int:
    """Make due prices current, oldest first; each schedule takes effect exactly once (a
    conditional status change), even with several processes doing housekeeping."""
    now = now or utcnow()
    due = session.execute(
        select(PriceSchedule, col(PublicModel.name))
        .join(PublicModel, col(PublicModel.id) == col(PriceSchedule.model_id))
        .where(col(PriceSchedule.status) == "pending", col(PriceSchedule.effective_at) <= now)
        .order_by(col(PriceSchedule.effective_at), col(PriceSchedule.id))
    ).all()
    applied = 0
    for schedule, name in due:
        claimed = session.execute(
            update(PriceSchedule)
            .where(col(PriceSchedule.id) == schedule.id, col(PriceSchedule.status) == "pending")
            .values(status="applied", applied_at=now)
            .execution_options(synchronize_session=False)
        )
        if db.rowcount(claimed) != 1:
            continue
        # Reviewed when it was scheduled; a route whose cost rose since is flagged on the
        # margin page rather than blocking a price the operator already committed to.
        set_model_price(
            session,
            model=name,
            price=Price(
                schedule.input_price_micros_per_mtok,
                schedule.output_price_micros_per_mtok,
                schedule.cached_input_price_micros_per_mtok,
                schedule.request_fee_micros,
                schedule.cache_write_price_micros_per_mtok,
            ),
            actor=Actor(label=f"schedule:{schedule.id}"),
            acknowledge_loss=True,
        )
        applied += 1
    return applied
