"""Admin edits to what customers pay, and the margin review they are checked against.

A price change applies to requests priced after it (the gateway's catalog snapshot refreshes
within seconds); every usage record keeps the price it ran at, so past usage never changes.
A change that would leave an enabled route losing money needs an explicit acknowledgement,
as in `catalog import`; both are audited.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlmodel import Session, col

from creditdash.accounts.audit import Actor, record
from creditdash.billing.money import format_credits
from creditdash.billing.pricing import Price, cost_micros, margin_basis_points
from creditdash.errors import NotFound, ValidationFailed
from creditdash.proxy.catalog import REFERENCE_MIX, MarginLine
from creditdash.proxy.models import Provider, PublicModel, Route
from creditdash.timeutil import utcnow


@dataclass(frozen=True)
class ModelPrice:
    name: str
    input_micros_per_mtok: int
    output_micros_per_mtok: int
    cached_input_micros_per_mtok: int
    request_fee_micros: int
    enabled: bool


def _price_of(model: PublicModel) -> Price:
    return Price(
        model.input_price_micros_per_mtok,
        model.output_price_micros_per_mtok,
        model.cached_input_price_micros_per_mtok,
        model.request_fee_micros,
    )


def _cost_of(route: Route) -> Price:
    return Price(
        route.input_cost_micros_per_mtok,
        route.output_cost_micros_per_mtok,
        route.cached_input_cost_micros_per_mtok,
        route.request_cost_micros,
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
        price = cost_micros(_price_of(model), REFERENCE_MIX)
        cost = cost_micros(_cost_of(route), REFERENCE_MIX)
        lines.append(
            MarginLine(
                model.name,
                provider.name,
                route.upstream_model,
                price,
                cost,
                margin_basis_points(price, cost),
            )
        )
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
    new_price = cost_micros(price, REFERENCE_MIX)
    lines = []
    for route, provider in routes:
        cost = cost_micros(_cost_of(route), REFERENCE_MIX)
        line = MarginLine(
            found.name,
            provider.name,
            route.upstream_model,
            new_price,
            cost,
            margin_basis_points(new_price, cost),
        )
        lines.append(line)
        if route.enabled and cost > new_price:
            if not acknowledge_loss:
                raise ValidationFailed(
                    f"at this price {provider.name}/{route.upstream_model} loses money "
                    f"(price {format_credits(new_price)} vs cost {format_credits(cost)} for "
                    "1,000 prompt + 500 completion tokens); acknowledge the loss to save it"
                )
            if route.negative_margin_acknowledged_at is None:
                route.negative_margin_acknowledged_at = utcnow()
                session.add(route)
    found.input_price_micros_per_mtok = price.input_micros_per_mtok
    found.output_price_micros_per_mtok = price.output_micros_per_mtok
    found.cached_input_price_micros_per_mtok = price.cached_input_micros_per_mtok
    found.request_fee_micros = price.request_fee_micros
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


def _describe(price: Price) -> dict[str, object]:
    return {
        "input_per_mtok": format_credits(price.input_micros_per_mtok),
        "output_per_mtok": format_credits(price.output_micros_per_mtok),
        "cached_input_per_mtok": format_credits(price.cached_input_micros_per_mtok),
        "per_request": format_credits(price.request_fee_micros),
    }


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
    if (
        min(
            cost.input_micros_per_mtok,
            cost.output_micros_per_mtok,
            cost.cached_input_micros_per_mtok,
            cost.request_fee_micros,
        )
        < 0
    ):
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
    price = cost_micros(_price_of(public), REFERENCE_MIX)
    new_cost = cost_micros(cost, REFERENCE_MIX)
    line = MarginLine(
        model, provider, upstream_model, price, new_cost, margin_basis_points(price, new_cost)
    )
    if enabled and new_cost > price:
        if not acknowledge_loss:
            raise ValidationFailed(
                f"{provider}/{upstream_model} would cost more than {model}'s price "
                f"({format_credits(new_cost)} vs {format_credits(price)}); acknowledge the loss"
            )
        route.negative_margin_acknowledged_at = route.negative_margin_acknowledged_at or utcnow()
    elif new_cost <= price:
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

    from creditdash.proxy.catalog import FAILURE_KINDS, CooldownSpec, FallbackSpec

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
