"""`creditdash` with a database it cannot reach: one `error:` line naming the database (without
its password) and why, exit status 1, no traceback (docs/contract.md, section 3)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy.engine import Engine

from creditdash.cli import main
from creditdash.core import db, settings
from tests.conftest import PostgresServer, free_port

REPO = Path(__file__).resolve().parents[1]


def creditdash(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CREDITDASH_DATABASE_URL": url, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "creditdash.cli", *args],
        env=env, capture_output=True, text=True, timeout=120, cwd=REPO,
    )  # fmt: skip


@pytest.mark.parametrize(
    "args", [("customers", "balance", "cus_x"), ("db", "upgrade"), ("ledger", "verify")]
)
def test_postgresql_on_a_closed_port(args: tuple[str, ...]) -> None:
    port = free_port()  # nothing listens there
    done = creditdash(f"postgresql://ops:s3cret-pw@127.0.0.1:{port}/creditdash", *args)
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr == (
        f"error: cannot reach the database at postgresql://ops:***@127.0.0.1:{port}/creditdash "
        "(connection refused); check CREDITDASH_DATABASE_URL\n"
    )
    assert "s3cret-pw" not in done.stderr and "Traceback" not in done.stderr


def test_sqlite_in_a_missing_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path}/no/such/folder/creditdash.db"
    monkeypatch.setenv("CREDITDASH_DATABASE_URL", url)
    settings.reset_settings()
    db.set_engine(None)
    try:
        for args in (["db", "upgrade"], ["customers", "balance", "cus_x"]):
            result = CliRunner().invoke(main, args)
            assert result.exit_code == 1, result.output
            assert result.stderr == (
                f"error: cannot reach the database at {url} (cannot open the database file; "
                "does its folder exist?); check CREDITDASH_DATABASE_URL\n"
            )
            assert result.exception is None or isinstance(result.exception, SystemExit)
    finally:
        db.set_engine(None)
        settings.reset_settings()
    assert not (tmp_path / "no").exists()


def test_a_missing_postgresql_database_is_not_called_unmigrated(
    postgres_server: PostgresServer,
) -> None:
    done = creditdash(postgres_server.url("no_such_db"), "customers", "balance", "cus_x")
    assert done.returncode == 1
    assert "(no such database)" in done.stderr and "not migrated" not in done.stderr
    assert done.stderr.count("\n") == 1


def test_other_errors_still_reach_the_terminal_as_before(sqlite_engine: Engine) -> None:
    # A reachable database with a refusal: the usual `error:` line, not "cannot reach".
    result = CliRunner().invoke(main, ["customers", "balance", "cus_missing"])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ") and "cannot reach" not in result.stderr


def test_downgrade_says_from_where_to_where(sqlite_engine: Engine) -> None:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(db.alembic_config())
    head = script.get_current_head()
    assert head is not None
    previous = script.get_revision(head).down_revision
    down = CliRunner().invoke(main, ["db", "downgrade"])
    assert down.exit_code == 0, down.output
    assert down.stdout == f"database downgraded from {head} to {previous}\n"
    assert db.current_revision() == previous
    up = CliRunner().invoke(main, ["db", "upgrade"])
    assert up.exit_code == 0 and db.current_revision() == head
