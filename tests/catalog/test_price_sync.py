"""`prices sync` against the price data bundled with genai-prices: cost schedules on their
effective date, the margin gate closing a below-cost route until accepted, unknown models
flagged, dry runs changing nothing, and a second run adding nothing."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from creditdash.catalog import price_sync
from creditdash.catalog.cost_schedules import apply_due_cost_schedules
from creditdash.catalog.importer import import_catalog, parse_catalog
from creditdash.catalog.models import PriceSyncReview, PublicModel, Route, RouteCostSchedule
from creditdash.cli import main
from creditdash.core import db, settings
from creditdash.core.audit import Actor, AuditEntry
from creditdash.core.errors import AlreadyResolved, ValidationFailed
from creditdash.core.timeutil import utcnow
from creditdash.proxy.snapshot import load_snapshot

ADMIN = Actor(label="admin-test")
# gpt-4o-mini in genai-prices 0.2.5: $0.15 input, $0.075 cache read, $0.60 output per 1M
# tokens; claude-3-5-haiku: $0.80 input, $0.08 cache read, $1 cache write, $4 output.
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
  - name: gpt-4o-mini
    price: {input_per_mtok: "0.60", output_per_mtok: "2.40", cached_input_per_mtok: "0.30"}
    routes:
      - provider: openai-direct
        upstream_model: gpt-4o-mini
        cost: {input_per_mtok: "0.10", output_per_mtok: "0.50", cached_input_per_mtok: "0.05"}
  - name: cheap-mini
    price: {input_per_mtok: "0.12", output_per_mtok: "0.55", cached_input_per_mtok: "0.06"}
    routes:
      - provider: openai-direct
        upstream_model: gpt-4o-mini
        cost: {input_per_mtok: "0.10", output_per_mtok: "0.50", cached_input_per_mtok: "0.05"}
  - name: house-model
    price: {input_per_mtok: "1", output_per_mtok: "1"}
    routes:
      - provider: openai-direct
        upstream_model: our-own-finetune-7
        cost: {input_per_mtok: "0.10", output_per_mtok: "0.10"}
  - name: haiku
    price: {input_per_mtok: "1.60", output_per_mtok: "8", cached_input_per_mtok: "0.16",
            cache_write_per_mtok: "2"}
    routes:
      - provider: claude
        upstream_model: claude-3-5-haiku-latest
        cost: {input_per_mtok: "0.80", output_per_mtok: "4", cached_input_per_mtok: "0.08",
               cache_write_per_mtok: "1"}
  - name: sandbox-chat
    price: {input_per_mtok: "0.60", output_per_mtok: "2.40"}
    routes:
      - provider: sandbox
        upstream_model: sandbox-chat
        cost: {input_per_mtok: "0.15", output_per_mtok: "0.60"}
"""


