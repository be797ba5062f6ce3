"""The real app in prod mode on one port, driven by Debian's Chromium through Playwright.

Starts `reflex run --env prod` on a free port with its own SQLite database and demo data, as
`make run` does, then signs in as the demo admin and the demo customer.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest

from creditdash.demo import (
    DEMO_ADMIN_EMAIL,
    DEMO_ADMIN_PASSWORD,
    DEMO_CUSTOMER_EMAIL,
    DEMO_CUSTOMER_PASSWORD,
)
from tests.conftest import free_port

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
ARTIFACTS = ROOT / "test-artifacts"
START_TIMEOUT_S = 900  # a cold machine installs the frontend packages first


def _app_env(tmp: Path, port: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "CREDITDASH_DATABASE_URL": f"sqlite:///{tmp / 'e2e.db'}",
            "CREDITDASH_DATA_DIR": str(tmp / "data"),
            "CREDITDASH_PORT": str(port),
            "REFLEX_DIR": str(ROOT / ".reflex-home"),
            "REFLEX_TELEMETRY_ENABLED": "0",
            "REFLEX_CHECK_LATEST_VERSION": "0",
            "REFLEX_HTTP_CLIENT_BIND_ADDRESS": "0.0.0.0",
            "BUN_INSTALL_CACHE_DIR": str(ROOT / ".bun-cache"),
            "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        }
    )
    return env


DEMO_KEY: dict[str, str] = {}


@pytest.fixture(scope="module")
def app_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("e2e")
    port = free_port()
    env = _app_env(tmp, port)
    subprocess.run([str(BIN / "creditdash"), "db", "upgrade"], env=env, check=True, cwd=ROOT)
    seeded = subprocess.run(
        [str(BIN / "creditdash"), "demo"],
        env=env,
        check=True,
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stdout
    DEMO_KEY["key"] = next(w for w in seeded.split() if w.startswith("sk-cd-"))
    log = (tmp / "reflex.log").open("w")
    process = subprocess.Popen(
        [str(BIN / "reflex"), "run", "--env", "prod", "--frontend-port", str(port),
         "--backend-port", str(port)],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_serving(url, process, tmp / "reflex.log")
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        log.close()


def _wait_until_serving(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the app exited with {process.returncode}:\n{log.read_text()[-4000:]}")
        try:
            page = httpx.get(url + "/", timeout=2)
            health = httpx.get(url + "/healthz", timeout=2)
            if page.status_code == 200 and health.status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    pytest.fail(f"the app did not serve within {START_TIMEOUT_S} s:\n{log.read_text()[-4000:]}")


@pytest.fixture
def page(app_url: str) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium, args=["--no-sandbox", "--disable-gpu"]
        )
        context = browser.new_context(viewport={"width": 1280, "height": 800}, base_url=app_url)
        yield context.new_page()
        browser.close()


def _shot(page: object, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)  # type: ignore[attr-defined]


def _sign_in(page: object, email: str, password: str) -> None:
    page.goto("/")  # type: ignore[attr-defined]
    page.wait_for_selector("#email")  # type: ignore[attr-defined]
    page.fill("#email", email)  # type: ignore[attr-defined]
    page.fill("#password", password)  # type: ignore[attr-defined]
    page.click("#sign-in")  # type: ignore[attr-defined]


def test_gateway_and_dashboard_share_one_port(app_url: str) -> None:
    assert httpx.get(app_url + "/healthz").json() == {"status": "ok"}
    assert "creditdash" in httpx.get(app_url + "/").text.lower()


def test_openai_sdk_calls_the_gateway_on_the_app_port(app_url: str) -> None:
    import openai

    client = openai.OpenAI(api_key=DEMO_KEY["key"], base_url=app_url + "/v1", max_retries=0)
    reply = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Hello"}], max_tokens=8
    )
    assert reply.choices[0].message.content
    credits = httpx.get(
        app_url + "/v1/credits", headers={"Authorization": f"Bearer {DEMO_KEY['key']}"}
    ).json()
    assert Decimal(credits["balance"]) < Decimal("25")
    assert credits["held"] == "0.000000"


def test_admin_signs_in_and_sees_every_customer(page) -> None:  # type: ignore[no-untyped-def]
    _sign_in(page, DEMO_ADMIN_EMAIL, "not the password")
    page.wait_for_selector("text=Incorrect email or password.")
    _shot(page, "signin-error")

    _sign_in(page, DEMO_ADMIN_EMAIL, DEMO_ADMIN_PASSWORD)
    page.wait_for_url("**/admin")
    page.wait_for_selector("text=Demo Workspace")
    page.wait_for_selector("text=Ledger verified")
    _shot(page, "admin-home")

    token = next(c["value"] for c in page.context.cookies() if c["name"] == "creditdash_session")
    page.click("text=Sign out")
    page.wait_for_selector("#email")
    # The old token is dead on the server, not only forgotten by the browser.
    page.context.add_cookies([{"name": "creditdash_session", "value": token, "url": page.url}])
    page.goto("/admin")
    page.wait_for_selector("#email")
    assert urlparse(page.url).path == "/"


def test_customer_sees_their_balance_and_not_the_admin_home(page) -> None:  # type: ignore[no-untyped-def]
    _sign_in(page, DEMO_CUSTOMER_EMAIL, DEMO_CUSTOMER_PASSWORD)
    page.wait_for_url("**/home")
    page.wait_for_selector("text=Available")
    assert page.locator("text=Admin").count() == 0
    _shot(page, "customer-home")

    page.goto("/admin")
    page.wait_for_url("**/home")
    assert page.locator("text=Ledger verified").count() == 0
    assert page.locator("text=admin@example.com").count() == 0
