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
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import httpx
import orjson
import pytest
from click.testing import CliRunner
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from creditdash.accounts.api_keys import KeyLimits, create_api_key
from creditdash.accounts.models import ApiKey
from creditdash.billing import budgets, health, key_caps
from creditdash.billing.models import UsageRecord
from creditdash.catalog.importer import import_catalog, parse_catalog
from creditdash.catalog.prices import Price, TokenUsage, cost_micros, worst_case_micros
from creditdash.core import db, settings
from creditdash.core.audit import CLI
from creditdash.core.settings import Settings
from creditdash.proxy import limits_redis
from creditdash.proxy.limits import LocalLimits, per_process_warning
from creditdash.proxy.limits_redis import RedisLimits, key_limits, limits_client
from creditdash.proxy.tokens import hold_prompt_tokens
from tests.conftest import RedisServer, _configure, free_port, stop_process_group, wait_for_port
from tests.factories import funded_customer
from tests.proxy.conftest import catalog_yaml
from tests.proxy.fake_upstream import FakeUpstream

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


async def rate(limits: RedisLimits, key: str, rpm: int | None) -> int | None:
    """Admit one request with only a rate limit: None, or its Retry-After seconds."""
    refused = await limits.admit(key, rpm, None)
    assert refused is None or refused.rate
    return None if refused is None else refused.retry_after_s


async def slot(limits: RedisLimits, key: str, concurrency: int | None) -> bool:
    """Admit one request with only a concurrency limit: whether it got a slot."""
    refused = await limits.admit(key, None, concurrency)
    assert refused is None or not refused.rate
    return refused is None


# ------------------------------------------------------------------------- the Redis backend


def test_the_window_is_exact_at_its_edges_and_shared(redis_url: str) -> None:
    clock, key = Clock(), new_key()

    async def body(make: Callable[..., RedisLimits]) -> None:
        one, two = make(clock=clock), make(clock=clock)
        start = clock.now
        assert await rate(one, key, 3) is None
        clock.now += 10
        assert await rate(two, key, 3) is None
        clock.now += 10
        assert await rate(one, key, 3) is None
        # Full, whichever process asks: the oldest leaves the window 40 s from now.
        assert await rate(two, key, 3) == 40
        clock.now = start + 59.999
        assert await rate(one, key, 3) == 1  # at least one second, rounded up
        # A request exactly one window old no longer counts (as in the process limiter).
        clock.now = start + 60.0
        assert await rate(two, key, 3) is None
        # Refused requests were not counted: the next slot frees when the 10 s one leaves.
        assert await rate(one, key, 3) == 10
        # Another key has its own window; no limit is never refused and asks nothing.
        assert await rate(one, new_key(), 3) is None
        assert await rate(one, key, None) is None

    run(redis_url, body)


def test_the_window_key_expires_after_the_window(redis_url: str) -> None:
    key = new_key()

    async def body(make: Callable[..., RedisLimits]) -> int:
        limits = make(window_s=60)
        assert await rate(limits, key, 5) is None
        return int(await limits.client.pttl(RedisLimits._keys(key)[0]))

    ttl_ms = run(redis_url, body)
    assert 59_000 < ttl_ms <= 60_000


def test_a_lease_counts_until_it_expires_or_is_given_back(redis_url: str) -> None:
    clock, key = Clock(), new_key()

    async def body(make: Callable[..., RedisLimits]) -> None:
        one, two = make(clock=clock, lease_ttl_s=2), make(clock=clock, lease_ttl_s=2)
        assert await slot(one, key, 2) and await slot(one, key, 2)
        assert not await slot(two, key, 2)
        clock.now += 1.999
        assert not await slot(two, key, 2)
        # Nobody renewed them (a process that died): at their expiry the slots are free.
        clock.now += 0.001
        assert await slot(two, key, 2) and await slot(two, key, 2)
        assert not await slot(one, key, 2)
        # Given back: free at once, in the other process too.
        two.leave(key)
        await asyncio.gather(*two._background)
        assert await slot(one, key, 2)
        assert not await slot(two, key, 2)
        # No limit: nothing in Redis, and leave is balanced.
        other = new_key()
        assert await slot(one, other, None)
        one.leave(other)
        assert await one.client.exists(RedisLimits._keys(other)[1]) == 0

    run(redis_url, body)


