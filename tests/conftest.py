"""Shared fixtures: migrated SQLite databases, and a real PostgreSQL server started for the run.

PostgreSQL comes from the machine's Debian binaries (initdb + pg_ctl) in a temporary directory on
a free loopback port; `make test` installs them when missing. Each test gets its own database,
cloned from a migrated template, so tests never see each other's rows.
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool

from creditdash.core import db, settings

BACKENDS = ["sqlite", "postgresql"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ------------------------------------------------------------------------------------- SQLite


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    db.upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    path = tmp_path / "creditdash.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite:///{path}"


# --------------------------------------------------------------------------------- PostgreSQL


class PostgresServer:
    # Speed over durability for throwaway test clusters; bench/run.py passes durable settings.
    TEST_SETTINGS = "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"

    def __init__(self, server_settings: str = TEST_SETTINGS) -> None:
        self.server_settings = server_settings
        candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not candidates:
            raise RuntimeError("PostgreSQL server binaries not found; run `make test-deps`")
        self.bindir = Path(candidates[-1]).parent
        self.root = Path(tempfile.mkdtemp(prefix="creditdash-pg-"))
        self.datadir = self.root / "data"
        self.port = free_port()
        self.as_root = os.geteuid() == 0
        self._counter = itertools.count()

    def _run(self, *args: str) -> None:
        command = [str(self.bindir / args[0]), *args[1:]]
        if self.as_root:  # initdb and postgres refuse to run as root
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        if self.as_root:
            shutil.chown(self.root, "postgres", "postgres")
        self._run("initdb", "-D", str(self.datadir), "-U", "postgres", "-A", "trust", "-E", "UTF8")
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
            f"-c max_connections=200 {self.server_settings}"
        )
        self._run(
            "pg_ctl", "-D", str(self.datadir), "-o", options, "-l", str(self.root / "log"), "-w",
            "start",
        )  # fmt: skip
        admin = db.make_engine(self.url("postgres"), poolclass=NullPool)
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("CREATE DATABASE cd_template"))
        admin.dispose()
        db.upgrade(self.url("cd_template"))

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.datadir), "-m", "immediate", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        name = f"cd_test_{next(self._counter)}"
        admin = db.make_engine(self.url("postgres"), poolclass=NullPool)
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text(f"CREATE DATABASE {name} TEMPLATE cd_template"))
        admin.dispose()
        return self.url(name)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server = PostgresServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    return postgres_server.new_database()


# ------------------------------------------------------------------------------------ engines


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest) -> str:
    """A fresh migrated database URL, once per backend."""
    fixture = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    return str(request.getfixturevalue(fixture))


def _configure(url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Engine:
    monkeypatch.setenv("CREDITDASH_DATABASE_URL", url)
    monkeypatch.setenv("CREDITDASH_DATA_DIR", str(tmp_path / "data"))
    settings.reset_settings()
    engine = db.make_engine(url)
    db.set_engine(engine)
    return engine


@pytest.fixture
def engine(database_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Engine]:
    """The process engine pointed at a fresh database of each backend."""
    engine = _configure(database_url, monkeypatch, tmp_path)
    yield engine
    db.set_engine(None)
    engine.dispose()
    settings.reset_settings()


@pytest.fixture
def sqlite_engine(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[Engine]:
    """The process engine on a fresh SQLite database only (for tests of non-ledger rules)."""
    engine = _configure(sqlite_url, monkeypatch, tmp_path)
    yield engine
    db.set_engine(None)
    engine.dispose()
    settings.reset_settings()


# -------------------------------------------------------------------------------------- Redis


class RedisServer:
    """A throwaway redis-server on a free loopback port (no persistence), as the e2e harness
    starts one. Tests that stop Redis mid-run start one of their own."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        server = shutil.which("redis-server")
        if server is None:
            pytest.fail("redis-server is missing (make test-deps installs it)")
        self.process = subprocess.Popen(
            [server, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.directory)],
            stdout=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        wait_for_port(self.port, timeout_s=30)

    def stop(self) -> None:
        stop_process_group(self.process, timeout_s=10)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One redis-server for the run. Tests share it: flush it, or use keys of their own."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


# ---------------------------------------------------------------------------------- processes


def stop_process_group(process: subprocess.Popen[bytes] | None, timeout_s: float = 30) -> None:
    """SIGTERM a server started with start_new_session=True (it and its workers), SIGKILL it
    if it has not exited after timeout_s."""
    if process is None or process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def wait_for_port(port: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"nothing listens on port {port} after {timeout_s} s")
