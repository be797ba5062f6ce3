"""Per-key request-rate and concurrency limits, in this process or shared through Redis.

The gateway asks a `Limits` backend whether a key may start a request (`admit`: within its
requests per minute, and with one of its concurrent slots free; None, or the `Refusal`), and
tells it when an admitted request ended (`leave`).

- `LocalLimits` (no `CREDITDASH_REDIS_URL`): this process's memory, `KeyLimiter`. With several
  gateway processes each enforces the limits on its own share of the traffic.
- `RedisLimits` (limits_redis.py, with `CREDITDASH_REDIS_URL`): one exact sliding window and
  one set of concurrency leases per key in Redis, shared by every process. While Redis cannot
  be reached it falls back to a `KeyLimiter` of its own (fail open, per process) and logs it.

`limits_redis.key_limits` picks the backend from the settings.

The money limits (balance, credit limit, budgets) are enforced in the database and hold across
processes either way.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass
from typing import Protocol

from creditdash.core.settings import Settings

WINDOW_S = 60.0


@dataclass(frozen=True)
class Refusal:
    """Why a request was not admitted: the key's minute is full (rate, with the whole seconds
    until it frees a slot), or it has its limit in flight (concurrency)."""

    rate: bool
    retry_after_s: int | None = None


CONCURRENCY_REFUSAL = Refusal(rate=False)


class Limits(Protocol):
    async def admit(
        self, key_id: str, rpm_limit: int | None, concurrency_limit: int | None
    ) -> Refusal | None:
        """Count the request in the key's sliding minute and take one of its concurrency
        slots; None when both fit. A request the minute refuses is not counted; one refused
        for concurrency still is (it was made within the minute). None limits are unlimited."""

    def leave(self, key_id: str) -> None:
        """An admitted request ended: give its slot back (without awaiting anything)."""

    async def aclose(self) -> None:
        """Give back what this process holds and close connections."""


class KeyLimiter:
    def __init__(self) -> None:
        self._recent: dict[str, deque[float]] = {}
        self._in_flight: dict[str, int] = {}

    def allow_request(self, key_id: str, rpm_limit: int | None) -> bool:
        """Count a request in the sliding minute; False if it would pass the limit."""
        if rpm_limit is None:
            return True
        now = time.monotonic()
        window = self._recent.setdefault(key_id, deque())
        while window and window[0] <= now - WINDOW_S:
            window.popleft()
        if len(window) >= rpm_limit:
            return False
        window.append(now)
        return True

    def retry_after_s(self, key_id: str) -> int:
        """Whole seconds until the sliding minute frees a slot for the key (at least 1): when
        its oldest counted request leaves the window. Asked only after a refusal."""
        window = self._recent.get(key_id)
        if not window:
            return 1
        return seconds_until(window[0] + WINDOW_S, time.monotonic())

    def enter(self, key_id: str, concurrency_limit: int | None) -> bool:
        """Take a concurrency slot; False if the key already has its limit in flight."""
        current = self._in_flight.get(key_id, 0)
        if concurrency_limit is not None and current >= concurrency_limit:
            return False
        self._in_flight[key_id] = current + 1
        return True

    def leave(self, key_id: str) -> None:
        current = self._in_flight.get(key_id, 0)
        if current <= 1:
            self._in_flight.pop(key_id, None)
        else:
            self._in_flight[key_id] = current - 1


class LocalLimits:
    """The limits in this process's memory (the gateway's behaviour without Redis)."""

    def __init__(self, limiter: KeyLimiter | None = None) -> None:
        self.limiter = limiter or KeyLimiter()

    async def admit(
        self, key_id: str, rpm_limit: int | None, concurrency_limit: int | None
    ) -> Refusal | None:
        return admit_locally(self.limiter, key_id, rpm_limit, concurrency_limit)

    def leave(self, key_id: str) -> None:
        self.limiter.leave(key_id)

    async def aclose(self) -> None:
        return None


def admit_locally(
    limiter: KeyLimiter, key_id: str, rpm_limit: int | None, concurrency_limit: int | None
) -> Refusal | None:
    if not limiter.allow_request(key_id, rpm_limit):
        return Refusal(rate=True, retry_after_s=limiter.retry_after_s(key_id))
    if not limiter.enter(key_id, concurrency_limit):
        return CONCURRENCY_REFUSAL
    return None


def per_process_warning(settings: Settings, workers: int) -> str | None:
    """What to tell the operator who starts several gateway workers without Redis: each
    enforces a key's rate and concurrency limits alone, so a key gets up to workers times them."""
    if workers <= 1 or settings.redis_url:
        return None
    return (
        f"warning: {workers} gateway workers and no CREDITDASH_REDIS_URL: per-key rate and "
        "concurrency limits are per process (a key can get up to "
        f"{workers} times its limits); set CREDITDASH_REDIS_URL to share them"
    )


def seconds_until(moment: float, now: float) -> int:
    """A Retry-After value: the whole seconds from now to moment, rounded up, at least 1."""
    return max(1, math.ceil(moment - now))
