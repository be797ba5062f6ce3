"""Which route a request tries first, and which routes rest after failing.

The policy (priority, weight, cooldown) is process-local state and needs no gateway, so it is
one small object with an injectable random source and clock, testable on its own.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import Any

from creditdash.proxy.snapshot import ModelEntry, RouteTarget

log = logging.getLogger(__name__)


class RoutePlanner:
    """Route order and cooldowns for one process (a route's failures count per process)."""

    def __init__(
        self,
        choices: Callable[..., list[Any]] = random.choices,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # random.choices and time.monotonic, unless a test brings a seeded draw and its own clock.
        self._choices = choices
        self._clock = clock
        self._failures: dict[int, int] = {}
        self._resting_until: dict[int, float] = {}

    def ordered(self, model: ModelEntry) -> list[RouteTarget]:
        """Lower priority first; within a priority, a weighted random order. Routes resting
        after repeated failures go last, and only run when no other route is left."""
        ordered: list[RouteTarget] = []
        for priority in sorted({r.priority for r in model.routes}):
            group = [r for r in model.routes if r.priority == priority and r.weight > 0]
            if len(group) == 1:  # nothing to draw (the usual case)
                ordered.append(group[0])
                continue
            while group:
                pick = self._choices(group, weights=[r.weight for r in group])[0]
                ordered.append(pick)
                group.remove(pick)
        now = self._clock()
        ready = [r for r in ordered if self._resting_until.get(r.route_id, 0.0) <= now]
        return ready or ordered

    def failed(self, route: RouteTarget, model: ModelEntry) -> None:
        """Count a failure; the model's policy.cooldown_failures in a row rest the route."""
        failures = self._failures.get(route.route_id, 0) + 1
        if failures >= model.policy.cooldown_failures:
            self._resting_until[route.route_id] = self._clock() + model.policy.cooldown_s
            failures = 0
            log.warning("route %s of %s rests for %ss", route.route_id, model.name,
                        model.policy.cooldown_s)  # fmt: skip
        self._failures[route.route_id] = failures

    def succeeded(self, route: RouteTarget) -> None:
        self._failures[route.route_id] = 0

    def reset(self) -> None:
        """Forget all failures and cooldowns (a catalog reload in tests)."""
        self._failures.clear()
        self._resting_until.clear()


def failure_kind(status: int) -> str | None:
    """How an upstream status counts for fallback: None (use it), 429, 5xx, or route (the
    route is misconfigured: 401/403/404 mean our key or model name, 3xx is never followed)."""
    if status == 429:
        return "429"
    if status >= 500:
        return "5xx"
    if status in (401, 403, 404) or 300 <= status < 400:
        return "route"
    return None
