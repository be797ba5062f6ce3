"""Sign-in back-off: the rule on both backends (process memory, and a real redis-server), and
the sign-in service on both databases: refusals without a password check, audit entries."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine

from creditdash.accounts import sessions, users
from creditdash.accounts.throttle import (
    MemoryBackend,
    RedisBackend,
    SignInThrottle,
    get_throttle,
)
from creditdash.core import db, settings
from creditdash.core.audit import AuditEntry
from creditdash.core.errors import AuthenticationFailed, TooManyAttempts
from tests.conftest import free_port

GOOD = "correct horse battery"
ADDRESS = "198.51.100.7"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["memory", "redis"])
def throttle(request: pytest.FixtureRequest) -> SignInThrottle:
    if request.param == "memory":
        return SignInThrottle(MemoryBackend(clock=Clock()))
    import redis

    client = redis.Redis.from_url(request.getfixturevalue("redis_url"))
    client.flushdb()
    return SignInThrottle(RedisBackend(client))


def _fail(throttle: SignInThrottle, times: int, email: str = "ana@example.com") -> list[float]:
    return [throttle.failed(email=email, address=ADDRESS) for _ in range(times)]


def test_five_failures_lock_the_email_and_the_lock_doubles(throttle: SignInThrottle) -> None:
    assert _fail(throttle, 4) == [0, 0, 0, 0]
    throttle.check(email="ana@example.com", address=ADDRESS)  # four are allowed
    assert _fail(throttle, 1) == [60]
    with pytest.raises(TooManyAttempts, match=r"^Too many failed sign-ins; try again in 1 minute"):
        throttle.check(email="ana@example.com", address=ADDRESS)
    # Each further failure doubles the lock, up to 15 minutes.
    assert _fail(throttle, 6) == [120, 240, 480, 900, 900, 900]
    with pytest.raises(TooManyAttempts, match="try again in 15 minutes"):
        throttle.check(email="ana@example.com", address="192.0.2.1")  # from anywhere
    throttle.check(email="bob@example.com", address="192.0.2.1")  # others are not locked


def test_a_success_clears_the_email_count(throttle: SignInThrottle) -> None:
    _fail(throttle, 4)
    throttle.succeeded(email="ana@example.com")
    assert _fail(throttle, 4) == [0, 0, 0, 0]
    throttle.check(email="ana@example.com", address=ADDRESS)


def test_twenty_failures_lock_the_address_for_every_email(throttle: SignInThrottle) -> None:
    for n in range(19):
        assert throttle.failed(email=f"user{n}@example.com", address=ADDRESS) == 0
    assert throttle.failed(email="user19@example.com", address=ADDRESS) == 60
    with pytest.raises(TooManyAttempts):
        throttle.check(email="someone-else@example.com", address=ADDRESS)
    throttle.check(email="someone-else@example.com", address="192.0.2.1")


def test_locks_and_counts_run_out_in_memory() -> None:
    clock = Clock()
    throttle = SignInThrottle(MemoryBackend(clock=clock))
    _fail(throttle, 5)
    clock.now += 59
    with pytest.raises(TooManyAttempts, match="1 minute"):
        throttle.check(email="ana@example.com", address=ADDRESS)
    clock.now += 2
    throttle.check(email="ana@example.com", address=ADDRESS)
    assert _fail(throttle, 1) == [120]  # still counted: the lock grows
    clock.now += 120 + 15 * 60 + 1  # the lock and then the window have passed
    assert _fail(throttle, 4) == [0, 0, 0, 0]


def test_memory_backend_is_bounded() -> None:
    backend = MemoryBackend(max_keys=3, clock=Clock())
    throttle = SignInThrottle(backend, address_limit=SignInThrottle(backend).email_limit)
    for n in range(10):
        throttle.failed(email=f"user{n}@example.com", address="")
    assert len(backend._entries) == 3


def test_redis_backend_shares_counts_and_locks_expire_in_redis(redis_url: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    one, two = SignInThrottle(RedisBackend(client)), SignInThrottle(RedisBackend(client))
    _fail(one, 3)
    _fail(two, 2)  # another process, the same counts
    with pytest.raises(TooManyAttempts):
        one.check(email="ana@example.com", address=ADDRESS)
    locks = [k for k in client.scan_iter("creditdash:signin:lock:*")]
    assert locks and all(0 < client.pttl(k) <= 60_000 for k in locks)
    assert all(b"ana" not in k for k in client.scan_iter("creditdash:signin:*"))
    assert all(client.ttl(k) > 0 for k in client.scan_iter("creditdash:signin:count:*"))


def test_an_unreachable_redis_falls_back_to_counting_in_the_process() -> None:
    import redis

    dead = redis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=1)
    throttle = SignInThrottle(RedisBackend(dead))
    _fail(throttle, 5)
    with pytest.raises(TooManyAttempts):
        throttle.check(email="ana@example.com", address=ADDRESS)


def test_the_redis_url_setting_picks_the_redis_backend(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CREDITDASH_REDIS_URL", raising=False)
    monkeypatch.setenv("REFLEX_REDIS_URL", redis_url)  # the dashboard's own, as a fallback
    settings.reset_settings()
    get_throttle.cache_clear()
    assert isinstance(get_throttle().backend, RedisBackend)
    monkeypatch.delenv("REFLEX_REDIS_URL")
    settings.reset_settings()
    get_throttle.cache_clear()
    assert isinstance(get_throttle().backend, MemoryBackend)
    settings.reset_settings()


# ------------------------------------------------------------------------ the sign-in service


def _sign_in(throttle: SignInThrottle, email: str, password: str) -> sessions.SignedInResult:
    return sessions.sign_in(
        email=email, password=password, ttl=timedelta(hours=1), address=ADDRESS, throttle=throttle
    )


def _audit(action: str) -> list[AuditEntry]:
    with db.session_scope(readonly=True) as session:
        return list(
            session.execute(select(AuditEntry).where(AuditEntry.action == action)).scalars()
        )


def test_sign_in_refuses_the_right_password_after_five_failures_and_audits(
    engine: Engine, throttle: SignInThrottle
) -> None:
    with db.session_scope() as session:
        users.create_user(session, email="ana@example.com", password=GOOD)
    for _ in range(5):
        with pytest.raises(AuthenticationFailed, match="Incorrect email or password"):
            _sign_in(throttle, "  ANA@example.com ", "a wrong guess")
    with pytest.raises(TooManyAttempts, match="Too many failed sign-ins; try again in 1 minute"):
        _sign_in(throttle, "ana@example.com", GOOD)
    # An unknown email is locked the same way, with the same words.
    for _ in range(5):
        with pytest.raises(AuthenticationFailed):
            _sign_in(throttle, "nobody@example.com", "a wrong guess")
    with pytest.raises(TooManyAttempts, match="Too many failed sign-ins; try again in 1 minute"):
        _sign_in(throttle, "nobody@example.com", "a wrong guess")

    failed, throttled = _audit("signin.failed"), _audit("signin.throttled")
    assert len(failed) == 10 and len(throttled) == 2
    first = json.loads(failed[0].after_json or "{}")
    assert first["email"] == "ana@example.com" and first["address"] == ADDRESS
    assert failed[0].actor_label == f"address:{ADDRESS}"
    assert json.loads(failed[4].after_json or "{}")["locked_s"] == 60
    for entry in failed + throttled:
        stored = (entry.after_json or "") + entry.actor_label + entry.target_id
        assert "wrong guess" not in stored and GOOD not in stored


def test_a_success_resets_the_count_for_the_account(engine: Engine) -> None:
    throttle = SignInThrottle(MemoryBackend(clock=Clock()))
    with db.session_scope() as session:
        users.create_user(session, email="ana@example.com", password=GOOD)
    for _round in range(3):
        for _ in range(4):
            with pytest.raises(AuthenticationFailed):
                _sign_in(throttle, "ana@example.com", "a wrong guess")
        assert _sign_in(throttle, "ana@example.com", GOOD).token
