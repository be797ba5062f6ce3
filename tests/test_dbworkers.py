"""The metering threads: results and errors come back, cancelled waits still finish the job."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from creditdash.core import db
from creditdash.core.dbworkers import DbWorkers


def test_jobs_run_on_a_worker_with_its_own_connection(engine: Engine) -> None:
    workers = DbWorkers(engine, 2)
    try:

        def job(connection: Any, value: int) -> tuple[int, str]:
            cursor = connection.cursor()
            cursor.execute("SELECT 1")
            (one,) = cursor.fetchone()
            cursor.close()
            connection.rollback()
            return value + one, threading.current_thread().name

        async def main() -> tuple[int, str]:
            return await workers.run(job, 41)

        value, thread = asyncio.run(main())
        assert value == 42 and thread.startswith("creditdash-db-")
        assert workers.call(job, 1)[0] == 2  # from a plain thread, too

        def nested(connection: Any) -> int:
            return workers.call(lambda again: 7 if again is connection else -1)

        assert workers.call(nested) == 7  # on a worker: inline, same connection

        def boom(_connection: Any) -> None:
            raise ValueError("no")

        with pytest.raises(ValueError):
            asyncio.run(workers.run(boom))
    finally:
        workers.close()


def test_a_cancelled_wait_does_not_stop_the_job(sqlite_engine: Engine) -> None:
    workers = DbWorkers(sqlite_engine, 1)
    started, release, finished = threading.Event(), threading.Event(), threading.Event()

    def slow(_connection: Any) -> None:
        started.set()
        release.wait(10)
        finished.set()

    async def main() -> None:
        task = asyncio.ensure_future(workers.run(slow))
        await asyncio.to_thread(started.wait, 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    try:
        asyncio.run(main())
        release.set()
        assert finished.wait(10)
    finally:
        workers.close()


@pytest.mark.postgres
def test_a_connection_the_server_ended_is_replaced_before_the_next_job(
    postgres_url: str,
) -> None:
    """After a PostgreSQL restart or failover the next request gets a fresh connection instead
    of failing on the dead one (pg_terminate_backend ends a session the same way)."""
    engine = db.make_engine(postgres_url)
    workers = DbWorkers(engine, 1)
    try:

        def backend_pid(connection: Any) -> int:
            cursor = connection.cursor()
            cursor.execute("SELECT pg_backend_pid()")
            (pid,) = cursor.fetchone()
            cursor.close()
            connection.rollback()
            return int(pid)

        first = workers.call(backend_pid)
        with engine.connect() as admin:
            ended = admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first})
            assert ended.scalar_one() is True
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # the goodbye arrives asynchronously
            with engine.connect() as admin:
                gone = admin.execute(
                    text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"), {"pid": first}
                ).scalar_one()
            if gone == 0:
                break
            time.sleep(0.05)
        second = workers.call(backend_pid)
        assert second != first
    finally:
        workers.close()
        engine.dispose()
