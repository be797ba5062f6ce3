"""creditdash catalog import: all or nothing, guarded base URLs, encrypted upstream keys."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from creditdash.catalog.models import Provider, PublicModel, Route
from creditdash.cli import main
from creditdash.core import db, settings

GOOD = """
providers:
  - name: local
    base_url: https://models.example.com/v1
    api_key: sk-upstream-example-1234
    timeout_s: 120
models:
  - name: gpt-4o-mini
    price: {input_per_mtok: "0.60", output_per_mtok: "2.40", cached_input_per_mtok: "0.30"}
    routes:
      - provider: local
        upstream_model: gpt-4o-mini-2024
        priority: 1
        weight: 1
        cost: {input_per_mtok: "0.15", output_per_mtok: "0.60", cached_input_per_mtok: "0.075"}
  - name: pricey
    price: {input_per_mtok: "1", output_per_mtok: "1"}
    routes:
      - provider: local
        upstream_model: pricey-upstream
        cost: {input_per_mtok: "2", output_per_mtok: "2"}
        acknowledge_negative_margin: true
"""


def counts(engine: Engine) -> tuple[int, int, int]:
    with db.session_scope(engine=engine, readonly=True) as session:
        return tuple(  # type: ignore[return-value]
            int(session.execute(select(func.count()).select_from(m)).scalar_one())
            for m in (Provider, PublicModel, Route)
        )


def import_text(tmp_path: Path, text: str) -> tuple[int, str]:
    path = tmp_path / "catalog.yaml"
    path.write_text(text)
    result = CliRunner().invoke(main, ["catalog", "import", str(path)])
    return result.exit_code, result.output


@pytest.fixture
def resolvable(monkeypatch: pytest.MonkeyPatch) -> None:
    """models.example.com resolves to a public address without touching the network."""
    import socket

    real = socket.getaddrinfo

    def fake(host: str, *args: object, **kwargs: object) -> list[tuple]:  # type: ignore[type-arg]
        if host == "models.example.com":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", 0))]
        if host == "internal.example.com":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.1.2.3", 0))]
        return real(host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", fake)


def test_import_prints_margins_and_encrypts_the_upstream_key(
    sqlite_engine: Engine, tmp_path: Path, resolvable: None
) -> None:
    code, output = import_text(tmp_path, GOOD)
    assert code == 0, output
    assert "imported 1 providers and 2 models" in output
    assert "margin 75.00%" in output
    assert "NEGATIVE" in output and "pricey" in output
    assert "worst route" not in output  # every model here has one route
    assert counts(sqlite_engine) == (1, 2, 2)
    with db.session_scope(engine=sqlite_engine, readonly=True) as session:
        provider = session.execute(select(Provider)).scalar_one()
        assert "sk-upstream-example-1234" not in provider.api_key_encrypted
        assert provider.api_key_last4 == "1234"
        model = session.execute(
            select(PublicModel).where(PublicModel.name == "gpt-4o-mini")
        ).scalar_one()
        assert (model.input_price_micros_per_mtok, model.output_price_micros_per_mtok) == (
            600_000,
            2_400_000,
        )
    # Importing again updates in place.
    assert import_text(tmp_path, GOOD.replace('"2.40"', '"3.00"'))[0] == 0
    assert counts(sqlite_engine) == (1, 2, 2)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("https://models.example.com/v1", "http://169.254.169.254/v1"), "link-local"),
        (("https://models.example.com/v1", "http://127.0.0.1:8080/v1"), "loopback or private"),
        (
            ("https://models.example.com/v1", "https://internal.example.com/v1"),
            "loopback or private",
        ),
        (("https://models.example.com/v1", "http://[::ffff:169.254.169.254]/v1"), "link-local"),
        (("https://models.example.com/v1", "http://[2002:a9fe:a9fe::]/v1"), "link-local"),
        (("https://models.example.com/v1", "http://2130706433/v1"), "loopback or private"),
        (("https://models.example.com/v1", "http://0x7f.0.0.1/v1"), "loopback or private"),
        (("https://models.example.com/v1", "http://0177.0.0.1/v1"), "loopback or private"),
        (("https://models.example.com/v1", "file:///etc/passwd"), "http or https"),
        (("https://models.example.com/v1", "https://user:pw@models.example.com/v1"), "credentials"),
        (
            (
                "provider: local\n        upstream_model: pricey",
                "provider: nowhere\n        upstream_model: pricey",
            ),
            "unknown provider",
        ),
        (('output_per_mtok: "2.40"', 'output_per_mtok: "-1"'), "cannot be negative"),
        (('output_per_mtok: "2.40"', 'output_per_mtok: "0.0000001"'), "6 decimal places"),
        (("timeout_s: 120", "timeout_s: 0"), "timeout_s"),
    ]
    # Amounts: only plain ASCII digits, quoted or (whole numbers) not.
    + [
        (
            ('output_per_mtok: "2.40"', f"output_per_mtok: {spelling}"),
            "price.output_per_mtok must be a decimal number of credits written with plain digits",
        )
        for spelling in (
            '"1E-2"',
            '"1e3"',
            '" 5"',
            '"5 "',
            '"\u0661"',
            '"\uff15"',
            '"1_0"',
            "1_0",
            "0x10",
            "0o10",
            "1:30",
            "+5",
            '".5"',
            '"5."',
            '"NaN"',
            '"Infinity"',
            '""',
        )
    ]
    + [
        (('output_per_mtok: "2.40"', "output_per_mtok: 2.40"), 'in quotes, e.g. "0.60"'),
        (('output_per_mtok: "2.40"', "output_per_mtok: .inf"), 'in quotes, e.g. "0.60"'),
        (('output_per_mtok: "2.40"', "output_per_mtok: 1.0e+3"), 'in quotes, e.g. "0.60"'),
        (('output_per_mtok: "2.40"', "output_per_mtok: yes"), 'in quotes, e.g. "0.60"'),
        (('output_per_mtok: "2.40"', "output_per_mtok: -1"), "cannot be negative"),
        (
            ('cost: {input_per_mtok: "0.15"', 'cost: {input_per_mtok: "1e-2"'),
            "route local/gpt-4o-mini-2024: cost.input_per_mtok must be a decimal number",
        ),
    ],
)
def test_one_bad_entry_changes_nothing(
    sqlite_engine: Engine, tmp_path: Path, resolvable: None, change: tuple[str, str], message: str
) -> None:
    assert import_text(tmp_path, GOOD)[0] == 0
    before = counts(sqlite_engine)
    with db.session_scope(engine=sqlite_engine, readonly=True) as session:
        price_before = (
            session.execute(select(PublicModel.output_price_micros_per_mtok)).scalars().all()
        )
    bad = GOOD.replace(change[0], change[1]).replace('"2.40"', '"9.99"', 1)
    assert bad != GOOD
    code, output = import_text(tmp_path, bad)
    assert code != 0
    assert message in output, output
    assert counts(sqlite_engine) == before
    with db.session_scope(engine=sqlite_engine, readonly=True) as session:
        assert (
            session.execute(select(PublicModel.output_price_micros_per_mtok)).scalars().all()
            == price_before
        )


def test_unquoted_whole_numbers_are_plain_decimal() -> None:
    """An unquoted 2 is 2 credits, and 010 is ten (not YAML 1.1's octal eight)."""
    from creditdash.catalog.importer import parse_catalog

    text = GOOD.replace('output_per_mtok: "2.40"', "output_per_mtok: 2", 1).replace(
        'input_per_mtok: "0.60"', "input_per_mtok: 010", 1
    )
    price = parse_catalog(text).models[0].price.to_price()
    assert (price.input_micros_per_mtok, price.output_micros_per_mtok) == (10_000_000, 2_000_000)


def test_private_upstreams_need_the_operator_switch(
    sqlite_engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, resolvable: None
) -> None:
    local = GOOD.replace("https://models.example.com/v1", "http://127.0.0.1:18080/v1")
    assert import_text(tmp_path, local)[0] != 0
    monkeypatch.setenv("CREDITDASH_ALLOW_PRIVATE_UPSTREAMS", "1")
    settings.reset_settings()
    assert import_text(tmp_path, local)[0] == 0
    # Metadata addresses stay refused even then.
    metadata = GOOD.replace("https://models.example.com/v1", "http://169.254.169.254/v1")
    assert import_text(tmp_path, metadata)[0] != 0


def test_not_yaml_or_wrong_shape(sqlite_engine: Engine, tmp_path: Path) -> None:
    for text in ("{{{", "- a list", "models: [{name: x}]"):
        code, output = import_text(tmp_path, text)
        assert code == 1 and "error:" in output


def test_a_loss_making_route_needs_an_acknowledgement_which_is_audited(
    sqlite_engine: Engine, tmp_path: Path, resolvable: None
) -> None:
    from creditdash.core.audit import AuditEntry

    unacknowledged = GOOD.replace("        acknowledge_negative_margin: true\n", "")
    code, output = import_text(tmp_path, unacknowledged)
    assert code == 1 and "costs more than its price" in output
    assert counts(sqlite_engine) == (0, 0, 0)
    # A disabled loss-making route needs no acknowledgement.
    disabled = unacknowledged.replace(
        "upstream_model: pricey-upstream", "upstream_model: pricey-upstream\n        enabled: false"
    )
    assert import_text(tmp_path, disabled)[0] == 0
    assert import_text(tmp_path, GOOD)[0] == 0
    assert import_text(tmp_path, GOOD)[0] == 0  # acknowledged once, audited once
    with db.session_scope(engine=sqlite_engine, readonly=True) as session:
        entries = (
            session.execute(
                select(AuditEntry).where(AuditEntry.action == "route.acknowledge_negative_margin")
            )
            .scalars()
            .all()
        )
        route = session.execute(
            select(Route).where(Route.upstream_model == "pricey-upstream")
        ).scalar_one()
    assert len(entries) == 1 and entries[0].target_id == "pricey/local/pricey-upstream"
    assert route.negative_margin_acknowledged_at is not None


def test_fallback_policy_is_validated(
    sqlite_engine: Engine, tmp_path: Path, resolvable: None
) -> None:
    bad = GOOD.replace(
        "  - name: pricey\n", "  - name: pricey\n    fallback: {fall_through: [timeout, teapot]}\n"
    )
    code, output = import_text(tmp_path, bad)
    assert code == 1 and "unknown failure kinds" in output


def test_worst_route_per_model() -> None:
    from creditdash.catalog.importer import MarginLine, worst_routes

    lines = [
        MarginLine("m", "a", "x", 1000, 200, 8000),
        MarginLine("m", "b", "y", 1000, 900, 1000),
        MarginLine("solo", "a", "z", 1000, 100, 9000),
    ]
    assert [(w.model, w.provider) for w in worst_routes(lines)] == [("m", "b")]


HEADER_SECRET = "azure-api-key-PLAINTEXT-5555"


def test_extra_header_values_are_stored_encrypted_and_shown_by_name_only(
    sqlite_engine: Engine, tmp_path: Path, resolvable: None
) -> None:
    from sqlalchemy import text

    from creditdash.catalog import providers
    from creditdash.core.audit import Actor, AuditEntry
    from creditdash.proxy.snapshot import load_snapshot

    with_headers = GOOD.replace(
        "    timeout_s: 120\n",
        f"    timeout_s: 120\n    headers: {{api-key: {HEADER_SECRET}, X-Org: acme-org}}\n",
    )
    code, output = import_text(tmp_path, with_headers)
    assert code == 0, output
    with sqlite_engine.connect() as connection:
        raw = connection.execute(text("SELECT extra_headers_json FROM providers")).scalar_one()
    assert HEADER_SECRET not in raw and "acme-org" not in raw
    assert sorted(json.loads(raw)) == ["X-Org", "api-key"]
    with db.session_scope(engine=sqlite_engine, readonly=True) as session:
        (entry,) = [m for m in load_snapshot(session).models.values() if m.name == "gpt-4o-mini"]
        assert entry.routes[0].extra_headers == {"api-key": HEADER_SECRET, "X-Org": "acme-org"}
        (view,) = providers.list_providers(session)
    assert view.headers_hint == "X-Org: ••••, api-key: ••••"
    # An admin edit (the form has no header fields) keeps the stored headers.
    with db.session_scope(engine=sqlite_engine) as session:
        providers.save_provider(
            session,
            name="local",
            base_url="https://models.example.com/v1",
            api_key="",
            timeout_s=60,
            enabled=True,
            actor=Actor(label="admin-test"),
        )
    with db.session_scope(engine=sqlite_engine, readonly=True) as session:
        (entry,) = [m for m in load_snapshot(session).models.values() if m.name == "gpt-4o-mini"]
        assert entry.routes[0].extra_headers == {"api-key": HEADER_SECRET, "X-Org": "acme-org"}
        audit = " ".join(
            (e.before_json or "") + (e.after_json or "")
            for e in session.execute(select(AuditEntry)).scalars()
        )
    assert HEADER_SECRET not in audit and "acme-org" not in audit and "api-key" in audit


ANTHROPIC = """
providers:
  - name: claude
    kind: anthropic
    base_url: https://models.example.com/v1
    api_key: sk-ant-example-1234
  - name: responder
    base_url: https://models.example.com/v1
    responses: true
models:
  - name: claude-house
    price: {input_per_mtok: "3", output_per_mtok: "15", cached_input_per_mtok: "0.30",
            cache_write_per_mtok: "3.75"}
    routes:
      - provider: claude
        upstream_model: claude-upstream
        cost: {input_per_mtok: "2", output_per_mtok: "10", cache_write_per_mtok: "2.5"}
  - name: plain
    price: {input_per_mtok: "1", output_per_mtok: "1"}
    routes:
      - provider: responder
        upstream_model: plain-upstream
        output_cap_param: max_completion_tokens
        cost: {input_per_mtok: "0.5", output_per_mtok: "0.5"}
"""


def test_anthropic_kind_responses_flag_and_cache_write_prices(
    sqlite_engine: Engine, tmp_path: Path, resolvable: None
) -> None:
    code, output = import_text(tmp_path, ANTHROPIC)
    assert code == 0, output
    with db.session_scope(engine=sqlite_engine, readonly=True) as session:
        providers = {p.name: p for p in session.execute(select(Provider)).scalars()}
        assert providers["claude"].kind == "anthropic"
        assert not providers["claude"].serves_responses
        assert providers["responder"].serves_responses
        models = {m.name: m for m in session.execute(select(PublicModel)).scalars()}
        assert models["claude-house"].cache_write_price_micros_per_mtok == 3_750_000
        # Not given: NULL, which prices cache writes as input.
        assert models["plain"].cache_write_price_micros_per_mtok is None
        routes = {r.upstream_model: r for r in session.execute(select(Route)).scalars()}
        assert routes["claude-upstream"].cache_write_cost_micros_per_mtok == 2_500_000
        assert routes["claude-upstream"].output_cap_param == "auto"  # the default
        assert routes["plain-upstream"].output_cap_param == "max_completion_tokens"


def test_an_unknown_provider_kind_is_refused(sqlite_engine: Engine, tmp_path: Path) -> None:
    code, output = import_text(tmp_path, ANTHROPIC.replace("kind: anthropic", "kind: gemini"))
    assert code != 0
    assert "kind must be one of" in output
    assert counts(sqlite_engine) == (0, 0, 0)


def test_an_unknown_output_cap_param_is_refused(sqlite_engine: Engine, tmp_path: Path) -> None:
    bad = ANTHROPIC.replace("output_cap_param: max_completion_tokens", "output_cap_param: cap")
    code, output = import_text(tmp_path, bad)
    assert code != 0
    assert "output_cap_param must be one of auto, max_tokens, max_completion_tokens" in output
    assert counts(sqlite_engine) == (0, 0, 0)


CACHE_LOSS = """
providers:
  - name: local
    base_url: https://models.example.com/v1
    api_key: sk-upstream-example-1234
models:
  - name: cachey
    # Pays on plain traffic, but the route's cache writes cost more than they are sold for.
    price: {input_per_mtok: "3", output_per_mtok: "15", cache_write_per_mtok: "3"}
    routes:
      - provider: local
        upstream_model: cachey-upstream
        cost: {input_per_mtok: "1", output_per_mtok: "5", cache_write_per_mtok: "9"}
"""


def test_the_margin_review_catches_a_loss_on_cache_traffic_alone(
    sqlite_engine: Engine, tmp_path: Path, resolvable: None
) -> None:
    code, output = import_text(tmp_path, CACHE_LOSS)
    assert code == 1, output
    # 100 x 3 + 900 x 3 + 500 x 15 = 10,500 micros charged; 100 + 900 x 9 + 500 x 5 = 10,700 paid.
    assert "900 written to cache" in output and "0.0105" in output and "0.0107" in output
    assert counts(sqlite_engine) == (0, 0, 0)
    acknowledged = CACHE_LOSS.replace(
        'cache_write_per_mtok: "9"}',
        'cache_write_per_mtok: "9"}\n        acknowledge_negative_margin: true',
    )
    code, output = import_text(tmp_path, acknowledged)
    assert code == 0, output
    # The reference mix itself makes money; the listing flags the route all the same.
    assert "NEGATIVE" in output
