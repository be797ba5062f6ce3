"""Migrations: upgrade from empty, downgrade one, upgrade again; the models match them."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import CheckConstraint, inspect
from sqlalchemy.pool import NullPool
from sqlmodel import SQLModel

import creditdash.models  # noqa: F401
from creditdash import db
from tests.conftest import PostgresServer


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

    admin = db.make_engine(server.url("postgres"), poolclass=NullPool)
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("CREATE DATABASE cd_migrations"))
    admin.dispose()
    return server.url("cd_migrations")


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
    db.downgrade(empty_url, "-1")
    assert "users" in _tables(empty_url)
    assert _diff(empty_url) != []  # one step back, the schema no longer matches the models
    db.upgrade(empty_url)
    assert _tables(empty_url) == tables
    assert _diff(empty_url) == []
    db.downgrade(empty_url, "base")
    assert _tables(empty_url) == set()
    db.upgrade(empty_url)
    assert _diff(empty_url) == []
