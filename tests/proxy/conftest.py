"""The gateway served for real on loopback, in front of fake upstreams on loopback (an OpenAI
one, fake_upstream.py, and an Anthropic Messages one, fake_anthropic.py)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest
from sqlalchemy.engine import Engine
from starlette.applications import Starlette

from creditdash.catalog.importer import import_catalog, parse_catalog
from creditdash.core import db, settings
from creditdash.core.settings import Settings
from creditdash.server import create_app
from tests.conftest import free_port
from tests.factories import funded_customer
from tests.proxy.fake_anthropic import FakeAnthropic
from tests.proxy.fake_upstream import FakeUpstream, ServerThread

UPSTREAM_KEY = "sk-upstream-SECRET-0123456789abcdef"
# Sent as an extra header (providers that authenticate by header); stored encrypted.
UPSTREAM_HEADER_KEY = "hdr-SECRET-api-key-9876543210"
MAX_BODY_BYTES = 64 * 1024
PRICE = '{input_per_mtok: "1.00", output_per_mtok: "2.00", cached_input_per_mtok: "0.50"}'
COST = '{input_per_mtok: "0.25", output_per_mtok: "0.50", cached_input_per_mtok: "0.125"}'
MODELS = {
    # public name: (provider, upstream model)
    "chat": ("fake", "echo"),
    "embed": ("fake", "echo"),
    "nousage": ("fake", "no-usage"),
    "zero": ("fake", "zero-usage"),
    "cached": ("fake", "cached"),
    "fail500": ("fake", "fail-500"),
    "fail429": ("fake", "fail-429"),
    "fail401": ("fake", "fail-401"),
    "running": ("fake", "running-usage"),
    "bad400": ("fake", "fail-400-echo"),
    "hang": ("fake-impatient", "hang"),
    "slow": ("fake", "slow-stream"),
    "slowok": ("fake", "slow-ok"),
    "malformed": ("fake", "malformed-stream"),
    "redirect": ("fake", "redirect"),
    "overclaim": ("fake", "overclaim"),
    "overflow": ("fake", "overflow"),
    "nodone": ("fake", "no-done"),
    "largeprompt": ("fake", "large-prompt"),
    "tools": ("fake", "tool-call"),
    "tools-fixed": ("fake", "tool-call-fixed"),
    # endings (test_endings.py)
    "json-stream": ("fake", "json-to-stream"),
    "json-tools": ("fake", "json-tools-to-stream"),
    "error200": ("fake", "error-200"),
    "error-mid": ("fake", "error-mid-stream"),
    "error-same-write": ("fake", "error-same-write"),
    "usage-then-error": ("fake", "usage-then-error"),
    "cut": ("fake", "cut-mid-stream"),
    # wire conformance: a provider's 429 with its Retry-After
    "fail429retry": ("fake", "fail-429-retry"),
    "fail429date": ("fake", "fail-429-date"),
    # idempotency (test_idempotency.py)
    "slow3s": ("fake", "slow-3s"),
}
# The Anthropic-kind upstream: its own key, and a price with a dearer cache write.
ANTHROPIC_KEY = "sk-ant-upstream-SECRET-fedcba9876543210"
CLAUDE_PRICE = (
    '{input_per_mtok: "1.00", output_per_mtok: "2.00", cached_input_per_mtok: "0.50", '
    'cache_write_per_mtok: "1.25"}'
)
CLAUDE_MODELS = {
    # public name: upstream model on the fake Anthropic provider (fake_anthropic.py)
    "claude": "claude-text",
    "claude-tools": "claude-tools",
    "claude-cache": "claude-cache",
    "claude-overloaded": "claude-overloaded",
    "claude-invalid": "claude-invalid",
    "claude-error-mid": "claude-error-mid",
    "claude-cut": "claude-cut",
}


def catalog_yaml(port: int, anthropic_port: int | None = None) -> str:
    lines = [
        "providers:",
        "  - name: fake",
        f"    base_url: http://127.0.0.1:{port}/v1",
        f"    api_key: {UPSTREAM_KEY}",
        "    timeout_s: 5",
        f"    headers: {{api-key: {UPSTREAM_HEADER_KEY}, x-org: creditdash-tests}}",
        "  - name: fake-impatient",
        f"    base_url: http://127.0.0.1:{port}/v1",
        f"    api_key: {UPSTREAM_KEY}",
        "    timeout_s: 1",
    ]
    if anthropic_port is not None:
        lines += [
            "  - name: fake-claude",
            "    kind: anthropic",
            f"    base_url: http://127.0.0.1:{anthropic_port}/v1",
            f"    api_key: {ANTHROPIC_KEY}",
            "    timeout_s: 5",
            "    headers: {x-org: creditdash-tests}",
        ]
    lines.append("models:")
    for name, (provider, upstream) in MODELS.items():
        lines += [
            f"  - name: {name}",
            f"    price: {PRICE}",
            # "cached" reports 300 output tokens, which its cap must allow.
            f"    max_output_tokens: {400 if name == 'cached' else 100}",
            "    routes:",
            f"      - {{provider: {provider}, upstream_model: {upstream}, cost: {COST}}}",
        ]
    # A reasoning model: it refuses max_tokens, so its route takes the cap as
    # max_completion_tokens whatever name the client used.
    lines += [
        "  - name: reasoning",
        f"    price: {PRICE}",
        "    max_output_tokens: 100",
        "    routes:",
        "      - {provider: fake, upstream_model: reasoning, output_cap_param:"
        f" max_completion_tokens, cost: {COST}}}",
    ]
    # endings: an error answered with 200 first, a working route next
    lines += [
        "  - name: error200-fallback",
        f"    price: {PRICE}",
        "    max_output_tokens: 100",
        "    routes:",
        f"      - {{provider: fake, upstream_model: error-200, priority: 1, cost: {COST}}}",
        f"      - {{provider: fake, upstream_model: echo, priority: 2, cost: {COST}}}",
    ]
    if anthropic_port is not None:
        lines += _claude_models()
    return "\n".join(lines) + "\n"


def _claude_models() -> list[str]:
    lines: list[str] = []
    for name, upstream in CLAUDE_MODELS.items():
        lines += [
            f"  - name: {name}",
            f"    price: {CLAUDE_PRICE}",
            f"    max_output_tokens: {400 if name == 'claude-cache' else 100}",
            "    routes:",
            f"      - {{provider: fake-claude, upstream_model: {upstream}, cost: {COST}}}",
        ]
    # Fallback across kinds: the overloaded Anthropic route first, then the OpenAI one.
    return [
        *lines,
        "  - name: claude-fallback",
        f"    price: {CLAUDE_PRICE}",
        "    max_output_tokens: 100",
        "    routes:",
        "      - {provider: fake-claude, upstream_model: claude-overloaded, priority: 1,"
        f" cost: {COST}}}",
        f"      - {{provider: fake, upstream_model: echo, priority: 2, cost: {COST}}}",
    ]


@pytest.fixture(scope="session")
def fake_upstream() -> Iterator[FakeUpstream]:
    fake = FakeUpstream(port=free_port())
    server = ServerThread(fake.app(), fake.port)
    server.start()
    yield fake
    server.stop()


@pytest.fixture(scope="session")
def fake_anthropic() -> Iterator[FakeAnthropic]:
    fake = FakeAnthropic(port=free_port())
    server = ServerThread(fake.app(), fake.port)
    server.start()
    yield fake
    server.stop()


@pytest.fixture(scope="session")
def gateway_server() -> Iterator[tuple[Starlette, str]]:
    app = create_app(
        standalone=False,
        settings=Settings(allow_private_upstreams=True, max_body_bytes=MAX_BODY_BYTES),
    )
    server = ServerThread(app, free_port())
    server.start()
    yield app, f"http://127.0.0.1:{server.port}"
    server.stop()


@dataclass
class GatewayRig:
    app: Starlette
    base_url: str
    upstream: FakeUpstream
    anthropic: FakeAnthropic
    engine: Engine
    customer_id: str
    account_id: int
    key: str

    def client(self, key: str | None = None) -> openai.OpenAI:
        return openai.OpenAI(api_key=key or self.key, base_url=self.base_url + "/v1", max_retries=0)

    def async_client(self, key: str | None = None) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(
            api_key=key or self.key, base_url=self.base_url + "/v1", max_retries=0
        )

    def http(self, key: str | None = None) -> httpx.Client:
        return httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {key or self.key}"},
            timeout=30,
        )

    def new_customer(self, credits_micros: int) -> tuple[str, int, str]:
        from creditdash.accounts.api_keys import create_api_key

        who = funded_customer(self.engine, credits_micros=credits_micros, name="Rig")
        with db.session_scope(engine=self.engine) as session:
            _key, raw = create_api_key(session, customer_id=who.customer_id, name="test")
        return who.customer_id, who.account_id, raw


def _rig(
    engine: Engine,
    fake_upstream: FakeUpstream,
    fake_anthropic: FakeAnthropic,
    gateway_server: tuple[Starlette, str],
    monkeypatch: pytest.MonkeyPatch,
) -> GatewayRig:
    monkeypatch.setenv("CREDITDASH_ALLOW_PRIVATE_UPSTREAMS", "1")
    settings.reset_settings()
    catalog = catalog_yaml(fake_upstream.port, fake_anthropic.port)
    with db.session_scope(engine=engine) as session:
        import_catalog(session, parse_catalog(catalog))
    app, base_url = gateway_server
    gateway = app.state.gateway
    gateway.catalog.invalidate()
    gateway.keys.clear()
    rig = GatewayRig(app, base_url, fake_upstream, fake_anthropic, engine, "", 0, "")
    rig.customer_id, rig.account_id, rig.key = rig.new_customer(10_000_000)
    return rig


@pytest.fixture
def rig(
    sqlite_engine: Engine,
    fake_upstream: FakeUpstream,
    fake_anthropic: FakeAnthropic,
    gateway_server: tuple[Starlette, str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> GatewayRig:
    return _rig(sqlite_engine, fake_upstream, fake_anthropic, gateway_server, monkeypatch)


@pytest.fixture
def rig_any_backend(
    engine: Engine,
    fake_upstream: FakeUpstream,
    fake_anthropic: FakeAnthropic,
    gateway_server: tuple[Starlette, str],
    monkeypatch: pytest.MonkeyPatch,
) -> GatewayRig:
    return _rig(engine, fake_upstream, fake_anthropic, gateway_server, monkeypatch)