@pytest.fixture
def catalog(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CREDITDASH_ALLOW_PRIVATE_UPSTREAMS", "1")
    settings.reset_settings()
    with db.session_scope() as session:
        import_catalog(session, parse_catalog(CATALOG))


def _route(model: str) -> Route:
    with db.session_scope(readonly=True) as session:
        return session.execute(
            select(Route)
            .join(PublicModel, PublicModel.id == Route.model_id)
            .where(PublicModel.name == model)
        ).scalar_one()


def _counts() -> tuple[int, int, int]:
    with db.session_scope(readonly=True) as session:
        return (
            session.execute(select(func.count()).select_from(RouteCostSchedule)).scalar_one(),
            session.execute(select(func.count()).select_from(PriceSyncReview)).scalar_one(),
            session.execute(select(func.count()).select_from(AuditEntry)).scalar_one(),
        )


def _sync(**kw: object) -> price_sync.SyncResult:
    with db.session_scope() as session:
        return price_sync.sync_prices(session, actor=ADMIN, **kw)  # type: ignore[arg-type]


def _outcomes(result: price_sync.SyncResult) -> dict[str, str]:
    return {line.route: line.outcome for line in result.lines}


def _served() -> set[str]:
    with db.session_scope(readonly=True) as session:
        return {name for name, entry in load_snapshot(session).models.items() if entry.routes}


def test_conversion_is_exact_and_never_understates() -> None:
    assert price_sync.usd_to_micros(Decimal("0.075"), rate=Decimal(1)) == 75_000
    assert price_sync.usd_to_micros(Decimal("2.5"), rate=Decimal("0.9")) == 2_250_000
    # Ten dollars per thousand requests: one cent a request.
    assert price_sync.usd_to_micros(Decimal(10), per=1000, rate=Decimal(1)) == 10_000
    # More digits than a micro holds round up, to the next micro.
    assert price_sync.usd_to_micros(Decimal("0.0000001"), rate=Decimal(1)) == 1
    assert price_sync.usd_to_micros(Decimal("1"), rate=Decimal(3) / 7) == 428_572


def test_dry_run_changes_nothing(catalog: None) -> None:
    before = _counts()
    cost_before = _route("gpt-4o-mini").input_cost_micros_per_mtok
    result = _sync(dry_run=True)
    assert result.dry_run
    assert _outcomes(result) == {
        "cheap-mini:openai-direct/gpt-4o-mini": "changed",
        "gpt-4o-mini:openai-direct/gpt-4o-mini": "changed",
        "haiku:claude/claude-3-5-haiku-latest": "unchanged",
        "house-model:openai-direct/our-own-finetune-7": "unknown_model",
        "sandbox-chat:sandbox/sandbox-chat": "skipped",
    }
    closing = {line.route for line in result.lines if line.closed}
    assert closing == {
        "cheap-mini:openai-direct/gpt-4o-mini",
        "house-model:openai-direct/our-own-finetune-7",
    }
    assert _counts() == before
    assert _route("gpt-4o-mini").input_cost_micros_per_mtok == cost_before
    assert _route("cheap-mini").enabled and _route("house-model").enabled


def test_a_sync_schedules_the_new_cost_for_its_effective_date(catalog: None) -> None:
    at = utcnow() + timedelta(hours=2)
    result = _sync(effective_at=at)
    [line] = [ln for ln in result.lines if ln.route.startswith("gpt-4o-mini:")]
    assert line.matched_model == "openai/gpt-4o-mini"
    assert line.after == {
        "input_micros_per_mtok": 150_000,
        "cached_input_micros_per_mtok": 75_000,
        "cache_write_micros_per_mtok": None,
        "output_micros_per_mtok": 600_000,
        "request_micros": 0,
    }
    assert not line.flagged and not line.closed
    assert _route("gpt-4o-mini").input_cost_micros_per_mtok == 100_000  # not before its time
    with db.session_scope() as session:
        assert apply_due_cost_schedules(session, now=at - timedelta(seconds=1)) == 0
        assert apply_due_cost_schedules(session, now=at + timedelta(seconds=1)) == 2
    route = _route("gpt-4o-mini")
    assert (route.input_cost_micros_per_mtok, route.cached_input_cost_micros_per_mtok,
            route.output_cost_micros_per_mtok) == (150_000, 75_000, 600_000)  # fmt: skip
    with db.session_scope(readonly=True) as session:
        actions = set(session.execute(select(AuditEntry.action)).scalars())
    assert {"route.cost_scheduled", "price_sync.proposed", "price_sync.flagged",
            "route.cost"} <= actions  # fmt: skip


def test_a_below_cost_route_is_closed_until_an_admin_accepts(catalog: None) -> None:
    assert "cheap-mini" in _served()
    _sync()  # effective now: the cost applies at once
    route = _route("cheap-mini")
    assert route.input_cost_micros_per_mtok == 150_000
    assert not route.enabled
    assert "cheap-mini" not in _served()
    assert "gpt-4o-mini" in _served()  # its margin holds: scheduled, not closed
    with db.session_scope(readonly=True) as session:
        pending = {r.route: r for r in price_sync.list_reviews(session)}
    review = pending["cheap-mini:openai-direct/gpt-4o-mini"]
    assert review.losing and review.closed and review.loss_mix
    with db.session_scope() as session:
        done = price_sync.decide_review(session, review_id=review.id, accept=True, actor=ADMIN)
    assert "open again" in done
    route = _route("cheap-mini")
    assert route.enabled and route.negative_margin_acknowledged_at is not None
    assert "cheap-mini" in _served()
    with db.session_scope() as session, pytest.raises(AlreadyResolved):
        price_sync.decide_review(session, review_id=review.id, accept=False, actor=ADMIN)


def test_an_unknown_model_is_flagged_and_closed(catalog: None) -> None:
    result = _sync()
    [line] = [ln for ln in result.lines if ln.route.startswith("house-model:")]
    assert line.outcome == "unknown_model" and line.flagged and line.closed
    assert "house-model" not in _served()
    with db.session_scope(readonly=True) as session:
        [review] = [r for r in price_sync.list_reviews(session) if r.kind == "unknown_model"]
    with db.session_scope() as session:
        price_sync.decide_review(session, review_id=review.id, accept=False, actor=ADMIN)
    assert not _route("house-model").enabled  # rejected: nothing says what it costs


def test_the_flag_gate_only_flags(catalog: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CREDITDASH_PRICE_SYNC_GATE", "flag")
    settings.reset_settings()
    result = _sync()
    assert result.gate == "flag"
    flagged = {line.route for line in result.lines if line.flagged}
    assert flagged == {
        "cheap-mini:openai-direct/gpt-4o-mini",
        "house-model:openai-direct/our-own-finetune-7",
    }
    assert not any(line.closed for line in result.lines)
    assert {"cheap-mini", "house-model"} <= _served()


def test_running_sync_twice_adds_nothing(catalog: None) -> None:
    at = utcnow() + timedelta(days=1)
    _sync(effective_at=at)
    after_first = _counts()
    second = _sync(effective_at=at + timedelta(hours=1))
    assert _counts() == after_first
    assert _outcomes(second) == {
        "cheap-mini:openai-direct/gpt-4o-mini": "unchanged",
        "gpt-4o-mini:openai-direct/gpt-4o-mini": "unchanged",
        "haiku:claude/claude-3-5-haiku-latest": "unchanged",
        "house-model:openai-direct/our-own-finetune-7": "already_flagged",
        "sandbox-chat:sandbox/sandbox-chat": "skipped",
    }


def test_a_rejected_cost_is_cancelled_and_not_proposed_again(catalog: None) -> None:
    at = utcnow() + timedelta(hours=1)
    _sync(effective_at=at)
    with db.session_scope(readonly=True) as session:
        [review] = [r for r in price_sync.list_reviews(session) if r.route.startswith("cheap-mini")]
    with db.session_scope() as session:
        price_sync.decide_review(session, review_id=review.id, accept=False, actor=ADMIN)
    assert _route("cheap-mini").enabled  # its cost before passed the review
    with db.session_scope() as session:
        apply_due_cost_schedules(session, now=at + timedelta(seconds=1))
    assert _route("cheap-mini").input_cost_micros_per_mtok == 100_000
    again = _sync()
    assert _outcomes(again)["cheap-mini:openai-direct/gpt-4o-mini"] == "already_rejected"


def test_bad_effective_times_are_refused(catalog: None) -> None:
    before = _counts()
    with pytest.raises(ValidationFailed, match="past"):
        _sync(effective_at=utcnow() - timedelta(days=1))
    with pytest.raises(ValidationFailed, match="time zone"):
        _sync(effective_at=utcnow().replace(tzinfo=None) + timedelta(days=1))
    assert _counts() == before


def test_only_the_bundled_data_is_read(catalog: None, monkeypatch: pytest.MonkeyPatch) -> None:
    import httpx2
    from genai_prices import data_snapshot

    def no_network(*args: object, **kwargs: object) -> object:
        raise AssertionError("the price sync must not fetch anything")

    monkeypatch.setattr(httpx2, "get", no_network)
    monkeypatch.setattr(httpx2.Client, "send", no_network)
    # A snapshot the library's auto-updater could have installed is not the bundled data.
    monkeypatch.setattr(data_snapshot, "_custom_snapshot", data_snapshot.DataSnapshot([], True))
    result = _sync(dry_run=True)
    assert result.data_version == "genai-prices 0.2.5"
    assert _outcomes(result)["gpt-4o-mini:openai-direct/gpt-4o-mini"] == "changed"


def _cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def test_the_command_shows_dry_runs_syncs_and_accepts(catalog: None) -> None:
    before = _counts()
    dry = _cli("prices", "sync", "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    shown = json.loads(dry.output)
    assert shown["dry_run"] and shown["gate"] == "close"
    assert shown["data_version"] == "genai-prices 0.2.5"
    [cheap] = [r for r in shown["routes"] if r["route"].startswith("cheap-mini:")]
    assert cheap["before"]["input_micros_per_mtok"] == 100_000
    assert cheap["after"]["input_micros_per_mtok"] == 150_000
    assert cheap["closed"] and cheap["loss_mix"]
    assert _counts() == before
    text = _cli("prices", "sync", "--effective", "2999-01-01T00:00:00")
    assert text.exit_code == 0, text.output
    assert "input_per_mtok 0.100000 -> 0.150000" in text.output
    assert "CLOSED until accepted" in text.output
    assert "effective 2999-01-01T00:00:00+00:00" in text.output
    findings = json.loads(_cli("prices", "findings", "--json").output)
    [closed] = [f for f in findings if f["route"].startswith("cheap-mini:")]
    accepted = _cli("prices", "accept", str(closed["id"]), "--json")
    assert json.loads(accepted.output)["status"] == "accepted"
    again = _cli("prices", "accept", str(closed["id"]))
    assert again.exit_code == 1 and "already decided" in again.output
    assert _route("cheap-mini").enabled


def test_the_command_refuses_bad_input_without_changing_anything(catalog: None) -> None:
    before = _counts()
    bad = _cli("prices", "sync", "--effective", "next tuesday")
    assert bad.exit_code == 1 and "not an ISO 8601" in bad.output
    past = _cli("prices", "sync", "--effective", "2001-01-01T00:00:00Z")
    assert past.exit_code == 1 and "cannot be in the past" in past.output
    missing = _cli("prices", "accept", "9999")
    assert missing.exit_code == 1 and "no price sync finding 9999" in missing.output
    assert _counts() == before
