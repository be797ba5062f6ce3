"""Threads that each own one database connection, for the gateway's per-request writes.

The rule: no blocking database call on the event loop. Work is handed to one of these threads
with a queue and awaited as a future, which costs less than asyncio.to_thread, and each thread
keeps one DB-API connection open instead of checking one out of the pool per transaction.
SQLite gets one thread per process (it admits one writer at a time anyway); PostgreSQL two.

A job, once queued, always runs to the end, even if the coroutine awaiting it is cancelled: a
settlement that has started is never abandoned halfway.

On SQLite the workers' connections do not checkpoint the WAL when they commit (SQLite's default
is to copy the log into the database, and sync it, inside whichever commit passes 1000 pages: a
few milliseconds charged to one unlucky request, more than half the cost of all commits on
average). A separate thread checkpoints instead, PASSIVE and every CHECKPOINT_INTERVAL_S, so
commits only append to the log; readers and writers never wait for it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import queue
import select
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)

T = TypeVar("T")
# A PostgreSQL connection idle for longer than this is pinged before it is used again (what the
# pool's pre-ping would do), so a restarted server does not fail the next request.
IDLE_PING_S = 30.0
CHECKPOINT_INTERVAL_S = 0.5

_Job = tuple[Callable[..., Any], tuple[Any, ...], Any, Any]


def _closed_by_server(connection: Any) -> bool:
    """Whether an idle PostgreSQL connection has something to read, which between
    transactions only happens when the server has sent its goodbye (a restart, a failover,
    pg_terminate_backend) or closed the socket. One poll, no round trip; poll() rather than
    select(), which cannot watch descriptors numbered 1024 or more."""
    poller = select.poll()
    try:
        poller.register(connection.fileno(), select.POLLIN)
    except (OSError, ValueError):  # no socket any more
        return True
    return bool(poller.poll(0))


def _resolve(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class DbWorkers:
    """`threads` worker threads for one engine; jobs are called as fn(connection, *args)."""

    def __init__(self, engine: Engine, threads: int) -> None:
        self.engine = engine
        self._dbapi_error: type[Exception] = engine.dialect.loaded_dbapi.Error
        self._sqlite = engine.dialect.name == "sqlite"
        self._ping_idle = not self._sqlite
        self._stopped = threading.Event()
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._local = threading.local()
        self._threads = [
            threading.Thread(target=self._serve, name=f"creditdash-db-{n}", daemon=True)
            for n in range(threads)
        ]
        for thread in self._threads:
            thread.start()
        self._checkpointer: threading.Thread | None = None
        if self._sqlite:
            self._checkpointer = threading.Thread(
                target=self._checkpoint, name="creditdash-wal", daemon=True
            )
            self._checkpointer.start()

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run fn(connection, *args) on a worker thread and await its result."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._jobs.put((fn, args, loop, future))
        return await future

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """The same from synchronous code in any thread (inline on a worker thread)."""
        if getattr(self._local, "worker", False):
            return fn(self._connection(), *args)
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._jobs.put((fn, args, None, future))
        return future.result()

    def close(self, timeout_s: float = 10.0) -> None:
        """Finish the queued jobs, close the connections and stop the threads."""
        self._stopped.set()
        for _ in self._threads:
            self._jobs.put(None)
        for thread in [*self._threads, self._checkpointer]:
            if thread is not None and thread is not threading.current_thread():
                thread.join(timeout_s)

    # ------------------------------------------------------------------------------ threads

    def _connection(self) -> Any:
        pooled = self._local.pooled
        if pooled is None:
            pooled = self.engine.raw_connection()
            self._local.connection = pooled.driver_connection
            # This thread owns it from now on; it never goes back to the pool.
            pooled.detach()
            self._local.pooled = pooled
            if self._sqlite:
                # Commits leave the log alone; the checkpoint thread copies it (see above).
                self._local.connection.execute("PRAGMA wal_autocheckpoint=0")
            else:
                self._configure_postgres(self._local.connection)
        elif self._ping_idle and _closed_by_server(self._local.connection):
            # PostgreSQL restarted or ended this session (it says so, then closes the socket):
            # a fresh connection now, rather than a failed request first.
            self._drop_connection()
            return self._connection()
        elif self._ping_idle and time.monotonic() - self._local.used > IDLE_PING_S:
            try:
                cursor = self._local.connection.cursor()
                cursor.execute("SELECT 1")
                cursor.close()
                self._local.connection.rollback()
            except self._dbapi_error:
                self._drop_connection()
                return self._connection()
        self._local.used = time.monotonic()
        return self._local.connection

    @staticmethod
    def _configure_postgres(connection: Any) -> None:
        from psycopg.types.numeric import Int8BinaryDumper

        # Each metering transaction is one statement (billing/hotpath.py): without BEGIN and
        # COMMIT around it, it is one round trip.
        connection.autocommit = True
        # Every int is sent as a bigint. psycopg otherwise picks int2, int4 or int8 by value,
        # and prepares a statement once per mix of parameter types it sees (keeping at most
        # prepare_max of them): with token counts and prices of every size, the hot statements
        # would keep being parsed and planned again. Columns and ids take a bigint as they are.
        connection.adapters.register_dumper(int, Int8BinaryDumper)

    def _drop_connection(self) -> None:
        pooled = self._local.pooled
        self._local.pooled = self._local.connection = None
        if pooled is not None:
            try:
                pooled.close()
            except Exception:
                log.debug("closing a broken database connection failed", exc_info=True)

    def _serve(self) -> None:
        self._local.worker = True
        self._local.pooled = self._local.connection = None
        self._local.used = 0.0
        try:
            while (job := self._jobs.get()) is not None:
                self._run(*job)
        finally:
            self._drop_connection()

    def _run(self, fn: Callable[..., Any], args: tuple[Any, ...], loop: Any, future: Any) -> None:
        result: Any = None
        error: BaseException | None = None
        try:
            result = fn(self._connection(), *args)
        except BaseException as exc:
            error = exc
            if isinstance(exc, self._dbapi_error):
                # The connection may be broken; the next job opens a fresh one.
                self._drop_connection()
        if loop is None:
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)
            return
        # A closed loop (RuntimeError) means nobody waits for the answer any more.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_resolve, future, result, error)

    def _checkpoint(self) -> None:
        pooled = None
        try:
            while not self._stopped.wait(CHECKPOINT_INTERVAL_S):
                try:
                    if pooled is None:
                        pooled = self.engine.raw_connection()
                    # PASSIVE: copies what no reader still needs, never blocks or waits.
                    checkpointing = pooled.driver_connection
                    assert checkpointing is not None
                    checkpointing.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except Exception:
                    log.warning("WAL checkpoint failed", exc_info=True)
                    if pooled is not None:
                        pooled.invalidate()
                        pooled = None
        finally:
            if pooled is not None:
                pooled.close()
