"""`creditdash webhooks`: the secret is printed once, refusals are one line and exit 1."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner, Result
from sqlalchemy.engine import Engine

from creditdash.cli import main
from creditdash.core import settings
from tests.factories import funded_customer


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


@pytest.fixture
def customer_id(sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("CREDITDASH_ALLOW_PRIVATE_UPSTREAMS", "1")
    settings.reset_settings()
    return funded_customer(sqlite_engine, credits_micros=0).customer_id


def test_add_shows_the_secret_once_and_list_never(customer_id: str) -> None:
    added = run(
        "webhooks", "add", "--customer", customer_id, "--url", "http://127.0.0.1:9/hooks",
        "--events", "key.created,key.revoked", "--description", "ci", "--json",
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    shown = json.loads(added.output)
    assert shown["secret"].startswith("whsec_")
    assert shown["event_types"] == ["key.created", "key.revoked"] and shown["enabled"]
    listed = run("webhooks", "list", "--customer", customer_id, "--json")
    assert listed.exit_code == 0
    assert shown["secret"] not in listed.output and "secret" not in listed.output
    [endpoint] = json.loads(listed.output)["endpoints"]
    assert endpoint["endpoint_id"] == shown["endpoint_id"]

    assert run("webhooks", "disable", shown["endpoint_id"]).exit_code == 0
    listed = json.loads(run("webhooks", "list", "--customer", customer_id, "--json").output)
    assert listed["endpoints"][0]["enabled"] is False
    assert run("webhooks", "enable", shown["endpoint_id"]).exit_code == 0
    deliveries = run("webhooks", "deliveries", "--customer", customer_id, "--json")
    assert json.loads(deliveries.output) == {"deliveries": []}


def test_refusals_are_one_line_and_change_nothing(customer_id: str) -> None:
    bad = run(
        "webhooks", "add", "--customer", customer_id, "--url", "https://169.254.169.254/",
        "--events", "key.created",
    )  # fmt: skip
    assert bad.exit_code == 1 and bad.output.startswith("error:") and "link-local" in bad.output
    unknown = run(
        "webhooks", "add", "--customer", customer_id, "--url", "http://127.0.0.1:9/",
        "--events", "key.created,nope",
    )  # fmt: skip
    assert unknown.exit_code == 1 and "'nope'" in unknown.output
    assert json.loads(run("webhooks", "list", "--customer", customer_id, "--json").output) == {
        "endpoints": []
    }
    assert run("webhooks", "resend", "msg_nope").exit_code == 1
    assert run("webhooks", "disable", "whe_nope").exit_code == 1
