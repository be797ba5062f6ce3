"""A small HTTP/1.1 client for the gateway's upstream calls.

httpx (through httpcore and anyio) spent most of the event loop's time per proxied request on
machinery the gateway never needs: cancel scopes, locks, h11's validation, generic stream
layers. This client does one thing: POST a body to an upstream over a kept-alive connection
and hand back the status and the body, whole or as it arrives. It runs on asyncio's transport
and protocol callbacks (uvloop's C loop in the gateway) and parses responses with httptools
(llhttp, in C).

What it keeps from httpx on purpose:
- The same failures, as httpx's own exception types (ConnectError, ConnectTimeout, ReadTimeout,
  PoolTimeout, ReadError, RemoteProtocolError, LocalProtocolError, DecodingError), so the
  gateway's fallback rules classify them exactly as before.
- The same TLS trust (httpx.create_ssl_context: certificates verified, the same CA bundle and
  environment overrides), with the server name given separately from the address connected to,
  for URLs pinned to a checked address (urlguard.py).
- No redirects: a 3xx is just a status.
- gzip and deflate bodies decoded, the encodings httpx's default headers ask for.

Connections are reused only after a response was read to its end and the server allowed it.
An idle connection found closed is dropped and another one taken before anything is written;
once a request's bytes were handed to a connection, a failure is reported and never retried
here, since a POST that may have reached the upstream must not be sent twice.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable
from typing import Any, Protocol, cast

import httptools
import httpx

from creditdash.proxy.http_wire import Decoder, Origin, Target, decoders, serialize_request

DEFAULT_MAX_CONNECTIONS = 1000
DEFAULT_MAX_IDLE = 200
IDLE_EXPIRY_S = 5.0  # httpx's keep-alive expiry
# A streamed body stops being read from the socket while this much waits for the consumer.
PAUSE_ABOVE_BYTES = 256 * 1024


class ResponseLike(Protocol):
    """What the gateway uses of an upstream response (httpx.Response has the same)."""

    status_code: int

    async def aread(self) -> bytes: ...

    def aiter_bytes(self) -> AsyncIterator[bytes]: ...

    async def aclose(self) -> None: ...


class UpstreamResponse:
    """One response: the status once the headers are in, then the body, whole or in pieces.

    Close it (aclose or close) when done with it: that returns its connection to the pool if
    the body was read to its end, and closes the connection otherwise."""

    def __init__(self, connection: _Connection, read_timeout: float, deadline: float | None):
        self.status_code = 0
        self._connection: _Connection | None = connection
        self._loop = connection.loop
        self._read_timeout = read_timeout
        self._deadline = deadline
        self._chunks: list[bytes] = []
        self._pending = 0
        self._paused = False
        self._reading_all = False
        self._waiter: asyncio.Future[None] | None = None
        self._error: Exception | None = None
        self._done = False
        self._keep_alive = False
        self._framed = False  # a Content-Length or chunked body (else it ends at EOF)
        self._encoding: bytes | None = None
        self._decoders: list[Decoder] = []
        self._informational = False
        self.content_type: str | None = None

    # ------------------------------------------------------------------ for the consumer

    async def aread(self) -> bytes:
        """The whole body."""
        self._reading_all = True
        self._resume()
        while not self._done:
            if self._error is not None:
                raise self._error
            await self._wait()
        if self._error is not None:
            raise self._error
        body = b"".join(self._chunks) if len(self._chunks) != 1 else self._chunks[0]
        self._chunks = []
        return body

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        """The body as it arrives: everything received so far, at each step."""
        while True:
            if self._chunks:
                block = b"".join(self._chunks) if len(self._chunks) != 1 else self._chunks[0]
                self._chunks = []
                self._pending = 0
                self._resume()
                yield block
                continue
            if self._error is not None:
                raise self._error
            if self._done:
                return
            await self._wait()

    async def aclose(self) -> None:
        self.close()

    def close(self) -> None:
        self._resume()  # a connection goes back to the pool reading, or is closed anyway
        connection, self._connection = self._connection, None
        if connection is not None:
            reusable = self._done and self._keep_alive and self._error is None
            connection.pool._release(connection, reusable)

    async def _wait_for_headers(self) -> None:
        while not self.status_code:
            if self._error is not None:
                raise self._error
            await self._wait()

    async def _wait(self) -> None:
        """Until the connection has news (data, the end, a failure), or the read timeout."""
        loop = self._loop
        timeout = self._read_timeout
        if self._deadline is not None:
            timeout = min(timeout, self._deadline - loop.time())
            if timeout <= 0:
                raise httpx.ReadTimeout("the upstream response took too long")
        waiter = loop.create_future()
        self._waiter = waiter
        timer = loop.call_later(timeout, _expire, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None

    def _resume(self) -> None:
        if self._paused:
            self._paused = False
            connection = self._connection
            if connection is not None and connection.transport is not None:
                connection.transport.resume_reading()

    # ------------------------------------------------------------ from the connection

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"content-encoding":
            self._decoders = decoders(value)
        elif name == b"content-length" or name == b"transfer-encoding":
            self._framed = True
        elif name == b"content-type":
            self.content_type = value.decode("latin-1")

    def _headers_complete(self, status: int) -> None:
        if status < 200:  # 1xx: an interim answer, the real one follows
            self._informational = True
            self._decoders = []
            self.content_type = None
            self._framed = False
            return
        self.status_code = status
        self._wake()

    def _body(self, data: bytes) -> None:
        if self._informational or self._error is not None:
            return
        try:
            for decoder in self._decoders:
                data = decoder.decode(data)
        except httpx.DecodingError as exc:
            self._fail(exc)
            return
        if data:
            self._chunks.append(data)
            self._pending += len(data)
            if self._pending > PAUSE_ABOVE_BYTES and not self._reading_all and not self._paused:
                connection = self._connection
                if connection is not None and connection.transport is not None:
                    self._paused = True
                    connection.transport.pause_reading()
            self._wake()

    def _message_complete(self, keep_alive: bool) -> None:
        if self._informational:
            self._informational = False
            return
        try:
            for decoder in self._decoders:
                tail = decoder.flush()
                if tail:
                    self._chunks.append(tail)
        except httpx.DecodingError as exc:
            self._fail(exc)
            return
        self._keep_alive = keep_alive
        self._done = True
        self._wake()

    def _fail(self, error: Exception) -> None:
        if self._error is None and not self._done:
            self._error = error
            self._wake()

    def _lost(self, exc: Exception | None) -> None:
        if self._done:
            return
        if self.status_code and not self._framed and exc is None:
            # No length given: the body ends where the connection does.
            self._message_complete(keep_alive=False)
        elif isinstance(exc, OSError):
            self._fail(httpx.ReadError(str(exc) or type(exc).__name__))
        elif not self.status_code:
            self._fail(httpx.RemoteProtocolError("Server disconnected without sending a response."))
        else:
            self._fail(
                httpx.RemoteProtocolError("peer closed connection without sending complete body")
            )


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(httpx.ReadTimeout("the upstream did not answer in time"))


class _Connection(asyncio.Protocol):
    """One upstream connection; its parser reports to the response being read."""

    def __init__(self, pool: UpstreamPool, origin: Origin, loop: asyncio.AbstractEventLoop):
        self.pool = pool
        self.origin = origin
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.response: UpstreamResponse | None = None
        self.closed = False
        self.counted = True  # counts against the pool's connection limit
        self.idle_since = 0.0

    # ------------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, but have its methods.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        response = self.response
        if response is None or response._done:
            # Bytes nobody asked for: the connection's state is unknown, so it is not reused.
            self.close()
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            response._fail(httpx.RemoteProtocolError(f"malformed upstream response: {exc}"))
            self.close()
        except httptools.HttpParserUpgrade:
            response._fail(httpx.RemoteProtocolError("the upstream switched protocols"))
            self.close()

    def eof_received(self) -> bool:
        return False  # the transport closes itself; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        response = self.response
        if response is not None:
            response._lost(exc)
        self.pool._forget(self)

    # ------------------------------------------------------------------ httptools callbacks

    def on_message_begin(self) -> None:
        response = self.response
        if response is not None and response._done:
            self.close()  # a second message after the one asked for

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.response is not None:
            self.response._header(name, value)

    def on_headers_complete(self) -> None:
        if self.response is not None:
            self.response._headers_complete(self.parser.get_status_code())

    def on_body(self, body: bytes) -> None:
        if self.response is not None:
            self.response._body(body)

    def on_message_complete(self) -> None:
        if self.response is not None:
            self.response._message_complete(self.parser.should_keep_alive())

    # ------------------------------------------------------------------------------------

    def usable(self, now: float) -> bool:
        transport = self.transport
        return (
            not self.closed
            and transport is not None
            and not transport.is_closing()
            and now - self.idle_since < self.pool.idle_expiry_s
        )

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.close()
        self.pool._forget(self)


class UpstreamPool:
    """Kept-alive connections per origin, bounded in number, on the running event loop."""

    def __init__(
        self,
        *,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        max_idle: int = DEFAULT_MAX_IDLE,
        idle_expiry_s: float = IDLE_EXPIRY_S,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.max_connections = max_connections
        self.max_idle = max_idle
        self.idle_expiry_s = idle_expiry_s
        self._ssl_context = ssl_context
        self._idle: dict[Origin, list[_Connection]] = {}
        self._idle_count = 0
        self._open = 0  # connections counted against max_connections (connecting ones too)
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._closed = False

    @property
    def open_connections(self) -> int:
        return self._open

    @property
    def idle_connections(self) -> int:
        return self._idle_count

    def ssl_context(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            # httpx's own default context: verified certificates, the same CA bundle, the same
            # SSL_CERT_FILE / SSL_CERT_DIR overrides; this client speaks HTTP/1.1 only.
            context = httpx.create_ssl_context()
            context.set_alpn_protocols(["http/1.1"])
            self._ssl_context = context
        return self._ssl_context

    async def post(
        self,
        target: Target,
        path: str,
        headers: Iterable[tuple[str, str]],
        body: bytes,
        *,
        connect_timeout: float,
        read_timeout: float,
        pool_timeout: float,
        total_timeout: float | None = None,
    ) -> UpstreamResponse:
        """Send a POST and return once the response's status and headers are in.

        read_timeout bounds each wait for the upstream (the first byte, and every later
        piece of the body); total_timeout, when given, bounds the whole exchange including
        reading the body."""
        data = serialize_request("POST", target.prefix + path, target.host_header, headers, body)
        loop = asyncio.get_running_loop()
        deadline = None if total_timeout is None else loop.time() + total_timeout
        connection = await self._acquire(target.origin, loop, connect_timeout, pool_timeout)
        transport = connection.transport
        if transport is None or connection.closed or transport.is_closing():
            # Closed between connecting and now (the server hung up at once): nothing was sent.
            connection.close()
            raise httpx.ConnectError("the upstream closed the connection before the request")
        response = UpstreamResponse(connection, read_timeout, deadline)
        connection.response = response
        transport.write(data)  # from here on, the request may have been sent
        try:
            await response._wait_for_headers()
        except BaseException:
            response.close()
            raise
        return response

    async def aclose(self) -> None:
        self._closed = True
        for connections in list(self._idle.values()):
            for connection in list(connections):
                connection.close()
        self._idle.clear()
        self._idle_count = 0
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    # ------------------------------------------------------------------------------------

    async def _acquire(
        self,
        origin: Origin,
        loop: asyncio.AbstractEventLoop,
        connect_timeout: float,
        pool_timeout: float,
    ) -> _Connection:
        waited_until = loop.time() + pool_timeout
        while True:
            if self._closed:
                raise httpx.ConnectError("the upstream client is closed")
            connection = self._take_idle(origin)
            if connection is not None:
                return connection
            if self._open >= self.max_connections:
                self._close_one_idle()
            if self._open < self.max_connections:
                return await self._connect(origin, loop, connect_timeout)
            remaining = waited_until - loop.time()
            if remaining <= 0:
                raise httpx.PoolTimeout("no upstream connection became free in time")
            waiter = loop.create_future()
            self._waiters.append(waiter)
            timer = loop.call_later(remaining, _pool_expire, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
                if not waiter.done():
                    waiter.cancel()

    def _take_idle(self, origin: Origin) -> _Connection | None:
        connections = self._idle.get(origin)
        if not connections:
            return None
        now = time.monotonic()
        while connections:
            connection = connections.pop()  # the most recently used: the likeliest alive
            self._idle_count -= 1
            if connection.usable(now):
                return connection
            connection.close()
        return None

    def _close_one_idle(self) -> None:
        oldest: _Connection | None = None
        for connections in self._idle.values():
            if connections and (oldest is None or connections[0].idle_since < oldest.idle_since):
                oldest = connections[0]
        if oldest is not None:
            self._idle[oldest.origin].remove(oldest)
            self._idle_count -= 1
            oldest.close()

    async def _connect(
        self, origin: Origin, loop: asyncio.AbstractEventLoop, connect_timeout: float
    ) -> _Connection:
        scheme, address, port, server_name = origin
        connection = _Connection(self, origin, loop)
        self._open += 1
        tls: dict[str, Any] = {}
        if scheme == "https":
            tls = {"ssl": self.ssl_context(), "server_hostname": server_name}
        try:
            async with asyncio.timeout(connect_timeout) as scope:
                await loop.create_connection(lambda: connection, address, port, **tls)
        except BaseException as exc:
            connection.closed = True
            self._forget(connection)
            if isinstance(exc, TimeoutError) and scope.expired():
                raise httpx.ConnectTimeout(f"connecting to {address}:{port} timed out") from None
            if isinstance(exc, OSError):  # refused, unreachable, TLS (ssl.SSLError is one)
                raise httpx.ConnectError(str(exc) or type(exc).__name__) from None
            raise
        if self._closed:
            connection.close()
            raise httpx.ConnectError("the upstream client is closed")
        return connection

    def _release(self, connection: _Connection, reusable: bool) -> None:
        connection.response = None
        if (
            reusable
            and not self._closed
            and connection.counted
            and not connection.closed
            # Beyond max_idle only for a request already waiting for a connection.
            and (self._idle_count < self.max_idle or self._waiters)
        ):
            connection.idle_since = time.monotonic()
            self._idle.setdefault(connection.origin, []).append(connection)
            self._idle_count += 1
            self._wake_one()
        else:
            connection.close()

    def _forget(self, connection: _Connection) -> None:
        """A connection is gone (or going): out of the idle lists and the count."""
        if not connection.counted:
            return
        connection.counted = False
        self._open -= 1
        connections = self._idle.get(connection.origin)
        if connections and connection in connections:
            connections.remove(connection)
            self._idle_count -= 1
        self._wake_one()

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return


def _pool_expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)  # the loop in _acquire sees the time is up
