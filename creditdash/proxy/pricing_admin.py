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
