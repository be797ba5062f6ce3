"""Route and fallback edits from the admin UI: the same margin review and validation as import."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine

from creditdash.catalog import pricing
from creditdash.catalog.importer import import_catalog, parse_catalog
from creditdash.catalog.models import PublicModel, Route
from creditdash.catalog.prices import Price
from creditdash.core import db
from creditdash.core.audit import Actor
from creditdash.core.errors import NotFound, ValidationFailed
from creditdash.demo import DEMO_CATALOG

ADMIN = Actor(label="admin-test")


@pytest.fixture
def catalog(sqlite_engine: Engine) -> None:
    with db.session_scope() as session:
        import_catalog(session, parse_catalog(DEMO_CATALOG))


def _set(cost: Price, **kw: object) -> object:
    with db.session_scope() as session:
        return pricing.set_route(
            session,
            model="gpt-4o-mini",
            provider="sandbox",
            upstream_model="sandbox-chat",
            priority=2,
            weight=3,
            enabled=True,
            cost=cost,
            actor=ADMIN,
            **kw,
        )  # type: ignore[arg-type]


def test_route_cost_edits_pass_the_margin_review(catalog: None) -> None:
    with pytest.raises(ValidationFailed, match="acknowledge the loss"):
        _set(Price(5_000_000, 9_000_000, 1_000_000))
    _set(Price(5_000_000, 9_000_000, 1_000_000), acknowledge_loss=True)
    with db.session_scope(readonly=True) as session:
        route = (
            session.execute(
                select(Route).where(Route.upstream_model == "sandbox-chat").order_by(Route.id)
            )
            .scalars()
            .first()
        )
        assert route is not None and route.negative_margin_acknowledged_at is not None
        lines = {
            (m.model, m.margin_bps is not None and m.margin_bps < 0)
            for m in pricing.margins(session)
        }
    assert ("gpt-4o-mini", True) in lines
    _set(Price(100_000, 200_000, 50_000))
    with db.session_scope(readonly=True) as session:
        views = [r for r in pricing.list_routes(session) if r.model == "gpt-4o-mini"]
    assert [(v.priority, v.weight, v.cost.input_micros_per_mtok) for v in views] == [
        (2, 3, 100_000)
    ]
    with db.session_scope() as session, pytest.raises(NotFound):
        pricing.set_route(
            session,
            model="gpt-4o-mini",
            provider="sandbox",
            upstream_model="nope",
            priority=1,
            weight=1,
            enabled=True,
            cost=Price(0, 0, 0),
            actor=ADMIN,
        )


def test_fallback_policy_is_validated(catalog: None) -> None:
    with db.session_scope() as session, pytest.raises(ValidationFailed, match="unknown failure"):
        pricing.set_fallback(
            session,
            model="gpt-4o-mini",
            fall_through=["4xx"],
            max_attempts=2,
            attempt_timeout_s=None,
            cooldown_failures=3,
            cooldown_s=30,
            actor=ADMIN,
        )
    with db.session_scope() as session, pytest.raises(ValidationFailed):
        pricing.set_fallback(
            session,
            model="gpt-4o-mini",
            fall_through=["timeout"],
            max_attempts=99,
            attempt_timeout_s=None,
            cooldown_failures=3,
            cooldown_s=30,
            actor=ADMIN,
        )
    with db.session_scope() as session:
        pricing.set_fallback(
            session,
            model="gpt-4o-mini",
            fall_through=["5xx", "timeout"],
            max_attempts=2,
            attempt_timeout_s=20,
            cooldown_failures=5,
            cooldown_s=60,
            actor=ADMIN,
        )
    with db.session_scope(readonly=True) as session:
        model = session.execute(
            select(PublicModel).where(PublicModel.name == "gpt-4o-mini")
        ).scalar_one()
    assert (
        model.fallback_on,
        model.max_attempts,
        model.attempt_timeout_s,
        model.cooldown_failures,
        model.cooldown_s,
    ) == ("timeout,5xx", 2, 20, 5, 60)


def test_a_route_cost_losing_only_on_cache_reads_needs_the_acknowledgement(catalog: None) -> None:
    # Cheap plain traffic, but cache reads dearer than the model sells them for.
    with pytest.raises(ValidationFailed, match="900 read from cache"):
        _set(Price(100_000, 200_000, 5_000_000))
    _set(Price(100_000, 200_000, 5_000_000), acknowledge_loss=True)
    with db.session_scope(readonly=True) as session:
        line = next(m for m in pricing.margins(session) if m.upstream_model == "sandbox-chat")
    assert line.losing and line.margin_bps is not None and line.margin_bps > 0
