"""Watching the ASGI receive channel for the client leaving, once the body was read.

After the body, the next message a server gives is http.disconnect; one plain task per
request waits for it. DisconnectWatch cancels the request's task when it comes (the upstream
attempt is then closed at once); ClientGone only tells a waiting loop to stop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]


class ClientGone:
    """Set when the client disconnected; stop() before answering."""

    def __init__(self, receive: Receive) -> None:
        self.gone = asyncio.Event()
        self._listener = asyncio.get_running_loop().create_task(self._listen(receive))

    async def _listen(self, receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        self.gone.set()
        self.on_gone()

    def on_gone(self) -> None:
        pass

    async def wait(self, timeout_s: float) -> bool:
        """Wait up to timeout_s; True when the client has gone."""
        try:
            async with asyncio.timeout(timeout_s):
                await self.gone.wait()
        except TimeoutError:
            pass
        return self.gone.is_set()

    def stop(self) -> None:
        self._listener.cancel()


class DisconnectWatch(ClientGone):
    """Cancels the current task when the client disconnects. Call stop() right after the
    watched await returns (no await in between), so the cancellation can only land in it."""

    def __init__(self, receive: Receive) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._task = task
        super().__init__(receive)

    def on_gone(self) -> None:
        self._task.cancel()

    def absorbed(self) -> bool:
        """In an `except CancelledError`: True when this watch caused it (then it is
        absorbed: the task's cancel count is restored), False for any other cancellation."""
        return self.gone.is_set() and self._task.uncancel() == 0
