"""Upstream cost reconciliation against fake admin APIs on loopback (real HTTP, paginated, shaped
as OpenAI and Anthropic document them), and CSV imports: the difference from what the gateway
recorded is shown to the micro, and bad input changes nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from creditdash.accounts.api_keys import create_api_key
from creditdash.billing.models import UsageRecord
from creditdash.catalog.importer import import_catalog, parse_catalog
from creditdash.cli import main
from creditdash.core import db, settings
from creditdash.core.audit import AuditEntry
from creditdash.core.ids import new_id
from creditdash.upstream.models import UpstreamCostSource, UpstreamDailyCost
from tests.conftest import free_port
from tests.factories import funded_customer
from tests.proxy.fake_upstream import ServerThread
from tests.upstream.fake_admin import ANTHROPIC_ADMIN_KEY, OPENAI_ADMIN_KEY, FakeAdmin

CATALOG = """
providers:
  - name: openai-direct
    base_url: http://127.0.0.1:9/v1
  - name: claude
    kind: anthropic
    base_url: http://127.0.0.1:9/v1
  - name: sandbox
    kind: sandbox
    base_url: http://creditdash-sandbox/v1
models:
  - name: mini
    price: {input_per_mtok: "1", output_per_mtok: "2"}
    routes:
      - {provider: openai-direct, upstream_model: gpt-4o-mini,
         cost: {input_per_mtok: "0.15", output_per_mtok: "0.60"}}
  - name: haiku
    price: {input_per_mtok: "2", output_per_mtok: "8"}
    routes:
      - {provider: claude, upstream_model: claude-3-5-haiku-20241022,
         cost: {input_per_mtok: "0.80", output_per_mtok: "4"}}
