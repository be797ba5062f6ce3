"""RoutePlanner on its own: priority and weight order, cooldowns, failure kinds."""

from __future__ import annotations

import random
from collections import Counter

from creditdash.catalog.prices import Price
from creditdash.proxy.routing import RoutePlanner, failure_kind
from creditdash.proxy.snapshot import FallbackPolicy, ModelEntry, RouteTarget

PRICE = Price(input_micros_per_mtok=1, output_micros_per_mtok=1, cached_input_micros_per_mtok=1)


def _route(route_id: int, priority: int = 0, weight: int = 1) -> RouteTarget:
    return RouteTarget(
        route_id=route_id,
        provider_name=f"p{route_id}",
        provider_kind="openai",
        base_url="http://127.0.0.1:9/v1",
        api_key="",
        timeout_s=1,
        extra_headers={},
        upstream_model=f"m{route_id}",
        priority=priority,
        weight=weight,
        cost=PRICE,
    )


def _model(*routes: RouteTarget, failures: int = 2, cooldown_s: int = 30) -> ModelEntry:
    policy = FallbackPolicy(cooldown_failures=failures, cooldown_s=cooldown_s)
    return ModelEntry("chat", PRICE, 100, routes, 0, policy=policy)


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _ids(routes: list[RouteTarget]) -> list[int]:
    return [r.route_id for r in routes]


def test_lower_priority_first_and_zero_weight_never() -> None:
    planner = RoutePlanner()
    model = _model(_route(1, priority=2), _route(2, priority=1), _route(3, priority=1, weight=0))
    assert _ids(planner.ordered(model)) == [2, 1]


def test_within_a_priority_the_weights_decide_who_goes_first() -> None:
    planner = RoutePlanner(choices=random.Random(7).choices)
    model = _model(_route(1, weight=9), _route(2, weight=1))
    firsts = Counter(planner.ordered(model)[0].route_id for _ in range(1000))
    assert firsts[1] > 800 and firsts[2] > 50
    assert all(sorted(_ids(planner.ordered(model))) == [1, 2] for _ in range(20))


def test_a_route_rests_after_its_failures_and_comes_back_after_the_cooldown() -> None:
    clock = _Clock()
    planner = RoutePlanner(clock=clock)
    first, second = _route(1, priority=0), _route(2, priority=1)
    model = _model(first, second, failures=2, cooldown_s=30)
    planner.failed(first, model)
    assert _ids(planner.ordered(model)) == [1, 2]  # one failure: not yet resting
    planner.failed(first, model)
    assert _ids(planner.ordered(model)) == [2]  # resting routes go only when none is left
    clock.now += 30
    assert _ids(planner.ordered(model)) == [1, 2]


def test_a_success_resets_the_failure_count() -> None:
    planner = RoutePlanner(clock=_Clock())
    first, second = _route(1, priority=0), _route(2, priority=1)
    model = _model(first, second, failures=2)
    planner.failed(first, model)
    planner.succeeded(first)
    planner.failed(first, model)
    assert _ids(planner.ordered(model)) == [1, 2]


def test_when_every_route_rests_all_of_them_still_run() -> None:
    planner = RoutePlanner(clock=_Clock())
    only = _route(1)
    model = _model(only, failures=1)
    planner.failed(only, model)
    assert _ids(planner.ordered(model)) == [1]
    planner.reset()
    assert _ids(planner.ordered(_model(only, _route(2, priority=1), failures=1))) == [1, 2]


def test_failure_kinds() -> None:
    assert [failure_kind(s) for s in (200, 400, 429, 500, 503, 401, 403, 404, 302)] == [
        None,
        None,
        "429",
        "5xx",
        "5xx",
        "route",
        "route",
        "route",
        "route",
    ]
