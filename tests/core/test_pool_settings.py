"""Pool sizes are settings (docs/deploy.md, "Pools"), and each reaches the pool it sizes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from creditdash.core import db, settings
from creditdash.core.settings import Settings
from creditdash.proxy.forwarding import Forwarder
from creditdash.proxy.routing import RoutePlanner
from creditdash.proxy.settlement import MeteringStore
from tests.conftest import free_port


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    for name in ("DB_POOL_SIZE", "DB_MAX_OVERFLOW", "DB_POOL_TIMEOUT_S", "DB_METERING_CONNECTIONS"):
        monkeypatch.delenv(f"CREDITDASH_{name}", raising=False)
    settings.reset_settings()
    yield monkeypatch
    settings.reset_settings()


def _postgres_url() -> str:
    return f"postgresql://ops:pw@127.0.0.1:{free_port()}/creditdash"  # never connected to


def test_the_database_pool_keeps_todays_sizes_by_default(env: pytest.MonkeyPatch) -> None:
    engine = db.make_engine(_postgres_url())
    assert (engine.pool.size(), engine.pool._max_overflow, engine.pool._timeout) == (10, 20, 30.0)  # type: ignore[attr-defined]
    engine.dispose()


def test_the_database_pool_settings_reach_the_engine(env: pytest.MonkeyPatch) -> None:
    env.setenv("CREDITDASH_DB_POOL_SIZE", "3")
    env.setenv("CREDITDASH_DB_MAX_OVERFLOW", "4")
    env.setenv("CREDITDASH_DB_POOL_TIMEOUT_S", "1.5")
    settings.reset_settings()
    engine = db.make_engine(_postgres_url())
    assert (engine.pool.size(), engine.pool._max_overflow, engine.pool._timeout) == (3, 4, 1.5)  # type: ignore[attr-defined]
    engine.dispose()
    # An explicit argument (the tests' NullPool engines, bench) still wins.
    explicit = db.make_engine(_postgres_url(), pool_size=2)
    assert explicit.pool.size() == 2
    explicit.dispose()


@pytest.mark.parametrize(
    ("name", "bad"),
    [("DB_POOL_SIZE", "0"), ("DB_MAX_OVERFLOW", "-1"), ("DB_POOL_TIMEOUT_S", "0"),
     ("DB_METERING_CONNECTIONS", "0"), ("UPSTREAM_MAX_CONNECTIONS", "0")],
)  # fmt: skip
def test_pool_sizes_out_of_range_are_refused(env: pytest.MonkeyPatch, name: str, bad: str) -> None:
    env.setenv(f"CREDITDASH_{name}", bad)
    with pytest.raises(ValidationError, match=name.lower()):
        Settings()


def test_more_idle_than_open_upstream_connections_is_refused() -> None:
    with pytest.raises(ValidationError, match="cannot exceed"):
        Settings(upstream_max_connections=5, upstream_max_idle_connections=6)


def test_metering_connections_on_postgresql_and_sqlite(
    env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    env.setenv("CREDITDASH_DB_METERING_CONNECTIONS", "3")
    settings.reset_settings()
    postgres = MeteringStore(db.make_engine(_postgres_url()))
    sqlite = MeteringStore(db.make_engine(f"sqlite:///{tmp_path}/x.db"))
    try:
        assert len(postgres.workers._threads) == 3
        assert len(sqlite.workers._threads) == 1  # SQLite takes one writer at a time anyway
    finally:
        postgres.workers.close()
        sqlite.workers.close()


def test_upstream_connection_limits_reach_both_clients() -> None:
    forwarder = Forwarder(
        Settings(upstream_max_connections=7, upstream_max_idle_connections=3), RoutePlanner()
    )

    async def pools() -> tuple[int, int, object]:
        pool = forwarder.pool()
        client = forwarder.client()
        limits = client._transport._pool  # type: ignore[attr-defined]
        try:
            return pool.max_connections, pool.max_idle, limits
        finally:
            await forwarder.aclose()

    most, idle, httpx_pool = asyncio.run(pools())
    assert (most, idle) == (7, 3)
    assert (httpx_pool._max_connections, httpx_pool._max_keepalive_connections) == (7, 3)  # type: ignore[attr-defined]


def test_upstream_defaults_are_todays() -> None:
    defaults = Settings()
    assert (defaults.upstream_max_connections, defaults.upstream_max_idle_connections) == (
        1000,
        200,
    )
    assert defaults.db_metering_connections == 2
