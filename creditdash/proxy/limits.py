"""Per-key request-rate and concurrency limits, kept in this process.

With several gateway processes each enforces the limit on its own share of traffic; the money
limits (balance, credit limit) are enforced in the database and hold across processes.
"""

from __future__ import annotations

import math
import time
from collections import deque

WINDOW_S = 60.0


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


def seconds_until(moment: float, now: float) -> int:
    """A Retry-After value: the whole seconds from now to moment, rounded up, at least 1."""
    return max(1, math.ceil(moment - now))
