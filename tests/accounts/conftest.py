"""Every test starts with no sign-in failures counted in this process."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from creditdash.accounts.throttle import get_throttle


@pytest.fixture(autouse=True)
def fresh_throttle() -> Iterator[None]:
    get_throttle.cache_clear()
    yield
    get_throttle.cache_clear()
