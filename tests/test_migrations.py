"""Migrations: upgrade from empty, downgrade one, upgrade again; the models match them."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import CheckConstraint, inspect
from sqlalchemy.pool import NullPool
from sqlmodel import SQLModel

import creditdash.models  # noqa: F401
from creditdash.core import crypto, db, settings
from tests.conftest import PostgresServer

_databases = itertools.count()


def _tables(url: str) -> set[str]:
    engine = db.make_engine(url, poolclass=NullPool)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def _diff(url: str) -> list[object]:
    engine = db.make_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            return list(compare_metadata(context, SQLModel.metadata))
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request: pytest.FixtureRequest, tmp_path) -> str:  # type: ignore[no-untyped-def]
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'empty.db'}"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    from sqlalchemy import text

    name = f"cd_migrations_{next(_databases)}"
    admin = db.make_engine(server.url("postgres"), poolclass=NullPool)
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    admin.dispose()
    return server.url(name)


def _check_constraints(url: str) -> set[tuple[str, str]]:
    engine = db.make_engine(url, poolclass=NullPool)
    try:
        inspector = inspect(engine)
        return {
            (table, check["name"])
            for table in inspector.get_table_names()
            for check in inspector.get_check_constraints(table)
            if check.get("name")
        }
    finally:
        engine.dispose()


def test_upgrade_downgrade_upgrade(empty_url: str) -> None:
    db.upgrade(empty_url)
    tables = _tables(empty_url)
    assert {"users", "customers", "api_keys", "ledger_accounts", "transfers", "audit_log"} <= tables
    assert {"providers", "public_models", "routes", "usage_records"} <= tables
    assert _diff(empty_url) == []
    # compare_metadata does not look at CHECK constraints; the ledger relies on them.
    declared = {
        (table.name, constraint.name)
        for table in SQLModel.metadata.sorted_tables
        for constraint in table.constraints
        if isinstance(constraint, CheckConstraint) and isinstance(constraint.name, str)
    }
    assert declared and _check_constraints(empty_url) == declared
    # Back to before 0006 (price_schedules): the schema no longer matches the models. (Not
    # "-1": the newest step may change data only, e.g. 0009's header encryption.)
    db.downgrade(empty_url, "0005")
    assert "users" in _tables(empty_url)
    assert _diff(empty_url) != []
    db.upgrade(empty_url)
    assert _tables(empty_url) == tables
    assert _diff(empty_url) == []
    db.downgrade(empty_url, "base")
    assert _tables(empty_url) == set()
    db.upgrade(empty_url)
    assert _diff(empty_url) == []


# ------------------------------------------------------------ 0009: provider header values

HEADERS_MIGRATION = "0009"
PROVIDERS = sa.table(
    "providers",
    *(
        sa.column(c)
        for c in (
            "id",
            "name",
            "kind",
            "base_url",
            "api_key_encrypted",
            "api_key_last4",
            "timeout_s",
            "extra_headers_json",
            "enabled",
            "created_at",
            "updated_at",
        )
    ),
)


def _stored_headers(url: str) -> dict[str, dict[str, str]]:
    engine = db.make_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            rows = connection.execute(sa.select(PROVIDERS.c.name, PROVIDERS.c.extra_headers_json))
            return {name: json.loads(stored) for name, stored in rows}
    finally:
        engine.dispose()


def test_provider_header_values_are_encrypted_on_upgrade_and_back_on_downgrade(
    empty_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("CREDITDASH_SECRET_KEY", "migration-test-secret-" + "k" * 32)
    monkeypatch.setenv("CREDITDASH_DATA_DIR", str(tmp_path / "data"))
    settings.reset_settings()
    before = ScriptDirectory.from_config(db.alembic_config(empty_url)).get_revision(
        HEADERS_MIGRATION
    )
    assert before is not None and isinstance(before.down_revision, str)
    db.upgrade(empty_url, before.down_revision)
    secret = "azure-key-PLAINTEXT-0123456789"
    # A value some code already encrypted must come through unchanged (no double encryption).
    token = crypto.encrypt("already-encrypted-value", purpose="provider-key")
    now = datetime.now(UTC)
    common = {
        "kind": "openai",
        "base_url": "https://models.example.com/v1",
        "api_key_encrypted": "",
        "api_key_last4": "",
        "timeout_s": 30,
        "enabled": True,
        "created_at": now,
        "updated_at": now,
    }
    engine = db.make_engine(empty_url, poolclass=NullPool)
    with engine.begin() as connection:
        connection.execute(
            PROVIDERS.insert(),
            [
                {
                    **common,
                    "name": "plain",
                    "extra_headers_json": json.dumps({"api-key": secret, "x-org": "acme"}),
                },
                {**common, "name": "mixed", "extra_headers_json": json.dumps({"x-tok": token})},
                {**common, "name": "none", "extra_headers_json": "{}"},
            ],
        )
    engine.dispose()

    db.upgrade(empty_url, HEADERS_MIGRATION)
    stored = _stored_headers(empty_url)
    raw = json.dumps(stored)
    assert secret not in raw and "acme" not in raw
    assert set(stored["plain"]) == {"api-key", "x-org"}  # names stay readable
    assert crypto.decrypt(stored["plain"]["api-key"], purpose="provider-key") == secret
    assert crypto.decrypt(stored["plain"]["x-org"], purpose="provider-key") == "acme"
    assert stored["mixed"] == {"x-tok": token}
    assert stored["none"] == {}

    db.upgrade(empty_url)
    assert _diff(empty_url) == []
    db.downgrade(empty_url, before.down_revision)
    assert _stored_headers(empty_url) == {
        "plain": {"api-key": secret, "x-org": "acme"},
        "mixed": {"x-tok": "already-encrypted-value"},
        "none": {},
    }
    db.upgrade(empty_url)  # and forward again
    assert secret not in json.dumps(_stored_headers(empty_url))

    # A token under another secret key stops the migration instead of being encrypted again.
    db.downgrade(empty_url, before.down_revision)
    monkeypatch.setenv("CREDITDASH_SECRET_KEY", "another-secret-entirely-" + "z" * 32)
    settings.reset_settings()
    foreign = crypto.encrypt("value", purpose="provider-key")
    monkeypatch.setenv("CREDITDASH_SECRET_KEY", "migration-test-secret-" + "k" * 32)
    settings.reset_settings()
    engine = db.make_engine(empty_url, poolclass=NullPool)
    with engine.begin() as connection:
        connection.execute(
            PROVIDERS.update()
            .where(PROVIDERS.c.name == "none")
            .values(extra_headers_json=json.dumps({"x-other": foreign}))
        )
    engine.dispose()
    with pytest.raises(RuntimeError, match="encrypted with another key"):
        db.upgrade(empty_url, HEADERS_MIGRATION)
