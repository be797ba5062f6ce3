"""The per-process throttles of the settlement: budget-alert checks (at most one per workspace
per interval, the last charge of a burst always checked) and key touches (bounded memory)."""

from __future__ import annotations

import asyncio
import itertools
import time

from creditdash.proxy import settlement
from creditdash.proxy.settlement import AlertChecks, KeyTouches


def test_a_burst_of_charges_makes_two_checks_and_the_last_is_covered() -> None:
    async def burst() -> tuple[list[float], float]:
        checks = AlertChecks(interval_s=0.2)
        started: list[float] = []
        begin = time.monotonic()
        for _ in range(100):
            checks.request("cus_a", lambda: started.append(time.monotonic()))
            await asyncio.sleep(0.001)
        last_charge = time.monotonic()
        await asyncio.sleep(0.4)
        return [at - begin for at in started], last_charge - begin

    started, last_charge = asyncio.run(burst())
    # The first at once; every later charge waits for one check started after it.
    assert started[0] < 0.05
    assert 2 <= len(started) <= 1 + int(last_charge / 0.2) + 1
    assert started[-1] >= last_charge
    assert all(b - a >= 0.19 for a, b in itertools.pairwise(started))


def test_workspaces_are_checked_independently() -> None:
    async def two() -> list[str]:
        checks = AlertChecks(interval_s=10)
        seen: list[str] = []
        for customer in ("cus_a", "cus_b", "cus_a"):
            checks.request(customer, lambda c=customer: seen.append(c))
        return seen

    assert asyncio.run(two()) == ["cus_a", "cus_b"]


def test_key_touches_forget_old_keys_once_large(monkeypatch: object) -> None:
    touches = KeyTouches(max_entries=3)
    now = [1000.0]
    monkeypatch.setattr(settlement.time, "monotonic", lambda: now[0])  # type: ignore[attr-defined]
    assert all(touches.due(key) for key in ("k1", "k2", "k3"))
    assert not touches.due("k1")  # within the minute
    now[0] += settlement.KEY_TOUCH_INTERVAL_S + 1
    assert touches.due("k4")  # the map was full: the stale entries went
    assert len(touches) == 1
    assert touches.due("k1")
