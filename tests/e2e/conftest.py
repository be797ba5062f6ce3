"""One running app for every e2e module (starting it costs a frontend build)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.e2e.harness import DEMO_KEY, open_page, start_app


@pytest.fixture(scope="session")
def app_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    # CREDITDASH_E2E_URL: drive an app that is already running (seeded with `creditdash demo`
    # and its API key in CREDITDASH_E2E_DEMO_KEY), to iterate without a rebuild per run.
    running = os.environ.get("CREDITDASH_E2E_URL")
    if running:
        DEMO_KEY["key"] = os.environ.get("CREDITDASH_E2E_DEMO_KEY", "")
        yield running.rstrip("/")
        return
    yield from start_app(tmp_path_factory)


@pytest.fixture
def page(app_url: str) -> Iterator[object]:
    yield from open_page(app_url)
