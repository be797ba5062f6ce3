"""`codex exec` (the Codex CLI, Responses API over streaming) against the rig, offline: it
prints the fake upstream's answer and the customer pays exactly the metered cost."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from creditdash.catalog.prices import cost_micros
from tests.proxy.conftest import GatewayRig
from tests.proxy.test_gateway import FAKE_USAGE, PRICE, assert_ledger_ok, balance, records

CODEX = Path(__file__).resolve().parents[3] / ".agent-clis" / "node_modules" / ".bin" / "codex"
KEY_VARIABLE = "CREDITDASH_TEST_CUSTOMER_KEY"


def _config(rig: GatewayRig) -> str:
    # web_search off: a chat route cannot run it (the gateway refuses built-in tools); no
    # retries, so a failure shows at once.
    return (
        'model = "chat"\n'
        'model_provider = "creditdash"\n'
        'web_search = "disabled"\n'
        "[model_providers.creditdash]\n"
        'name = "creditdash"\n'
        f'base_url = "{rig.base_url}/v1"\n'
        f'env_key = "{KEY_VARIABLE}"\n'
        'wire_api = "responses"\n'
        "request_max_retries = 0\n"
        "stream_max_retries = 0\n"
    )


@pytest.mark.skipif(not CODEX.exists(), reason=f"the Codex CLI is not installed at {CODEX}")
def test_codex_exec_says_hi_through_the_gateway(rig: GatewayRig, tmp_path: Path) -> None:
    home = tmp_path / "codex-home"
    home.mkdir()
    (home / "config.toml").write_text(_config(rig))
    work = tmp_path / "work"
    work.mkdir()
    env = {**os.environ, "CODEX_HOME": str(home), KEY_VARIABLE: rig.key}
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
        env.pop(name, None)
    before = balance(rig).posted_micros
    done = subprocess.run(
        [str(CODEX), "exec", "--skip-git-repo-check", "--sandbox", "read-only", "say hi"],
        cwd=work,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Hello from the fake upstream." in done.stdout
    made = records(rig)
    assert made and all((r.endpoint, r.status) == ("responses", "ok") for r in made)
    assert all(r.stream for r in made)
    spent = before - balance(rig).posted_micros
    assert spent == sum(r.price_micros for r in made) == len(made) * cost_micros(PRICE, FAKE_USAGE)
    # No hold is left open (assert_ledger_ok checks the open-hold count is zero).
    assert balance(rig).held_micros == 0
    assert_ledger_ok(rig)