"""
DAY1, DAY2, DAY3 = date(2026, 11, 1), date(2026, 11, 2), date(2026, 11, 3)


@pytest.fixture(scope="module")
def fake_admin() -> Iterator[tuple[FakeAdmin, int]]:
    fake = FakeAdmin()
    server = ServerThread(fake.app(), free_port())
    server.start()
    yield fake, server.port
    server.stop()


@pytest.fixture
def admin_api(
    engine: Engine, fake_admin: tuple[FakeAdmin, int], monkeypatch: pytest.MonkeyPatch
) -> FakeAdmin:
    monkeypatch.setenv("CREDITDASH_ALLOW_PRIVATE_UPSTREAMS", "1")
    settings.reset_settings()
    with db.session_scope() as session:
        import_catalog(session, parse_catalog(CATALOG))
    fake, port = fake_admin
    fake.seen.clear()
    fake.fail_status = None
    fake.openai_costs = {
        # 0.9 + 0.334567 = 1.234567 USD: exactly what was recorded.
        DAY1: [("gpt-4o-mini-2024-07-18, input", "0.9"),
               ("gpt-4o-mini-2024-07-18, output", "0.334567")],
        DAY2: [("gpt-4o-mini-2024-07-18, input", "0.512345")],  # recorded 0.500000
        DAY3: [("gpt-4o-2024-08-06, input", "0.000001"),  # never recorded: 1 micro
               ("web search tool calls", "0.02")],
    }  # fmt: skip
    fake.anthropic_costs = {
        DAY1: [("claude-3-5-haiku-20241022", "51.2345")],  # cents: 0.512345 USD
        DAY2: [("claude-3-5-haiku-20241022", "100")],
    }
    for provider, key in (("openai-direct", OPENAI_ADMIN_KEY), ("claude", ANTHROPIC_ADMIN_KEY)):
        stored = _cli("upstream", "set-admin-key", "--provider", provider,
                      "--base-url", f"http://127.0.0.1:{port}/v1", stdin=key + "\n")  # fmt: skip
        assert stored.exit_code == 0, stored.output
        assert key not in stored.output
    customer = funded_customer(engine, credits_micros=0)
    with db.session_scope() as session:
        api_key, _ = create_api_key(session, customer_id=customer.customer_id, name="t")
        for provider, model, day, cost in (
            ("openai-direct", "gpt-4o-mini", DAY1, 1_000_000),
            ("openai-direct", "gpt-4o-mini", DAY1, 234_567),
            ("openai-direct", "gpt-4o-mini", DAY2, 500_000),
            ("claude", "claude-3-5-haiku-20241022", DAY1, 512_345),
            ("claude", "claude-3-5-haiku-20241022", DAY2, 999_000),
        ):
            session.add(
                UsageRecord(
                    id=new_id("req"),
                    customer_id=customer.customer_id,
                    api_key_id=api_key.id,
                    endpoint="chat",
                    public_model="mini",
                    provider=provider,
                    upstream_model=model,
                    status="ok",
                    usage_source="provider",
                    upstream_cost_micros=cost,
                    created_at=datetime(day.year, day.month, day.day, 12, tzinfo=UTC),
                )
            )
    return fake


def _cli(*args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(main, list(args), input=stdin)


def _stored() -> tuple[int, int]:
    with db.session_scope(readonly=True) as session:
        return (
            session.execute(select(func.count()).select_from(UpstreamDailyCost)).scalar_one(),
            session.execute(select(func.count()).select_from(AuditEntry)).scalar_one(),
        )


def _lines(output: str) -> dict[tuple[str, str], dict[str, object]]:
    report = json.loads(output)
    return {(ln["day"], ln["model"]): ln for ln in report["lines"]}


def test_openai_costs_reconcile_to_the_micro(admin_api: FakeAdmin) -> None:
    result = _cli("upstream", "reconcile", "--provider", "openai-direct",
                  "--from", "2026-11-01", "--to", "2026-11-03", "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = _lines(result.output)
    same = lines[("2026-11-01", "gpt-4o-mini")]
    assert (same["reported_micros"], same["recorded_micros"]) == (1_234_567, 1_234_567)
    assert same["difference_micros"] == 0 and not same["over_tolerance"]
    off = lines[("2026-11-02", "gpt-4o-mini")]
    assert (off["reported_micros"], off["recorded_micros"]) == (512_345, 500_000)
    assert off["difference_micros"] == 12_345 and off["over_tolerance"]
    tiny = lines[("2026-11-03", "gpt-4o-2024-08-06")]
    assert tiny["difference_micros"] == 1 and not tiny["over_tolerance"]
    assert lines[("2026-11-03", "web search tool calls")]["reported_micros"] == 20_000
    # Every page was read, each with the documented query and the cursor of the one before.
    pages = [s for s in admin_api.seen if s["_path"] == "/v1/organization/costs"]
    assert [s.get("page") for s in pages] == [None, "page_1", "page_2"]
    assert pages[0]["start_time"] == str(int(datetime(2026, 11, 1, tzinfo=UTC).timestamp()))
    assert pages[0]["end_time"] == str(int(datetime(2026, 11, 4, tzinfo=UTC).timestamp()))
    text = _cli("upstream", "reconcile", "--provider", "openai-direct",
                "--from", "2026-11-01", "--to", "2026-11-03")  # fmt: skip
    assert "difference       0.012345" in text.output
    assert "gpt-4o-2024-08-06" not in text.output  # 1 micro is within the tolerance
    assert OPENAI_ADMIN_KEY not in text.output
    # Fetched again, the same days replace what was stored: no duplicates.
    assert _stored()[0] == 4


def test_anthropic_costs_reconcile_to_the_micro(admin_api: FakeAdmin) -> None:
    result = _cli("upstream", "reconcile", "--provider", "claude", "--from", "2026-11-01",
                  "--to", "2026-11-02", "--tolerance", "0", "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = _lines(result.output)
    assert lines[("2026-11-01", "claude-3-5-haiku-20241022")]["difference_micros"] == 0
    off = lines[("2026-11-02", "claude-3-5-haiku-20241022")]
    assert (off["reported_micros"], off["recorded_micros"]) == (1_000_000, 999_000)
    assert off["difference_micros"] == 1_000 and off["over_tolerance"]
    pages = [s for s in admin_api.seen if s["_path"] == "/v1/organizations/cost_report"]
    assert [s.get("page") for s in pages] == [None, "page_1"]
    assert pages[0]["starting_at"] == "2026-11-01T00:00:00Z"
    assert pages[0]["ending_at"] == "2026-11-03T00:00:00Z"


def test_a_failing_report_stores_nothing_and_echoes_no_key(admin_api: FakeAdmin) -> None:
    before = _stored()
    admin_api.fail_status = 500
    result = _cli("upstream", "reconcile", "--provider", "openai-direct",
                  "--from", "2026-11-01", "--to", "2026-11-03")  # fmt: skip
    assert result.exit_code == 1
    assert "cost report answered HTTP 500" in result.output
    assert OPENAI_ADMIN_KEY not in result.output
    assert _stored() == before


def test_reconcile_refuses_bad_input(admin_api: FakeAdmin) -> None:
    before = _stored()
    backwards = _cli("upstream", "reconcile", "--provider", "claude",
                     "--from", "2026-11-03", "--to", "2026-11-01")  # fmt: skip
    assert backwards.exit_code == 1 and "--to is before --from" in backwards.output
    not_a_day = _cli("upstream", "reconcile", "--provider", "claude",
                     "--from", "yesterday", "--to", "2026-11-01")  # fmt: skip
    assert not_a_day.exit_code == 1 and "not a date" in not_a_day.output
    sandbox = _cli("upstream", "reconcile", "--provider", "sandbox",
                   "--from", "2026-11-01", "--to", "2026-11-01")  # fmt: skip
    assert sandbox.exit_code == 1 and "sandbox" in sandbox.output
    nobody = _cli("upstream", "reconcile", "--provider", "nobody",
                  "--from", "2026-11-01", "--to", "2026-11-01")  # fmt: skip
    assert nobody.exit_code == 1 and "no provider named 'nobody'" in nobody.output
    assert _stored() == before


def test_the_admin_key_is_stored_encrypted(admin_api: FakeAdmin) -> None:
    with db.session_scope(readonly=True) as session:
        stored = session.execute(select(UpstreamCostSource)).scalars().all()
        audit = " ".join(
            (e.after_json or "") + (e.before_json or "")
            for e in session.execute(select(AuditEntry)).scalars()
        )
    assert len(stored) == 2
    for source in stored:
        assert OPENAI_ADMIN_KEY not in source.admin_key_encrypted
        assert ANTHROPIC_ADMIN_KEY not in source.admin_key_encrypted
    assert OPENAI_ADMIN_KEY not in audit and ANTHROPIC_ADMIN_KEY not in audit


GOOD_CSV = """day,provider,model,cost
2026-11-01,openai-direct,gpt-4o-mini-2024-07-18,1.234567
2026-11-02,openai-direct,gpt-4o-mini,0.49
2026-11-01,claude,claude-3-5-haiku-20241022,0.512345
"""


def test_a_csv_import_reconciles_without_fetching(admin_api: FakeAdmin, tmp_path: Path) -> None:
    path = tmp_path / "costs.csv"
    path.write_text(GOOD_CSV)
    imported = _cli("upstream", "import-costs", str(path), "--json")
    assert imported.exit_code == 0, imported.output
    assert json.loads(imported.output) == {"imported": {"claude": 1, "openai-direct": 2}}
    result = _cli("upstream", "reconcile", "--provider", "openai-direct", "--no-fetch",
                  "--from", "2026-11-01", "--to", "2026-11-02", "--json")  # fmt: skip
    lines = _lines(result.output)
    assert lines[("2026-11-01", "gpt-4o-mini")]["difference_micros"] == 0
    assert lines[("2026-11-02", "gpt-4o-mini")]["difference_micros"] == -10_000
    assert admin_api.seen == []  # --no-fetch: the stored rows only


H = "day,provider,model,cost\n"


@pytest.mark.parametrize(
    ("csv_text", "message"),
    [
        ("date,provider,model,cost\n2026-11-01,claude,m,1\n", "missing day"),
        (H + "2026-13-01,claude,m,1\n", "line 2: day '2026-13-01' is not a real date"),
        (H + "01/11/2026,claude,m,1\n", "line 2: day '01/11/2026' is not a date"),
        (H + "2999-01-01,claude,m,1\n", "line 2: day 2999-01-01 is in the future"),
        (H + "2026-11-01,nobody,m,1\n", "line 2: no provider named 'nobody'"),
        (H + "2026-11-01,sandbox,m,1\n", "line 2: provider sandbox is the built-in sandbox"),
        (H + "2026-11-01,claude,,1\n", "line 2: model must be 1 to 200"),
        (H + "2026-11-01,claude,m,-1\n", "line 2: cost '-1' is not a plain decimal"),
        (H + "2026-11-01,claude,m,1e3\n", "line 2: cost '1e3' is not a plain decimal"),
        (H + "2026-11-01,claude,m,$1\n", "line 2: cost '$1' is not a plain decimal"),
        (H + "2026-11-01,claude,m,1,extra\n", "line 2: more cells"),
        (H + "2026-11-01,claude,m,1\n2026-11-01,claude,m,2\n",
         "line 3: a second row for claude 2026-11-01 m"),
        (H, "the file has no rows"),
    ],
)  # fmt: skip
def test_a_csv_with_bad_rows_is_refused_whole(
    admin_api: FakeAdmin, tmp_path: Path, csv_text: str, message: str
) -> None:
    path = tmp_path / "bad.csv"
    # A good row after the bad one: it is not imported either.
    has_rows = csv_text.count("\n") > 1
    path.write_text(csv_text + ("2026-11-01,claude,good,1\n" if has_rows else ""))
    before = _stored()
    result = _cli("upstream", "import-costs", str(path))
    assert result.exit_code == 1
    assert message in result.output
    assert _stored() == before


def test_a_csv_lists_every_bad_row(admin_api: FakeAdmin, tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("day,provider,model,cost\n2026-11-01,claude,m,x\n2026-11-01,nobody,m,1\n")
    result = _cli("upstream", "import-costs", str(path))
    assert result.exit_code == 1
    assert "2 bad rows, nothing imported" in result.output
    assert "line 2: cost 'x'" in result.output and "line 3: no provider" in result.output
