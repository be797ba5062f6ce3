"""stream_until_disconnect: a streamed answer ends when the body does or when the client
leaves, and a cancellation from outside still cancels (what Starlette's task group did)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from starlette.responses import StreamingResponse

from creditdash.proxy.gateway import stream_until_disconnect


class Client:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.gone = asyncio.Event()
        self.receives_cancelled = 0

    async def receive(self) -> dict[str, Any]:
        try:
            await self.gone.wait()
        except asyncio.CancelledError:
            self.receives_cancelled += 1
            raise
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)
        await asyncio.sleep(0)


def test_the_whole_body_is_sent_and_the_listener_stopped() -> None:
    async def body() -> AsyncIterator[bytes]:
        for part in (b"a", b"b"):
            yield part

    async def main() -> None:
        client = Client()
        await stream_until_disconnect(StreamingResponse(body()), client.receive, client.send)
        assert [m.get("body") for m in client.sent] == [None, b"a", b"b", b""]
        assert client.sent[-1]["more_body"] is False
        await asyncio.sleep(0)
        assert client.receives_cancelled == 1

    asyncio.run(main())


def test_a_disconnect_stops_the_stream_quietly() -> None:
    closed = []

    async def endless(client: Client) -> AsyncIterator[bytes]:
        try:
            for i in range(1000):
                if i == 3:
                    client.gone.set()
                yield b"x"
                await asyncio.sleep(0.001)
        finally:
            closed.append(True)

    async def main() -> None:
        client = Client()
        task = asyncio.current_task()
        assert task is not None
        response = StreamingResponse(endless(client))
        await stream_until_disconnect(response, client.receive, client.send)
        assert task.cancelling() == 0  # the cancellation it used was its own, and is spent
        assert len(client.sent) < 10
        assert client.sent[-1].get("more_body") is True  # never finished
        await asyncio.sleep(0.01)  # still a working task afterwards
        await response.body_iterator.aclose()  # type: ignore[attr-defined]

    asyncio.run(main())
    assert closed == [True]


def test_a_cancellation_from_outside_propagates() -> None:
    async def endless() -> AsyncIterator[bytes]:
        while True:
            yield b"x"
            await asyncio.sleep(0.001)

    async def main() -> None:
        client = Client()
        streaming = asyncio.ensure_future(
            stream_until_disconnect(StreamingResponse(endless()), client.receive, client.send)
        )
        await asyncio.sleep(0.02)
        streaming.cancel()
        with pytest.raises(asyncio.CancelledError):
            await streaming
        await asyncio.sleep(0)
        assert client.receives_cancelled == 1

    asyncio.run(main())


def test_a_failing_listener_fails_the_stream() -> None:
    async def endless() -> AsyncIterator[bytes]:
        while True:
            yield b"x"
            await asyncio.sleep(0.001)

    async def broken_receive() -> dict[str, Any]:
        await asyncio.sleep(0.01)
        raise RuntimeError("receive broke")

    async def main() -> None:
        client = Client()
        with pytest.raises(RuntimeError, match="receive broke"):
            await stream_until_disconnect(StreamingResponse(endless()), broken_receive, client.send)

    asyncio.run(main())
