"""Database engine, transactions and migrations.

One engine per process. SQLite runs in WAL mode and every write transaction starts with
BEGIN IMMEDIATE: a deferred transaction that reads and then writes can fail with SQLITE_BUSY
without waiting, while an immediate one queues on the busy timeout. PostgreSQL runs at
READ COMMITTED; correctness there comes from conditional UPDATEs and UNIQUE constraints.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any, cast

from sqlalchemy import event, text
from sqlalchemy.engine import CursorResult, Engine, Result, make_url
from sqlalchemy.pool import NullPool
from sqlmodel import Session, create_engine

from creditdash.core.settings import get_settings

SQLITE_BUSY_TIMEOUT_MS = 30_000
MIGRATIONS_DIR = Path(__file__).parent.parent / "migrations"

_engine: Engine | None = None
_engine_lock = threading.Lock()
# SQLite admits one writer at a time and makes the others sleep and retry (busy_timeout), which
# under load costs far more than the writes themselves. Writers of this process queue here
# instead and wake the moment the lock is free; other processes still meet busy_timeout.
_sqlite_writer = threading.Lock()


def normalize_url(url: str) -> str:
    """Accept plain postgresql:// URLs and use the psycopg 3 driver for them."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def make_engine(url: str, **kwargs: Any) -> Engine:
    url = normalize_url(url)
    if make_url(url).get_backend_name() == "sqlite":
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
            **kwargs,
        )
        _configure_sqlite(engine)
        return engine
    if "poolclass" not in kwargs:
        # CREDITDASH_DB_POOL_SIZE, _MAX_OVERFLOW, _POOL_TIMEOUT_S (docs/deploy.md, "Pools").
        settings = get_settings()
        kwargs.setdefault("pool_size", settings.db_pool_size)
        kwargs.setdefault("max_overflow", settings.db_max_overflow)
        kwargs.setdefault("pool_timeout", settings.db_pool_timeout_s)
    return create_engine(url, pool_pre_ping=True, **kwargs)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event issue BEGIN itself (the pysqlite driver would
        # otherwise start deferred transactions behind our back).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        if connection.get_execution_options().get("readonly"):
            connection.exec_driver_sql("BEGIN")
        else:
            connection.exec_driver_sql("BEGIN IMMEDIATE")


def get_engine() -> Engine:
    global _engine
    if _engine is None:
        with _engine_lock:
            if _engine is None:
                _engine = make_engine(get_settings().database_url)
    return _engine


def set_engine(engine: Engine | None) -> None:
    """Replace the process engine (tests, or a CLI given another URL)."""
    global _engine
    with _engine_lock:
        _engine = engine


@contextmanager
def session_scope(
    *, readonly: bool = False, snapshot: bool = False, engine: Engine | None = None
) -> Iterator[Session]:
    """One transaction: commit on success, roll back on any exception.

    readonly=True starts a deferred transaction on SQLite, so readers never queue behind writers.
    snapshot=True makes every read see one consistent state: REPEATABLE READ on PostgreSQL
    (SQLite's WAL readers already read one snapshot per transaction).
    """
    bind = engine or get_engine()
    if readonly:
        bind = bind.execution_options(readonly=True)
    if snapshot and bind.dialect.name == "postgresql":
        bind = bind.execution_options(isolation_level="REPEATABLE READ")
    writer = _sqlite_writer if not readonly and bind.dialect.name == "sqlite" else nullcontext()
    with writer, Session(bind, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def writer_lock(engine: Engine) -> AbstractContextManager[Any]:
    """What a write transaction on raw connections of this engine holds (see _sqlite_writer)."""
    return _sqlite_writer if engine.dialect.name == "sqlite" else nullcontext()


def rowcount(result: Result[Any]) -> int:
    """Rows matched by an UPDATE or DELETE: how every conditional write is checked."""
    return int(cast(CursorResult[Any], result).rowcount)


def ping(engine: Engine | None = None) -> bool:
    try:
        bind = (engine or get_engine()).execution_options(readonly=True)
        with bind.connect() as connection:
            connection.execute(text("SELECT 1"))
        return True
    except Exception:
        return False


def alembic_config(url: str | None = None) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # ConfigParser treats "%" as interpolation; URL-encoded passwords contain it.
    db_url = normalize_url(url or get_settings().database_url).replace("%", "%%")
    config.set_main_option("sqlalchemy.url", db_url)
    return config


def upgrade(url: str | None = None, revision: str = "head") -> None:
    from alembic import command

    command.upgrade(alembic_config(url), revision)


def downgrade(url: str | None = None, revision: str = "-1") -> None:
    from alembic import command

    command.downgrade(alembic_config(url), revision)


def current_revision(url: str | None = None) -> str | None:
    """The migration the database is at (None: none applied)."""
    from alembic.runtime.migration import MigrationContext

    engine = make_engine(url or get_settings().database_url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()
