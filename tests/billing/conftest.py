"""Fixtures for billing tests: the payments rig (tests/billing/shop.py), and a raw driver
connection for the gateway's hot transactions (billing/hotpath.py)."""

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from tests.billing.shop import fake_stripe, payments_server, shop, stripe_shop

__all__ = ["fake_stripe", "payments_server", "raw", "shop", "stripe_shop"]


@pytest.fixture
def raw(engine: Engine) -> Iterator[Any]:
    """The test database's DB-API connection, outside SQLAlchemy's pool (as dbworkers.py)."""
    pooled = engine.raw_connection()
    connection = pooled.driver_connection
    pooled.detach()
    yield connection
    pooled.close()
