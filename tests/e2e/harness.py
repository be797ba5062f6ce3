"""Running the real app for browser tests: `reflex run --env prod` on a free port with its own
SQLite database and demo data (as `make run` does), and Debian's Chromium through Playwright.
The app starts once per test session and is shared by every e2e module."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope

from tests.conftest import free_port, stop_process_group, wait_for_port

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
            "CREDITDASH_PUBLIC_URL": f"http://127.0.0.1:{port}",
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
# The started app's database, for tests that read what it queued (tests/e2e/test_team.py).
APP_DB: dict[str, str] = {}


class Mailbox:
    """A real SMTP server (aiosmtpd) on loopback that the app sends its mail to: journeys read
    invitation and reset links from what arrived, as a person reads their inbox."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    # aiosmtpd calls the hook by this name.
    async def handle_DATA(self, _server: object, _session: object, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        message = BytesParser(policy=policy.default).parsebytes(raw)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        return "250 OK"

    def wait_for(self, to: str, subject_part: str, timeout_s: float = 60) -> EmailMessage:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for message in self.messages:
                if to in str(message["To"]) and subject_part in str(message["Subject"]):
                    return message
            time.sleep(0.5)
        raise AssertionError(f"no email to {to} about {subject_part!r} within {timeout_s} s")


MAILBOX = Mailbox()


# The dashboard runs as in production: two backend workers sharing their UI state in Redis.
DASHBOARD_WORKERS = 2
REDIS: dict[str, str] = {}


def _start_redis(tmp: Path) -> subprocess.Popen[bytes] | None:
    """A throwaway Redis for the app's state, or None when redis-server is missing (then the
    app runs one worker with in-memory state, the other journeys still run, and the Redis
    test fails saying what is missing)."""
    server = shutil.which("redis-server")
    if server is None:
        return None
    port = free_port()
    process = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(tmp)],
        stdout=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    wait_for_port(port, timeout_s=30)
    REDIS["url"] = f"redis://127.0.0.1:{port}/0"
    return process


def start_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("e2e")
    port = free_port()
    env = _app_env(tmp, port)
    APP_DB["url"] = env["CREDITDASH_DATABASE_URL"]
    redis = _start_redis(tmp)
    smtp_port = free_port()
    smtp = Controller(MAILBOX, hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    env["CREDITDASH_SMTP_URL"] = f"smtp://127.0.0.1:{smtp_port}"
    # The jobs loop delivers mail; a short interval lets a journey wait seconds, not half a minute.
    env["CREDITDASH_HOLD_EXPIRY_INTERVAL_S"] = "2"
    try:
        yield from _serve(tmp, port, env, redis)
    finally:
        smtp.stop()
        if redis is not None:
            redis.kill()
            redis.wait()


def _serve(
    tmp: Path, port: int, env: dict[str, str], redis: subprocess.Popen[bytes] | None
) -> Iterator[str]:
    if redis is not None:
        env["REFLEX_REDIS_URL"] = REDIS["url"]
        env["GRANIAN_WORKERS"] = str(DASHBOARD_WORKERS)
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
        stop_process_group(process, timeout_s=20)
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


def open_page(app_url: str, *, width: int = 1280, height: int = 800) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium, args=["--no-sandbox", "--disable-gpu"]
        )
        context = browser.new_context(
            viewport={"width": width, "height": height}, base_url=app_url, accept_downloads=True
        )
        yield context.new_page()
        browser.close()


def shot(page: object, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)  # type: ignore[attr-defined]


def sign_in(page: object, email: str, password: str) -> None:
    """Fill and send the sign-in form. On a loaded machine the page can re-render while it
    connects (the form is replaced, and what was typed with it), so a click that finds no
    stable button starts over from a fresh load, up to three times."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    for attempt in range(3):
        page.goto("/signin")  # type: ignore[attr-defined]
        page.wait_for_selector("#email")  # type: ignore[attr-defined]
        page.fill("#email", email)  # type: ignore[attr-defined]
        page.fill("#password", password)  # type: ignore[attr-defined]
        try:
            page.click("#sign-in", timeout=15_000)  # type: ignore[attr-defined]
            return
        except PlaywrightTimeout:
            if attempt == 2:
                raise