def test_a_renewed_lease_keeps_its_slot(redis_url: str) -> None:
    clock, key = Clock(), new_key()

    async def body(make: Callable[..., RedisLimits]) -> None:
        one, two = make(clock=clock, lease_ttl_s=3), make(clock=clock, lease_ttl_s=3)
        assert await slot(one, key, 1)
        clock.now += 2
        assert await one.renew_once() == 1
        clock.now += 2.5  # past the first expiry, not the renewed one
        assert not await slot(two, key, 1)
        clock.now += 0.5
        assert await slot(two, key, 1)
        # A lease that expired is not brought back by a late renewal: its slot is taken.
        assert await one.renew_once() == 0

    run(redis_url, body)


def test_the_renewer_keeps_a_long_request_s_slot_on_the_servers_clock(redis_url: str) -> None:
    key = new_key()

    async def body(make: Callable[..., RedisLimits]) -> None:
        one, two = make(lease_ttl_s=1.0), make(lease_ttl_s=1.0)
        assert await slot(one, key, 1)
        for _ in range(5):  # 2.5 s: the lease would have expired twice without renewals
            await asyncio.sleep(0.5)
            assert not await slot(two, key, 1)
        one.leave(key)
        await asyncio.gather(*one._background)
        assert await slot(two, key, 1)

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
            assert await rate(limits, key, 2) is None
            limits.leave(key)
            assert await slot(limits, key, 1)
            server.stop()  # Redis goes away with a request in flight
            with caplog.at_level(logging.WARNING, logger=limits_redis.__name__):
                # Fail open: the process's own limiter decides, and still limits.
                for _ in range(2):
                    assert await rate(limits, key, 2) is None
                    limits.leave(key)
                assert await rate(limits, key, 2) == 60
                assert await slot(limits, key, 1)
                assert not await slot(limits, key, 1)
                limits.leave(key)  # the local slot goes back to the local limiter
                assert await slot(limits, key, 1)
                limits.leave(key)
                limits.leave(key)  # the Redis lease: its removal fails and is only logged
                await asyncio.gather(*limits._background)
            warnings = [r.getMessage() for r in caplog.records]
            assert any("they are per process" in w for w in warnings), warnings
            assert limits.fallback._in_flight == {}

            # Redis back (empty, on the same port): after the retry delay it is used again.
            server.start()
            await asyncio.sleep(0.4)
            assert await slot(limits, key, 1)
            assert await limits.client.zcard(RedisLimits._keys(key)[1]) == 1
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


# ------------------------------------------------------------- two real gateway processes

# The fake upstream reports 11 prompt and 7 completion tokens, priced 1.00 and 2.00 credits per
# million tokens (tests/proxy/conftest.py).
PRICE = Price(1_000_000, 2_000_000, 500_000)
COST = cost_micros(PRICE, TokenUsage(prompt_tokens=11, completion_tokens=7))
SLOW_BODY = {"model": "slowok", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 100}
SLOW_HOLD = worst_case_micros(
    PRICE, prompt_tokens=hold_prompt_tokens(orjson.dumps(SLOW_BODY)), max_output_tokens=100
)
LEASE_TTL_S = 2


class Pair:
    """Two `creditdash gateway` processes on one database and one Redis."""

    def __init__(self, engine: Engine, env: dict[str, str], logs: Path) -> None:
        self.engine = engine
        self.env = env
        self.logs = logs
        self.processes: list[subprocess.Popen[bytes]] = []
        self.urls: list[str] = []

    def start(self) -> None:
        for name in "ab":
            port = free_port()
            self.processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "creditdash.cli", "gateway", "--port", str(port)],
                    env=self.env,
                    start_new_session=True,
                    stdout=subprocess.DEVNULL,
                    stderr=(self.logs / f"gateway-{name}.log").open("wb"),
                )
            )
            self.urls.append(f"http://127.0.0.1:{port}")
        for url in self.urls:
            wait_for_port(int(url.rsplit(":", 1)[1]), timeout_s=60)
        # One request on each, so that races start warm (catalog, connections, Redis scripts).
        _customer, key = self.new_key(KeyLimits(rpm=1000, concurrency=10))
        for client in self.clients(key, 2):
            assert _post(client, CHAT).status_code == 200
            client.close()

    def stop(self) -> None:
        for process in self.processes:
            stop_process_group(process)

    def log_text(self) -> str:
        return "\n".join(p.read_text() for p in sorted(self.logs.glob("gateway-*.log")))

    def new_key(self, limits: KeyLimits, credits_micros: int = 10**9) -> tuple[str, str]:
        who = funded_customer(self.engine, credits_micros=credits_micros, name="Shared")
        with db.session_scope(engine=self.engine) as session:
            _key, raw = create_api_key(
                session, customer_id=who.customer_id, name="shared", limits=limits
            )
        return who.customer_id, raw

    def clients(self, raw_key: str, n: int) -> list[httpx.Client]:
        return [
            httpx.Client(
                base_url=self.urls[i % 2],
                headers={"Authorization": f"Bearer {raw_key}"},
                timeout=30,
            )
            for i in range(n)
        ]


