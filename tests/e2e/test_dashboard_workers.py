"""The dashboard as production runs it: two backend workers whose UI state lives in Redis.

The e2e app is started that way when redis-server is present (`make test-deps` installs it).
Each browser tab's state is stored in Redis under its client token, so whichever worker a
reconnecting tab reaches serves the same state. Here a signed-in tab reloads several times (each
reload is a new websocket, which the kernel may hand to either worker; which one is not
observable from the browser) and keeps working, and the state it left is found in Redis.
"""

from __future__ import annotations

import re

import pytest

from creditdash.demo import DEMO_CUSTOMER_EMAIL, DEMO_CUSTOMER_PASSWORD
from tests.e2e.harness import REDIS
from tests.e2e.harness import sign_in as _sign_in

pytestmark = pytest.mark.e2e


def test_ui_state_lives_in_redis_and_survives_reconnects(app_url: str, page: object) -> None:
    if "url" not in REDIS:
        # Like a missing PostgreSQL: the environment is incomplete, which must not pass as green.
        pytest.fail("redis-server is missing (make test-deps installs it): the app ran 1 worker")
    import redis

    store = redis.Redis.from_url(REDIS["url"])
    _sign_in(page, DEMO_CUSTOMER_EMAIL, DEMO_CUSTOMER_PASSWORD)
    page.wait_for_url(re.compile(r".*/home/?$"))  # type: ignore[attr-defined]
    page.get_by_text("Available").first.wait_for()  # type: ignore[attr-defined]
    for path in ("/usage", "/keys", "/home", "/billing", "/home"):
        page.goto(path)  # type: ignore[attr-defined]  # a full load: a new websocket each time
        page.wait_for_url(re.compile(rf".*{path}/?$"))  # type: ignore[attr-defined]
        # Still signed in (the page would send a stranger back to the sign-in form).
        page.get_by_text(DEMO_CUSTOMER_EMAIL).first.wait_for()  # type: ignore[attr-defined]
    token = page.evaluate("() => window.sessionStorage.getItem('token')")  # type: ignore[attr-defined]
    assert token, "the tab has a client token"
    keys = [key.decode() for key in store.scan_iter(match=f"{token}*")]
    assert keys, f"no state for the tab's token in Redis: {list(store.scan_iter(count=10))[:10]}"
