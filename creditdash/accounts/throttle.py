"""Sign-in back-off: after repeated failures an email, or a client address, is refused for a
while without its password being checked.

The rule lives here; where the counts are kept is a backend: Redis when one is configured
(shared by every process), otherwise this process's memory (bounded, least recently used
entries are dropped first).

For each key (an email, an address) failures are counted; the count is forgotten `window_s`
after the last failure or its lock ended. Once the count reaches the limit, each further failure
locks the key for base_lock_s, doubled for every failure beyond the limit, at most max_lock_s.
While locked, attempts are refused before the password is looked at, so guessing right during
a lock gets nowhere. A successful sign-in clears the email's count (not the address's: one
account of its own must not let an address go on guessing at others).
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache, partial
from typing import Protocol, TypeVar

from creditdash.core.errors import TooManyAttempts
from creditdash.core.settings import get_settings

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class Limit:
    failures: int
    window_s: float = 15 * 60
    base_lock_s: float = 60
    max_lock_s: float = 15 * 60

    def lock_s(self, count: int) -> float:
        """How long a key is locked after its count-th failure (0: not locked)."""
        if count < self.failures:
            return 0.0
        return float(min(self.max_lock_s, self.base_lock_s * 2 ** min(count - self.failures, 30)))


EMAIL_LIMIT = Limit(failures=5)
ADDRESS_LIMIT = Limit(failures=20)


class ThrottleBackend(Protocol):
    def locked_for(self, key: str) -> float:
        """Seconds the key stays locked (0 when it is not)."""

    def add_failure(self, key: str, limit: Limit) -> tuple[int, float]:
        """Count one failure; lock the key as the limit says. The new count and lock seconds."""

    def clear(self, key: str) -> None:
        """Forget the key's failures and lock."""


class MemoryBackend:
    """Counts in this process, for at most max_keys keys (the least recently used go first)."""

    def __init__(self, max_keys: int = 10_000, clock: Callable[[], float] = time.monotonic):
        self.max_keys = max_keys
        self.clock = clock
        # key -> (failures, count forgotten at, locked until)
        self._entries: OrderedDict[str, tuple[int, float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def _get(self, key: str, now: float) -> tuple[int, float, float] | None:
        entry = self._entries.get(key)
        if entry is not None and entry[1] <= now:
            del self._entries[key]
            return None
        if entry is not None:
            self._entries.move_to_end(key)
        return entry

    def locked_for(self, key: str) -> float:
        with self._lock:
            now = self.clock()
            entry = self._get(key, now)
            return max(0.0, entry[2] - now) if entry else 0.0

    def add_failure(self, key: str, limit: Limit) -> tuple[int, float]:
        with self._lock:
            now = self.clock()
            entry = self._get(key, now)
            count = (entry[0] if entry else 0) + 1
            lock_s = limit.lock_s(count)
            self._entries[key] = (count, now + lock_s + limit.window_s, now + lock_s)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_keys:
                self._entries.popitem(last=False)
            return count, lock_s

    def clear(self, key: str) -> None:
        with self._lock:
            self._entries.pop(key, None)


class RedisBackend:
    """Counts in Redis: a counter (INCR, then EXPIRE) and a lock key with a time to live."""

    PREFIX = "creditdash:signin:"

    def __init__(self, client: object) -> None:
        import redis

        assert isinstance(client, redis.Redis)
        self.client = client

    def locked_for(self, key: str) -> float:
        ttl_ms = int(self.client.pttl(f"{self.PREFIX}lock:{key}"))  # type: ignore[arg-type]
        return max(0.0, ttl_ms / 1000)

    def add_failure(self, key: str, limit: Limit) -> tuple[int, float]:
        count_key, lock_key = f"{self.PREFIX}count:{key}", f"{self.PREFIX}lock:{key}"
        count = int(self.client.incr(count_key))  # type: ignore[arg-type]
        lock_s = limit.lock_s(count)
        with self.client.pipeline(transaction=True) as pipe:
            pipe.expire(count_key, math.ceil(lock_s + limit.window_s))
            if lock_s > 0:
                pipe.set(lock_key, "1", px=int(lock_s * 1000))
            pipe.execute()
        return count, lock_s

    def clear(self, key: str) -> None:
        self.client.delete(f"{self.PREFIX}count:{key}", f"{self.PREFIX}lock:{key}")


def _locked_for(backend: ThrottleBackend, *, key: str) -> float:
    return backend.locked_for(key)


def _add_failure(backend: ThrottleBackend, *, key: str, limit: Limit) -> tuple[int, float]:
    return backend.add_failure(key, limit)


def _clear(backend: ThrottleBackend, *, key: str) -> None:
    backend.clear(key)


def _key(kind: str, value: str) -> str:
    """A fixed-length key that does not spell out the email or address."""
    return kind + ":" + hashlib.sha256(value.encode("utf-8")).hexdigest()[:32]


def refusal(seconds: float) -> TooManyAttempts:
    minutes = max(1, math.ceil(seconds / 60))
    unit = "minute" if minutes == 1 else "minutes"
    return TooManyAttempts(
        f"Too many failed sign-ins; try again in {minutes} {unit}.", retry_after_s=seconds
    )


class SignInThrottle:
    def __init__(
        self,
        backend: ThrottleBackend,
        *,
        email_limit: Limit = EMAIL_LIMIT,
        address_limit: Limit = ADDRESS_LIMIT,
        fallback: ThrottleBackend | None = None,
    ) -> None:
        self.backend = backend
        self.email_limit = email_limit
        self.address_limit = address_limit
        # Used while the shared backend is unreachable: each process then limits on its own,
        # which is looser but never leaves sign-in unlimited (or refused for everyone).
        self.fallback = fallback or MemoryBackend()

    def _use(self, action: Callable[[ThrottleBackend], T]) -> T:
        try:
            return action(self.backend)
        except Exception as exc:  # any store failure: count locally instead
            if self.backend is self.fallback:
                raise
            log.warning("sign-in throttle store failed (%s); counting in this process", exc)
            return action(self.fallback)

    def _keys(self, email: str, address: str) -> list[tuple[str, Limit]]:
        keys = [(_key("email", email), self.email_limit)]
        if address:
            keys.append((_key("address", address), self.address_limit))
        return keys

    def check(self, *, email: str, address: str) -> None:
        """Raise TooManyAttempts while the email or the address is locked."""
        wait = 0.0
        for key, _limit in self._keys(email, address):
            wait = max(wait, self._use(partial(_locked_for, key=key)))
        if wait > 0:
            raise refusal(wait)

    def failed(self, *, email: str, address: str) -> float:
        """Count a failure for both; the seconds the longer lock now lasts (0 when none)."""
        locked = 0.0
        for key, limit in self._keys(email, address):
            locked = max(locked, self._use(partial(_add_failure, key=key, limit=limit))[1])
        return locked

    def succeeded(self, *, email: str) -> None:
        self._use(partial(_clear, key=_key("email", email)))


@lru_cache(maxsize=1)
def get_throttle() -> SignInThrottle:
    """The process's throttle: Redis-backed when a Redis URL is configured."""
    url = get_settings().redis_url
    if not url:
        return SignInThrottle(MemoryBackend())
    import redis

    client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    return SignInThrottle(RedisBackend(client))
