"""Claude Code (the real CLI) pointed at the gateway: its Messages requests are served over a
chat upstream and charged exactly."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.proxy.conftest import GatewayRig
from tests.proxy.test_gateway import assert_ledger_ok, balance, records

REPO = Path(__file__).resolve().parents[3]
CLAUDE = REPO / ".agent-clis" / "node_modules" / ".bin" / "claude"


def offline_env(rig: GatewayRig, home: Path) -> dict[str, str]:
    """Claude Code's environment: the gateway as its API, and nothing else it may call."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "CLAUDE"))}
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        ANTHROPIC_BASE_URL=rig.base_url,
        ANTHROPIC_AUTH_TOKEN=rig.key,
        ANTHROPIC_MODEL="chat",
        ANTHROPIC_SMALL_FAST_MODEL="chat",
        ANTHROPIC_DEFAULT_OPUS_MODEL="chat",
        ANTHROPIC_DEFAULT_SONNET_MODEL="chat",
        ANTHROPIC_DEFAULT_HAIKU_MODEL="chat",
        CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
        DISABLE_AUTOUPDATER="1",
        DISABLE_TELEMETRY="1",
        DISABLE_ERROR_REPORTING="1",
        DISABLE_BUG_COMMAND="1",
        CLAUDE_CODE_DISABLE_FEEDBACK_SURVEY="1",
        CLAUDE_CODE_DISABLE_TERMINAL_TITLE="1",
        CLAUDE_CODE_DISABLE_EXPERIMENTAL_BETAS="0",
        CLAUDE_CODE_USE_BEDROCK="0",
        CLAUDE_CODE_USE_VERTEX="0",
    )
    return env


@pytest.mark.skipif(not CLAUDE.exists(), reason=f"the claude CLI is not installed at {CLAUDE}")
def test_claude_says_hi_through_the_gateway(
    rig: GatewayRig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Claude Code's first request (its system prompt and tool definitions) is larger than the
    # rig's small body limit; the gateway's default limit is 10 MiB.
    monkeypatch.setattr(rig.app.state.gateway.settings, "max_body_bytes", 4 * 1024 * 1024)
    before = balance(rig)
    done = subprocess.run(
        [str(CLAUDE), "-p", "say hi"],
        env=offline_env(rig, tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    seen = [(s.path, sorted(s.body)) for s in rig.upstream.seen]
    assert done.returncode == 0, (done.stdout, done.stderr, seen)
    assert "Hello from the fake upstream." in done.stdout
    # What it sent (its system prompt in blocks with cache_control, system-role messages, a
    # score of tools, metadata, thinking) reached the upstream as chat.
    sent = rig.upstream.seen[-1]
    assert sent.path == "/v1/chat/completions" and len(sent.body["tools"]) > 5
    assert sent.body["messages"][0]["role"] == "system"
    made = records(rig)
    assert made and all(r.endpoint == "messages" for r in made)
    spent = before.posted_micros - balance(rig).posted_micros
    assert spent == sum(r.price_micros for r in made) > 0
    assert_ledger_ok(rig)


@pytest.mark.skipif(not CLAUDE.exists(), reason=f"the claude CLI is not installed at {CLAUDE}")
def test_claude_tool_round_trip_through_the_gateway(
    rig: GatewayRig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tool-call model calls Claude Code's first tool; Claude Code answers with a
    tool_result, which reaches the upstream as a tool message, and the model then answers."""
    monkeypatch.setattr(rig.app.state.gateway.settings, "max_body_bytes", 4 * 1024 * 1024)
    env = offline_env(rig, tmp_path)
    env.update(ANTHROPIC_MODEL="tools", ANTHROPIC_SMALL_FAST_MODEL="tools")
    before = balance(rig)
    done = subprocess.run(
        [str(CLAUDE), "-p", "what is the weather in Paris?"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert "Hello from the fake upstream." in done.stdout
    last = rig.upstream.seen[-1].body["messages"]
    assert last[-1]["role"] == "tool" and last[-1]["tool_call_id"] == "call_fake_1"
    assert last[-2]["tool_calls"][0]["id"] == "call_fake_1"
    made = records(rig)
    assert len(made) >= 2
    assert before.posted_micros - balance(rig).posted_micros == sum(r.price_micros for r in made)
    assert_ledger_ok(rig)
