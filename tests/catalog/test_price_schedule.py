"""Prices scheduled for a future time: reviewed when set, applied once when due, never
changing what earlier requests were charged."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine

from creditdash.catalog import pricing
from creditdash.catalog.importer import import_catalog, parse_catalog
from creditdash.catalog.models import PublicModel
from creditdash.catalog.prices import Price
from creditdash.core import db
from creditdash.core.audit import Actor
from creditdash.core.errors import ValidationFailed
from creditdash.core.timeutil import utcnow
from creditdash.demo import DEMO_CATALOG

ADMIN = Actor(label="admin-test")


def _input_price(model: str = "gpt-4o-mini") -> int:
    with db.session_scope(readonly=True) as session:
        return session.execute(
            select(PublicModel.input_price_micros_per_mtok).where(PublicModel.name == model)
        ).scalar_one()


def test_a_scheduled_price_applies_once_when_due(engine: Engine) -> None:
    with db.session_scope() as session:
        import_catalog(session, parse_catalog(DEMO_CATALOG))
    at = utcnow() + timedelta(hours=1)
    with db.session_scope() as session:
        pricing.schedule_price(
            session,
            model="gpt-4o-mini",
            price=Price(900_000, 3_000_000, 450_000),
            effective_at=at,
            actor=ADMIN,
        )
    assert _input_price() == 600_000  # nothing changes before its time
    with db.session_scope() as session:
        assert pricing.apply_due_schedules(session) == 0
        assert pricing.apply_due_schedules(session, now=at + timedelta(seconds=1)) == 1
    assert _input_price() == 900_000
    with db.session_scope() as session:
        assert pricing.apply_due_schedules(session, now=at + timedelta(minutes=5)) == 0
        [view] = pricing.list_schedules(session)
    assert view.status == "applied"


def test_schedules_are_reviewed_and_cancellable(engine: Engine) -> None:
    with db.session_scope() as session:
        import_catalog(session, parse_catalog(DEMO_CATALOG))
    at = utcnow() + timedelta(days=1)
    with db.session_scope() as session, pytest.raises(ValidationFailed, match="loses money"):
        pricing.schedule_price(
            session, model="gpt-4o-mini", price=Price(1, 1, 1), effective_at=at, actor=ADMIN
        )
    with db.session_scope() as session, pytest.raises(ValidationFailed, match="future"):
        pricing.schedule_price(
            session,
            model="gpt-4o-mini",
            price=Price(900_000, 3_000_000, 450_000),
            effective_at=utcnow() - timedelta(minutes=1),
            actor=ADMIN,
        )
    with db.session_scope() as session:
        view = pricing.schedule_price(
            session,
            model="gpt-4o-mini",
            price=Price(900_000, 3_000_000, 450_000),
            effective_at=at,
            actor=ADMIN,
        )
        pricing.cancel_schedule(session, schedule_id=view.id, actor=ADMIN)
    with db.session_scope() as session:
        assert pricing.apply_due_schedules(session, now=at + timedelta(hours=1)) == 0
    assert _input_price() == 600_000
