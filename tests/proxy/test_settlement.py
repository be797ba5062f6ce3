"""Settlement's claim-once, without HTTP or a database: a fake store records what is queued.

Each request ending calls claim() first and only the winner queues database work; these tests
drive the endings directly (and the relay with a scripted upstream) and count the queued jobs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from datetime import timedelta
from typing import Any

import pytest

from creditdash.catalog.prices import Price, TokenUsage
from creditdash.proxy.auth import KeyInfo
from creditdash.proxy.call import Call, Outcome, failed
from creditdash.proxy.settlement import (
    DetachedTasks,
    KeyTouches,
    Ledgers,
    Settlement,
)
from creditdash.proxy.snapshot import ModelEntry
from creditdash.proxy.streaming import relay

PRICE = Price(input_micros_per_mtok=1, output_micros_per_mtok=1, cached_input_micros_per_mtok=1)


class _Workers:
    """Records each job instead of running it on a database connection."""

    def __init__(self) -> None:
        self.jobs: list[str] = []

    async def run(self, fn: Callable[..., Any], *args: Any) -> int:
        self.jobs.append(getattr(fn, "__name__", repr(fn)))
        return 7  # the price a settlement would have charged


class _Store:
    def __init__(self) -> None:
        self.workers = _Workers()


class _Upstream:
    """An upstream stream that sends the given blocks, then waits until closed."""

    status_code = 200

    def __init__(self, *blocks: bytes, hang: bool = False) -> None:
        self._blocks = blocks
        self._hang = hang

    async def aread(self) -> bytes:
        return b""

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        for block in self._blocks:
            yield block
        if self._hang:
            await asyncio.Event().wait()

    async def aclose(self) -> None:
        pass


def _settlement(stream: bool = False) -> tuple[Settlement, _Workers]:
    started = time.perf_counter()
    call = Call(
        request_id="req_test",
        endpoint="chat",
        key=KeyInfo("key_1", "cus_1", 1, None, None, None, None),
        model=ModelEntry("chat", PRICE, 100, (), 0),
        body={"messages": [{"role": "user", "content": "hi"}]},
        stream=stream,
        wants_usage=False,
        started=started,
        deadline=started + 30,
        output_cap=100,
    )
    store = _Store()
    shared = Ledgers(timedelta(seconds=90), KeyTouches(), DetachedTasks())
    return Settlement(call, store, shared), store.workers  # type: ignore[arg-type]


def _run(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(main())


def _ok() -> Outcome:
    return Outcome("ok", 200, TokenUsage(prompt_tokens=1, completion_tokens=1), "provider", True)


def test_a_second_claim_loses() -> None:
    settlement, _ = _settlement()
    assert settlement.claim() is True
    assert settlement.claim() is False
    assert settlement.claimed


def test_a_void_after_a_finish_does_nothing() -> None:
    async def main() -> None:
        settlement, workers = _settlement()
        assert await settlement.finish(_ok()) == 7
        assert settlement.void_detached() is False
        await asyncio.sleep(0)
        assert workers.jobs == ["_finish_sync"]

    _run(main)


def test_a_void_that_wins_queues_one_job_and_a_later_finish_refuses() -> None:
    async def main() -> None:
        settlement, workers = _settlement()
        assert settlement.void_detached() is True
        assert settlement.void_detached() is False
        with pytest.raises(RuntimeError, match="already claimed"):
            await settlement.finish(failed(502))
        await asyncio.sleep(0)
        assert workers.jobs == ["_void_sync"]

    _run(main)


def test_settling_without_a_claim_is_refused() -> None:
    async def main() -> None:
        settlement, workers = _settlement()
        with pytest.raises(RuntimeError, match="without a claim"):
            await settlement.settle(_ok())
        with pytest.raises(RuntimeError, match="without a claim"):
            settlement.settle_detached(_ok)
        assert workers.jobs == []

    _run(main)


def test_a_claim_after_the_relay_started_loses_and_the_relay_settles_once() -> None:
    """The client leaves mid-stream: MeteredStream's void loses to the relay, whose finally
    block settles what was produced, once, and releases once."""

    async def main() -> None:
        settlement, workers = _settlement(stream=True)
        released: list[int] = []
        chunk = b'data: {"choices": [{"delta": {"content": "hi"}}]}\n\n'
        body = relay(settlement, _Upstream(chunk, hang=True), lambda: released.append(1))
        assert await anext(body) == chunk
        assert settlement.claim() is False
        assert settlement.void_detached() is False
        await body.aclose()  # what a disconnect does to the generator
        await asyncio.sleep(0)
        assert workers.jobs == ["finish_detached"]
        assert released == [1]

    _run(main)


def test_a_relay_that_never_started_leaves_the_void_to_metered_stream() -> None:
    async def main() -> None:
        settlement, workers = _settlement(stream=True)
        released: list[int] = []
        body = relay(settlement, _Upstream(), lambda: released.append(1))
        assert settlement.void_detached() is True  # MeteredStream.__call__'s finally
        with pytest.raises(StopAsyncIteration):  # a relay started late does nothing
            await anext(body)
        await asyncio.sleep(0)
        assert workers.jobs == ["_void_sync"]
        assert released == []  # the void's winner releases, not the relay

    _run(main)


def test_a_stream_cut_short_settles_once_even_when_closed_after_its_error() -> None:
    async def main() -> None:
        settlement, workers = _settlement(stream=True)
        released: list[int] = []
        chunk = b'data: {"choices": [{"delta": {"content": "hi"}}]}\n\n'
        body = relay(settlement, _Upstream(chunk), lambda: released.append(1))
        pieces = [piece async for piece in body]
        assert b"upstream_incomplete" in pieces[-1]
        await body.aclose()
        await asyncio.sleep(0)
        assert workers.jobs == ["_finish_sync"]
        assert released == [1]

    _run(main)


def test_a_finished_stream_settles_once_before_its_end_marker() -> None:
    async def main() -> None:
        settlement, workers = _settlement(stream=True)
        released: list[int] = []
        chunk = b'data: {"choices": [{"delta": {"content": "hi"}}]}\n\n'
        body = relay(settlement, _Upstream(chunk, b"data: [DONE]\n\n"), lambda: released.append(1))
        pieces = [piece async for piece in body]
        assert pieces[-1].endswith(b"data: [DONE]\n\n")
        assert workers.jobs == ["_finish_sync"]
        assert released == [1]

    _run(main)


def test_text_in_the_same_read_as_an_error_event_is_delivered_before_the_error() -> None:
    """Charged from an estimate of the relayed text, so the client gets all of that text."""

    async def main() -> None:
        settlement, workers = _settlement(stream=True)
        released: list[int] = []
        text = b'data: {"choices": [{"delta": {"content": "partial answer"}}]}\n\n'
        error = b'data: {"error": {"message": "overloaded", "type": "server_error"}}\n\n'
        body = relay(settlement, _Upstream(text + text + error), lambda: released.append(1))
        pieces = [piece async for piece in body]
        assert pieces[0] == text + text
        assert b"upstream_failed" in pieces[-1] and len(pieces) == 2
        await asyncio.sleep(0)
        assert workers.jobs == ["_finish_sync"]
        assert released == [1]

    _run(main)
