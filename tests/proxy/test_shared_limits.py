"""Per-key limits shared across gateway processes through Redis (proxy/limits_redis.py).

First the backend on its own against a real redis-server: the sliding window's edges and its
Retry-After, leases that expire and are renewed, and what happens while Redis is down. Then two
real `creditdash gateway` processes on one PostgreSQL and one Redis in front of the fake
upstream: a key's requests per minute and its concurrency hold across both, a hard budget too,
and the slots of a process killed with SIGKILL come free when their leases expire.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from click.testing import CliRunner
from sqlalchemy.engine import Engine

from creditdash.core import settings
from creditdash.core.settings import Settings
from creditdash.proxy import limits_redis
from creditdash.proxy.limits import LocalLimits, key_limits, per_process_warning
from creditdash.proxy.limits_redis import RedisLimits, limits_client
from tests.conftest import RedisServer

T = TypeVar("T")


class Clock:
    """Seconds, moved by hand (the backend then sends them instead of Redis's own time)."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def run(redis_url: str, body: Callable[[Callable[..., RedisLimits]], Awaitable[T]]) -> T:
    """Run body in a fresh event loop with a factory of backends on redis_url (each one is
    like another gateway process); they are closed afterwards."""

    async def main() -> T:
        made: list[RedisLimits] = []

        def make(**options: Any) -> RedisLimits:
            limits = RedisLimits(limits_client(redis_url), **options)
            made.append(limits)
            return limits

        try:
            return await body(make)
        finally:
            for limits in made:
                await limits.aclose()

    return asyncio.run(main())


def new_key() -> str:
    return f"key_{os.urandom(6).hex()}"


# ------------------------------------------------------------------------- the Redis backend


def test_the_window_is_exact_at_its_edges_and_shared(redis_url: str) -> None:
    clock, key = Clock(), new_key()

    async def body(make: Callable[..., RedisLimits]) -> None:
        one, two = make(clock=clock), make(clock=clock)
        start = clock.now
        assert await one.rate_wait(key, 3) is None
        clock.now += 10
        assert await two.rate_wait(key, 3) is None
        clock.now += 10
        assert await one.rate_wait(key, 3) is None
        # Full, whichever process asks: the oldest leaves the window 40 s from now.
        assert await two.rate_wait(key, 3) == 40
        clock.now = start + 59.999
        assert await one.rate_wait(key, 3) == 1  # at least one second, rounded up
        # A request exactly one window old no longer counts (as in the process limiter).
        clock.now = start + 60.0
        assert await two.rate_wait(key, 3) is None
        # Refused requests were not counted: the next slot frees when the 10 s one leaves.
        assert await one.rate_wait(key, 3) == 10
        # Another key has its own window; no limit is never refused and asks nothing.
        assert await one.rate_wait(new_key(), 3) is None
        assert await one.rate_wait(key, None) is None

    run(redis_url, body)


def test_the_window_key_expires_after_the_window(redis_url: str) -> None:
    key = new_key()

    async def body(make: Callable[..., RedisLimits]) -> int:
        limits = make(window_s=60)
        assert await limits.rate_wait(key, 5) is None
        return int(await limits.client.pttl(f"{limits_redis.PREFIX}rpm:{key}"))

    ttl_ms = run(redis_url, body)
    assert 59_000 < ttl_ms <= 60_000


def test_a_lease_counts_until_it_expires_or_is_given_back(redis_url: str) -> None:
    clock, key = Clock(), new_key()

    async def body(make: Callable[..., RedisLimits]) -> None:
        one, two = make(clock=clock, lease_ttl_s=2), make(clock=clock, lease_ttl_s=2)
        assert await one.enter(key, 2) and await one.enter(key, 2)
        assert not await two.enter(key, 2)
        clock.now += 1.999
        assert not await two.enter(key, 2)
        # Nobody renewed them (a process that died): at their expiry the slots are free.
        clock.now += 0.001
        assert await two.enter(key, 2) and await two.enter(key, 2)
        assert not await one.enter(key, 2)
        # Given back: free at once, in the other process too.
        two.leave(key)
        await asyncio.gather(*two._background)
        assert await one.enter(key, 2)
        assert not await two.enter(key, 2)
        # No limit: nothing in Redis, and leave is balanced.
        other = new_key()
        assert await one.enter(other, None)
        one.leave(other)
        assert await one.client.exists(f"{limits_redis.PREFIX}lease:{other}") == 0

    run(redis_url, body)


def test_a_renewed_lease_keeps_its_slot(redis_url: str) -> None:
    clock, key = Clock(), new_key()

    async def body(make: Callable[..., RedisLimits]) -> None:
        one, two = make(clock=clock, lease_ttl_s=3), make(clock=clock, lease_ttl_s=3)
        assert await one.enter(key, 1)
        clock.now += 2
        assert await one.renew_once() == 1
        clock.now += 2.5  # past the first expiry, not the renewed one
        assert not await two.enter(key, 1)
        clock.now += 0.5
        assert await two.enter(key, 1)
        # A lease that expired is not brought back by a late renewal: its slot is taken.
        assert await one.renew_once() == 0

    run(redis_url, body)


def test_the_renewer_keeps_a_long_request_s_slot_on_the_servers_clock(redis_url: str) -> None:
    key = new_key()

    async def body(make: Callable[..., RedisLimits]) -> None:
        one, two = make(lease_ttl_s=1.0), make(lease_ttl_s=1.0)
        assert await one.enter(key, 1)
        for _ in range(5):  # 2.5 s: the lease would have expired twice without renewals
            await asyncio.sleep(0.5)
            assert not await two.enter(key, 1)
        one.leave(key)
        await asyncio.gather(*one._background)
        assert await two.enter(key, 1)

    run(redis_url, body)


def test_redis_down_mid_run_falls_back_to_per_process_limits_and_comes_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    server = RedisServer(tmp_path)
    server.start()
    monkeypatch.setattr(limits_redis, "RETRY_AFTER_S", 0.3)
    key = new_key()

    async def body() -> None:
        limits = RedisLimits(limits_client(server.url), lease_ttl_s=5)
        try:
            assert await limits.rate_wait(key, 2) is None
            assert await limits.enter(key, 1)
            server.stop()  # Redis goes away with a request in flight
            with caplog.at_level(logging.WARNING, logger=limits_redis.__name__):
                # Fail open: the process's own limiter decides, and still limits.
                assert await limits.rate_wait(key, 2) is None
                assert await limits.rate_wait(key, 2) is None
                assert await limits.rate_wait(key, 2) == 60
                assert await limits.enter(key, 1)
                assert not await limits.enter(key, 1)
                limits.leave(key)  # the local slot goes back to the local limiter
                assert await limits.enter(key, 1)
                limits.leave(key)
                limits.leave(key)  # the Redis lease: its removal fails and is only logged
                await asyncio.gather(*limits._background)
            warnings = [r.getMessage() for r in caplog.records]
            assert any("limits are per process" in w for w in warnings), warnings
            assert limits.fallback._in_flight == {}

            # Redis back (empty, on the same port): after the retry delay it is used again.
            server.start()
            await asyncio.sleep(0.4)
            assert await limits.enter(key, 1)
            assert await limits.client.zcard(f"{limits_redis.PREFIX}lease:{key}") == 1
        finally:
            await limits.aclose()
            server.stop()

    asyncio.run(body())


def shared_settings(redis_url: str, **fields: object) -> Settings:
    return Settings.model_validate({"CREDITDASH_REDIS_URL": redis_url, **fields})


def test_the_settings_pick_the_backend(redis_url: str) -> None:
    assert isinstance(key_limits(shared_settings("")), LocalLimits)
    shared = key_limits(shared_settings(redis_url, limit_lease_ttl_s=7))
    assert isinstance(shared, RedisLimits) and shared.lease_ttl_s == 7
    asyncio.run(shared.aclose())
    with pytest.raises(ValueError, match="limit_lease_ttl_s"):
        Settings(limit_lease_ttl_s=0)


def test_several_workers_without_redis_warn_once_at_start(
    sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert per_process_warning(shared_settings(""), 1) is None
    assert per_process_warning(shared_settings("redis://127.0.0.1:1/0"), 4) is None
    import uvicorn

    from creditdash.cli import main as cli

    started: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda *_a, **options: started.append(options))
    monkeypatch.delenv("CREDITDASH_REDIS_URL", raising=False)
    monkeypatch.delenv("REFLEX_REDIS_URL", raising=False)
    settings.reset_settings()
    result = CliRunner().invoke(cli, ["gateway", "--workers", "3"])
    assert result.exit_code == 0, result.output
    assert started and started[0]["workers"] == 3
    assert result.stderr.count("per-key rate and concurrency limits are per process") == 1
    assert "3 gateway workers and no CREDITDASH_REDIS_URL" in result.stderr
    one = CliRunner().invoke(cli, ["gateway", "--workers", "1"])
    assert one.exit_code == 0 and "per process" not in one.stderr

    monkeypatch.setenv("CREDITDASH_REDIS_URL", "redis://127.0.0.1:1/0")
    settings.reset_settings()
    shared = CliRunner().invoke(cli, ["gateway", "--workers", "3"])
    assert shared.exit_code == 0 and "per process" not in shared.stderr