@pytest.fixture
def pair(
    request: pytest.FixtureRequest,
    postgres_url: str,
    redis_url: str,
    fake_upstream: FakeUpstream,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> Iterator[Pair]:
    monkeypatch.setenv("CREDITDASH_ALLOW_PRIVATE_UPSTREAMS", "1")
    monkeypatch.setenv("CREDITDASH_REDIS_URL", redis_url)
    # A short TTL for the tests that wait for leases to lapse; a test whose leases must never
    # lapse (a busy machine can delay a renewal past a short TTL) asks for a long one.
    marker = request.node.get_closest_marker("lease_ttl")
    ttl = marker.args[0] if marker is not None else LEASE_TTL_S
    monkeypatch.setenv("CREDITDASH_LIMIT_LEASE_TTL_S", str(ttl))
    engine = _configure(postgres_url, monkeypatch, tmp_path)
    with db.session_scope(engine=engine) as session:
        import_catalog(session, parse_catalog(catalog_yaml(fake_upstream.port)))
    pair = Pair(engine, dict(os.environ), tmp_path)
    try:
        pair.start()
        yield pair
    finally:
        pair.stop()
        db.set_engine(None)
        engine.dispose()
        settings.reset_settings()
    assert "Traceback" not in pair.log_text(), pair.log_text()


def _post(client: httpx.Client, body: dict[str, Any]) -> httpx.Response:
    return client.post("/v1/chat/completions", json=body)


def _race(clients: list[httpx.Client], per_client: int, body: dict[str, Any]) -> list[Any]:
    """Every client sends per_client requests one after another, all clients released together."""
    start = threading.Barrier(len(clients))

    def client_run(client: httpx.Client) -> list[httpx.Response]:
        start.wait()
        return [_post(client, body) for _ in range(per_client)]

    with ThreadPoolExecutor(len(clients)) as pool:
        answers = [a for batch in pool.map(client_run, clients) for a in batch]
    for client in clients:
        client.close()
    return answers


def _codes(answers: list[httpx.Response]) -> Counter[object]:
    return Counter(a.json()["error"]["code"] if a.status_code != 200 else 200 for a in answers)


def _quiet(upstream: FakeUpstream, timeout_s: float = 15) -> None:
    """Wait until no request of an earlier test is still at the upstream (it is shared by the
    whole session: a slow request whose client left can still be sleeping there), then start
    counting the most in flight from zero."""
    deadline = time.monotonic() + timeout_s
    while upstream.in_flight and time.monotonic() < deadline:
        time.sleep(0.05)
    assert upstream.in_flight == 0, upstream.in_flight
    upstream.max_in_flight = 0


CHAT = {"model": "chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 20}


@pytest.mark.postgres
def test_a_key_s_requests_per_minute_hold_across_two_processes(
    pair: Pair, fake_upstream: FakeUpstream
) -> None:
    _customer, key = pair.new_key(KeyLimits(rpm=30))
    before = fake_upstream.count("echo")
    answers = _race(pair.clients(key, 20), 10, CHAT)  # 200 requests, 100 on each process
    assert _codes(answers) == {200: 30, "rate_limit_exceeded": 170}, _codes(answers)
    refused = [a for a in answers if a.status_code == 429]
    # Retry-After: the whole seconds until the first of the 30 leaves the minute.
    assert all(1 <= int(a.headers["retry-after"]) <= 60 for a in refused)
    assert fake_upstream.count("echo") - before == 30
    for url in pair.urls:  # both processes admitted some: the window really was shared
        served = [a for a in answers if a.status_code == 200 and str(a.url).startswith(url)]
        assert served, url


@pytest.mark.postgres
@pytest.mark.lease_ttl(30)
def test_a_key_s_concurrency_holds_across_two_processes(
    pair: Pair, fake_upstream: FakeUpstream
) -> None:
    _customer, key = pair.new_key(KeyLimits(concurrency=4))
    _quiet(fake_upstream)
    # 24 clients at once, 3 rounds each, against an upstream that takes 1 s to answer.
    answers = _race(pair.clients(key, 24), 3, SLOW_BODY)
    codes = _codes(answers)
    assert set(codes) == {200, "concurrency_limit_exceeded"}, codes
    assert fake_upstream.max_in_flight == 4, fake_upstream.max_in_flight
    assert codes[200] >= 4
    refused = [a for a in answers if a.status_code == 429]
    assert all(a.headers["retry-after"] == "1" for a in refused)


@pytest.mark.postgres
def test_a_hard_budget_hit_from_two_processes_is_never_exceeded(
    pair: Pair, fake_upstream: FakeUpstream
) -> None:
    customer, key = pair.new_key(KeyLimits(), credits_micros=100 * SLOW_HOLD)
    budget = 3 * SLOW_HOLD + SLOW_HOLD // 2  # three worst cases fit at once, far below the balance
    with db.session_scope(engine=pair.engine) as session:
        budgets.set_budget(session, customer_id=customer, monthly_micros=budget, hard=True,
                           thresholds=[], actor=CLI)  # fmt: skip
    _quiet(fake_upstream)
    raced = _codes(_race(pair.clients(key, 30), 2, SLOW_BODY))
    assert set(raced) == {200, "budget_exceeded"}, raced
    # Three holds fill the budget: never more than three requests of it ran at once.
    assert fake_upstream.max_in_flight <= 3
    # Then one at a time, alternating processes, until the budget refuses the next worst case.
    admitted = raced[200]
    clients = pair.clients(key, 2)
    while (answer := _post(clients[admitted % 2], SLOW_BODY)).status_code == 200:
        admitted += 1
    assert answer.json()["error"]["code"] == "budget_exceeded"
    for client in clients:
        client.close()
    with db.session_scope(engine=pair.engine, readonly=True) as session:
        charged = session.execute(
            select(func.coalesce(func.sum(UsageRecord.price_micros), 0)).where(
                UsageRecord.customer_id == customer  # type: ignore[arg-type]
            )
        ).scalar_one()
    # To the micro: every admitted request charged once, the total never past the budget, and
    # the budget really reached (one more worst case would have passed it).
    assert charged == admitted * COST <= budget < admitted * COST + SLOW_HOLD


@pytest.mark.postgres
def test_a_key_s_spend_cap_hit_from_two_processes_is_never_exceeded(
    pair: Pair, fake_upstream: FakeUpstream
) -> None:
    cap = 3 * SLOW_HOLD + SLOW_HOLD // 2  # three worst cases fit at once, far below the balance
    customer, key = pair.new_key(
        KeyLimits(monthly_spend_cap_micros=cap), credits_micros=100 * SLOW_HOLD
    )
    _quiet(fake_upstream)
    raced = _codes(_race(pair.clients(key, 30), 2, SLOW_BODY))
    assert set(raced) == {200, "spend_cap_reached"}, raced
    # The cap is counted in the database with each hold: three holds fill it, whichever
    # process placed them (it was a per-process count before billing/key_caps.py).
    assert fake_upstream.max_in_flight <= 3
    admitted = raced[200]
    clients = pair.clients(key, 2)
    while (answer := _post(clients[admitted % 2], SLOW_BODY)).status_code == 200:
        admitted += 1
    assert answer.status_code == 429
    assert answer.json()["error"]["code"] == "spend_cap_reached"
    for client in clients:
        client.close()
    with db.session_scope(engine=pair.engine, readonly=True) as session:
        key_id = session.execute(
            select(ApiKey.id).where(ApiKey.customer_id == customer)  # type: ignore[arg-type]
        ).scalar_one()
        charged = session.execute(
            select(func.coalesce(func.sum(UsageRecord.price_micros), 0)).where(
                UsageRecord.api_key_id == key_id  # type: ignore[arg-type]
            )
        ).scalar_one()
        spent, held = key_caps.spent_and_held(session, str(key_id))
        assert health.check(session) == []
    # To the micro, as for the budget: each admitted request charged once, never past the cap.
    assert charged == admitted * COST == spent <= cap < admitted * COST + SLOW_HOLD
    assert held == 0


@pytest.mark.postgres
def test_slots_of_a_killed_process_come_free_within_the_lease_ttl(
    pair: Pair, fake_upstream: FakeUpstream
) -> None:
    _customer, key = pair.new_key(KeyLimits(concurrency=4))
    slow = {**SLOW_BODY, "model": "slow3s"}
    seen = fake_upstream.count("slow-3s")
    held = pair.clients(key, 4)
    for client in held:
        client.base_url = httpx.URL(pair.urls[0])  # all four on process a
    with ThreadPoolExecutor(4) as pool:
        running = [pool.submit(_post, client, slow) for client in held]
        deadline = time.monotonic() + 10
        while fake_upstream.count("slow-3s") - seen < 4:
            assert time.monotonic() < deadline, "the four requests did not reach the upstream"
            time.sleep(0.02)
        other = pair.clients(key, 2)[1]  # process b
        assert other.base_url == httpx.URL(pair.urls[1])
        refused = _post(other, CHAT)
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "concurrency_limit_exceeded"
        os.killpg(pair.processes[0].pid, signal.SIGKILL)
        killed = time.monotonic()
        pair.processes[0].wait()
        # Right after the kill the leases are still there: b still refuses.
        assert _post(other, CHAT).status_code == 429
        while (answer := _post(other, CHAT)).status_code != 200:
            assert answer.json()["error"]["code"] == "concurrency_limit_exceeded"
            assert time.monotonic() - killed < LEASE_TTL_S + 1.5, "slots still taken"
            time.sleep(0.1)
        freed_after_s = time.monotonic() - killed
        for future in running:
            with pytest.raises(httpx.HTTPError):  # process a died under them
                future.result()
    assert freed_after_s <= LEASE_TTL_S + 1.5
    other.close()
    for client in held:
        client.close()


@pytest.mark.postgres
def test_long_streams_keep_their_slots_past_the_lease_ttl_and_give_them_back(
    pair: Pair, fake_upstream: FakeUpstream
) -> None:
    _customer, key = pair.new_key(KeyLimits(concurrency=2))
    stream = {**CHAT, "model": "slow", "stream": True}  # about 8 s of chunks

    def read_stream(client: httpx.Client) -> str:
        with client.stream("POST", "/v1/chat/completions", json=stream) as answer:
            assert answer.status_code == 200
            return "".join(answer.iter_text())

    streams = pair.clients(key, 2)
    for client in streams:
        client.base_url = httpx.URL(pair.urls[0])
    other = pair.clients(key, 2)[1]
    before = fake_upstream.count("slow-stream")
    with ThreadPoolExecutor(2) as pool:
        running = [pool.submit(read_stream, client) for client in streams]
        deadline = time.monotonic() + 10
        while fake_upstream.count("slow-stream") - before < 2:  # both admitted and upstream
            assert time.monotonic() < deadline, "the streams did not reach the upstream"
            time.sleep(0.02)
        started = time.monotonic()
        # Well past the lease TTL (2 s) the streams still hold both slots: process a renews.
        while time.monotonic() - started < 3 * LEASE_TTL_S:
            answer = _post(other, CHAT)
            assert answer.status_code == 429, answer.text
            assert answer.json()["error"]["code"] == "concurrency_limit_exceeded"
            time.sleep(0.25)
        texts = [future.result() for future in running]
    assert all(text.rstrip().endswith("data: [DONE]") for text in texts)
    # Ended: both slots are given back as the streams end (within moments of their last byte),
    # well before their leases, renewed at most TTL/3 ago, would expire.
    ended = time.monotonic()
    for _slot in range(2):  # each request ends before the next: one free slot is enough...
        while _post(other, CHAT).status_code != 200:
            assert time.monotonic() - ended < 1.0, "a stream's slot was not given back"
            time.sleep(0.02)
    # ...so to see both free, hold one with a slow request while asking for the other.
    with ThreadPoolExecutor(1) as pool:
        holding = pool.submit(_post, pair.clients(key, 1)[0], SLOW_BODY)
        deadline = time.monotonic() + 5
        while fake_upstream.in_flight == 0:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert _post(other, CHAT).status_code == 200
        assert holding.result().status_code == 200
    other.close()
    for client in streams:
        client.close()
