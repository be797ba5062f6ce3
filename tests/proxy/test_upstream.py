"""The gateway's own upstream HTTP/1.1 client (proxy/upstream.py), against scripted local
servers on loopback: framing, keep-alive, streaming, timeouts, broken connections, TLS, limits.

Every test runs on the standard asyncio loop and on uvloop (what the gateway serves on)."""

from __future__ import annotations

import asyncio
import datetime
import gzip
import ssl
import zlib
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvloop

from creditdash.proxy.upstream import Target, UpstreamPool, serialize_request

Handler = Callable[["Exchange"], Awaitable[None]]
TIMEOUTS = {"connect_timeout": 2.0, "read_timeout": 2.0, "pool_timeout": 2.0}


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Callable[[Coroutine[Any, Any, Any]], Any]:
    def runner(main: Coroutine[Any, Any, Any]) -> Any:
        if request.param == "uvloop":
            return uvloop.run(main)
        return asyncio.run(main)

    runner.kind = request.param  # type: ignore[attr-defined]
    return runner


@dataclass
class Exchange:
    """One request as the server read it, and the means to answer it."""

    connection: int  # the number of the connection it came on (from 1)
    head: bytes
    body: bytes
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()


def answer(body: bytes, status: str = "200 OK", headers: str = "") -> bytes:
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n{headers}\r\n"
    ).encode() + body


@dataclass
class Server:
    """A loopback HTTP/1.1 server whose answers a test scripts, one handler per request."""

    handler: Handler
    ssl_context: ssl.SSLContext | None = None
    connections: int = 0
    requests: list[Exchange] = field(default_factory=list)
    server: asyncio.Server | None = None
    port: int = 0

    async def __aenter__(self) -> Server:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.ssl_context)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    def target(self, *, scheme: str = "http", sni: str | None = None) -> Target:
        return Target(f"{scheme}://127.0.0.1:{self.port}/v1", host_header=None, sni=sni)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = self.connections
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                body = await reader.readexactly(length)
                exchange = Exchange(number, head, body, reader, writer)
                self.requests.append(exchange)
                await self.handler(exchange)
                if writer.is_closing():
                    return
        finally:
            writer.close()


def ok(body: bytes = b'{"ok":true}') -> Handler:
    async def handler(exchange: Exchange) -> None:
        await exchange.send(answer(body))

    return handler


async def post(pool: UpstreamPool, target: Target, body: bytes = b"{}", **kw: Any) -> Any:
    timeouts = {**TIMEOUTS, **kw}
    return await pool.post(target, "/chat/completions", [("x-test", "1")], body, **timeouts)


# ----------------------------------------------------------------------------------- framing


def test_serializes_the_request_with_host_and_length() -> None:
    data = serialize_request(
        "POST", "/v1/x", "h.example:8080", [("authorization", "Bearer k"), ("a", "b")], b"{}"
    )
    assert data == (
        b"POST /v1/x HTTP/1.1\r\nHost: h.example:8080\r\nauthorization: Bearer k\r\na: b\r\n"
        b"Content-Length: 2\r\n\r\n{}"
    )
    # A host header given replaces the default; lengths and encodings given are ignored.
    data = serialize_request(
        "POST", "/", "1.2.3.4", [("host", "named.example"), ("content-length", "99")], b"abc"
    )
    assert data.startswith(b"POST / HTTP/1.1\r\nHost: named.example\r\nContent-Length: 3\r\n")


@pytest.mark.parametrize(
    "header", [("x-evil", "a\r\nInjected: 1"), ("x-evil", "a\nb"), ("bad name", "v"), ("", "v")]
)
def test_refuses_headers_that_would_break_framing(header: tuple[str, str]) -> None:
    with pytest.raises(httpx.LocalProtocolError):
        serialize_request("POST", "/", "h", [header], b"")


def test_target_parsing() -> None:
    plain = Target("http://127.0.0.1:8000/v1/", host_header=None, sni=None)
    assert plain.origin == ("http", "127.0.0.1", 8000, None)
    assert (plain.host_header, plain.prefix) == ("127.0.0.1:8000", "/v1")
    pinned = Target("https://[::1]/api/v1", host_header="api.example", sni="api.example")
    assert pinned.origin == ("https", "::1", 443, "api.example")
    assert (pinned.host_header, pinned.prefix) == ("api.example", "/api/v1")
    assert Target("https://10.0.0.1", host_header=None, sni=None).origin[3] == "10.0.0.1"


def test_content_length_body_and_keep_alive_reuse(run: Any) -> None:
    async def main() -> None:
        async with Server(ok(b'{"n":1}')) as server:
            pool = UpstreamPool()
            for _ in range(3):
                response = await post(pool, server.target(), b'{"q":1}')
                assert response.status_code == 200
                assert await response.aread() == b'{"n":1}'
                await response.aclose()
            assert server.connections == 1
            assert pool.idle_connections == 1
            request = server.requests[0]
            assert request.head.startswith(b"POST /v1/chat/completions HTTP/1.1\r\n")
            assert f"Host: 127.0.0.1:{server.port}\r\n".encode() in request.head
            assert b"x-test: 1\r\n" in request.head
            assert request.body == b'{"q":1}'
            await pool.aclose()
            assert pool.open_connections == 0

    run(main())


def test_chunked_body_split_across_packets(run: Any) -> None:
    async def handler(exchange: Exchange) -> None:
        await exchange.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel")
        await asyncio.sleep(0.01)
        await exchange.send(b"lo\r\n6\r\n world\r\n0\r\n\r\n")

    async def main() -> None:
        async with Server(handler) as server:
            pool = UpstreamPool()
            for _ in range(2):
                response = await post(pool, server.target())
                assert await response.aread() == b"hello world"
                await response.aclose()
            assert server.connections == 1
            await pool.aclose()

    run(main())


def test_streamed_body_arrives_piece_by_piece(run: Any) -> None:
    release = asyncio.Event

    async def main() -> None:
        go_on = release()

        async def handler(exchange: Exchange) -> None:
            await exchange.send(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n"
            )
            await exchange.send(b"b\r\ndata: one\n\n\r\n")
            await go_on.wait()  # the second event only after the client saw the first
            await exchange.send(b"b\r\ndata: two\n\n\r\n0\r\n\r\n")

        async with Server(handler) as server:
            pool = UpstreamPool()
            response = await post(pool, server.target())
            seen = []
            async for block in response.aiter_bytes():
                seen.append(block)
                go_on.set()
            await response.aclose()
            assert seen == [b"data: one\n\n", b"data: two\n\n"]
            assert pool.idle_connections == 1  # read to the end: reusable
            await pool.aclose()

    run(main())


def test_body_until_close_is_read_whole_and_never_reused(run: Any) -> None:
    async def handler(exchange: Exchange) -> None:
        await exchange.send(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of ")
        await exchange.send(b"it")
        exchange.writer.close()

    async def main() -> None:
        async with Server(handler) as server:
            pool = UpstreamPool()
            for _ in range(2):
                response = await post(pool, server.target())
                assert await response.aread() == b"all of it"
                await response.aclose()
            assert server.connections == 2
            assert pool.idle_connections == 0
            await pool.aclose()

    run(main())


def test_connection_close_answer_is_not_reused(run: Any) -> None:
    async def main() -> None:
        async with Server(ok_close) as server:
            pool = UpstreamPool()
            for _ in range(2):
                response = await post(pool, server.target())
                assert await response.aread() == b"{}"
                await response.aclose()
            assert server.connections == 2
            await pool.aclose()

    async def ok_close(exchange: Exchange) -> None:
        await exchange.send(answer(b"{}", headers="Connection: close\r\n"))

    run(main())


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "raw-deflate"])
def test_compressed_bodies_are_decoded(run: Any, encoding: str) -> None:
    plain = b'{"text": "' + b"words " * 2000 + b'"}'
    if encoding == "gzip":
        packed = gzip.compress(plain)
    elif encoding == "deflate":
        packed = zlib.compress(plain)
    else:
        squeezer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        packed = squeezer.compress(plain) + squeezer.flush()
    name = "gzip" if encoding == "gzip" else "deflate"

    async def handler(exchange: Exchange) -> None:
        await exchange.send(answer(packed, headers=f"Content-Encoding: {name}\r\n"))

    async def main() -> None:
        async with Server(handler) as server:
            pool = UpstreamPool()
            response = await post(pool, server.target())
            assert await response.aread() == plain
            await response.aclose()
            await pool.aclose()

    run(main())


def test_a_corrupt_compressed_body_is_a_decoding_error(run: Any) -> None:
    async def handler(exchange: Exchange) -> None:
        await exchange.send(answer(b"not gzip at all", headers="Content-Encoding: gzip\r\n"))

    async def main() -> None:
        async with Server(handler) as server:
            pool = UpstreamPool()
            response = await post(pool, server.target())
            with pytest.raises(httpx.DecodingError):
                await response.aread()
            await response.aclose()
            assert pool.idle_connections == 0
            await pool.aclose()

    run(main())


def test_interim_answers_are_skipped_and_redirects_not_followed(run: Any) -> None:
    async def handler(exchange: Exchange) -> None:
        await exchange.send(b"HTTP/1.1 100 Continue\r\n\r\n")
        await exchange.send(
            answer(b"", status="302 Found", headers="Location: http://169.254.169.254/\r\n")
        )

    async def main() -> None:
        async with Server(handler) as server:
            pool = UpstreamPool()
            response = await post(pool, server.target())
            assert response.status_code == 302
            assert await response.aread() == b""
            await response.aclose()
            assert len(server.requests) == 1
            await pool.aclose()

    run(main())


def test_a_malformed_answer_is_a_protocol_error(run: Any) -> None:
    async def handler(exchange: Exchange) -> None:
        await exchange.send(b"HTTP/1.1 200 OK\r\nContent-Length: nope\r\n\r\n{}")

    async def main() -> None:
        async with Server(handler) as server:
            pool = UpstreamPool()
            with pytest.raises(httpx.RemoteProtocolError):
                await post(pool, server.target())
            assert pool.open_connections == 0
            await pool.aclose()

    run(main())


def test_an_answer_left_unread_closes_its_connection(run: Any) -> None:
    async def handler(exchange: Exchange) -> None:
        await exchange.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")

    async def main() -> None:
        async with Server(handler) as server:
            pool = UpstreamPool()
            response = await post(pool, server.target())
            await response.aclose()
            await asyncio.sleep(0.01)
            assert pool.idle_connections == 0
            assert pool.open_connections == 0
            await pool.aclose()

    run(main())


# ---------------------------------------------------------------------------------- timeouts


def test_read_timeout_before_the_first_byte(run: Any) -> None:
    async def silent(exchange: Exchange) -> None:
        await asyncio.sleep(5)

    async def main() -> None:
        async with Server(silent) as server:
            pool = UpstreamPool()
            started = asyncio.get_running_loop().time()
            with pytest.raises(httpx.ReadTimeout):
                await post(pool, server.target(), read_timeout=0.2)
            assert asyncio.get_running_loop().time() - started < 1.5
            assert pool.open_connections == 0
            await pool.aclose()

    run(main())


def test_read_timeout_in_the_middle_of_a_body(run: Any) -> None:
    async def stalls(exchange: Exchange) -> None:
        await exchange.send(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        await asyncio.sleep(5)

    async def main() -> None:
        async with Server(stalls) as server:
            pool = UpstreamPool()
            response = await post(pool, server.target(), read_timeout=0.2)
            with pytest.raises(httpx.ReadTimeout):
                await response.aread()
            await response.aclose()
            assert pool.open_connections == 0
            await pool.aclose()

    run(main())


def test_total_timeout_bounds_a_trickling_body(run: Any) -> None:
    async def trickles(exchange: Exchange) -> None:
        await exchange.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(100):
            await exchange.send(b"1\r\nx\r\n")
            await asyncio.sleep(0.03)

    async def main() -> None:
        async with Server(trickles) as server:
            pool = UpstreamPool()
            started = asyncio.get_running_loop().time()
            response = await post(pool, server.target(), read_timeout=1.0, total_timeout=0.3)
            with pytest.raises(httpx.ReadTimeout):
                async for _block in response.aiter_bytes():
                    pass
            await response.aclose()
            assert asyncio.get_running_loop().time() - started < 1.5
            await pool.aclose()

    run(main())


def test_connect_refused_is_a_connect_error(run: Any) -> None:
    async def main() -> None:
        async with Server(ok()) as server:
            port = server.port
        await asyncio.sleep(0.01)
        pool = UpstreamPool()
        target = Target(f"http://127.0.0.1:{port}/v1", host_header=None, sni=None)
        with pytest.raises(httpx.ConnectError):
            await post(pool, target)
        assert pool.open_connections == 0
        await pool.aclose()

    run(main())


def test_connect_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    # Loopback connects at once, so the connect itself is made slow (standard loop only: the
    # method cannot be replaced on uvloop's loop).
    async def main() -> None:
        loop = asyncio.get_running_loop()

        async def never(*args: Any, **kwargs: Any) -> Any:
            await asyncio.sleep(10)

        monkeypatch.setattr(loop, "create_connection", never)
        pool = UpstreamPool()
        target = Target("http://127.0.0.1:9/v1", host_header=None, sni=None)
        with pytest.raises(httpx.ConnectTimeout):
            await post(pool, target, connect_timeout=0.1)
        assert pool.open_connections == 0

    asyncio.run(main())


# ------------------------------------------------------------------------ broken connections


def test_an_idle_connection_closed_by_the_server_is_replaced_before_sending(run: Any) -> None:
    async def answers_then_hangs_up(exchange: Exchange) -> None:
        await exchange.send(answer(b"{}"))  # claims keep-alive...
        exchange.writer.close()  # ...but closes anyway

    async def main() -> None:
        async with Server(answers_then_hangs_up) as server:
            pool = UpstreamPool()
            for _ in range(3):
                response = await post(pool, server.target())
                assert await response.aread() == b"{}"
                await response.aclose()
                await asyncio.sleep(0.05)  # the close reaches the client while idle
            assert len(server.requests) == 3  # each sent once, each on a fresh connection
            assert server.connections == 3
            await pool.aclose()

    run(main())


def test_a_request_that_may_have_been_sent_is_never_resent(run: Any) -> None:
    async def reads_then_hangs_up(exchange: Exchange) -> None:
        exchange.writer.close()

    async def main() -> None:
        async with Server(reads_then_hangs_up) as server:
            pool = UpstreamPool()
            with pytest.raises(httpx.RemoteProtocolError):
                await post(pool, server.target())
            await asyncio.sleep(0.05)
            assert len(server.requests) == 1
            assert pool.open_connections == 0
            await pool.aclose()

    run(main())


def test_a_reset_mid_body_is_an_error(run: Any) -> None:
    async def resets(exchange: Exchange) -> None:
        await exchange.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
        transport = exchange.writer.transport
        sock = transport.get_extra_info("socket")
        import socket
        import struct

        # SO_LINGER 0: close with a reset instead of an orderly end.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()

    async def main() -> None:
        async with Server(resets) as server:
            pool = UpstreamPool()
            response = await post(pool, server.target())
            with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
                await response.aread()
            await response.aclose()
            assert len(server.requests) == 1
            await pool.aclose()

    run(main())


def test_idle_connections_expire(run: Any) -> None:
    async def main() -> None:
        async with Server(ok()) as server:
            pool = UpstreamPool(idle_expiry_s=0.05)
            for _ in range(2):
                response = await post(pool, server.target())
                await response.aread()
                await response.aclose()
                await asyncio.sleep(0.1)
            assert server.connections == 2
            await pool.aclose()

    run(main())


# ------------------------------------------------------------------------------------ limits


def test_pool_bounds_connections_and_queues_the_rest(run: Any) -> None:
    async def slow(exchange: Exchange) -> None:
        await asyncio.sleep(0.1)
        await exchange.send(answer(b"{}"))

    async def main() -> None:
        async with Server(slow) as server:
            pool = UpstreamPool(max_connections=2, max_idle=1)
            most = 0

            async def one() -> bytes:
                nonlocal most
                response = await post(pool, server.target())
                most = max(most, pool.open_connections)
                body: bytes = await response.aread()
                await response.aclose()
                return body

            assert await asyncio.gather(*(one() for _ in range(5))) == [b"{}"] * 5
            assert most == 2
            assert server.connections == 2
            assert pool.idle_connections == 1  # the second one was closed, not kept
            assert pool.open_connections == 1
            await pool.aclose()

    run(main())


def test_pool_timeout_when_no_connection_frees_up(run: Any) -> None:
    async def silent(exchange: Exchange) -> None:
        await asyncio.sleep(5)

    async def main() -> None:
        async with Server(silent) as server:
            pool = UpstreamPool(max_connections=1)
            first = asyncio.ensure_future(post(pool, server.target(), read_timeout=3))
            await asyncio.sleep(0.05)
            with pytest.raises(httpx.PoolTimeout):
                await post(pool, server.target(), pool_timeout=0.1)
            first.cancel()
            with pytest.raises(asyncio.CancelledError):
                await first
            await asyncio.sleep(0.01)
            assert pool.open_connections == 0  # the cancelled one did not leak its slot
            await pool.aclose()

    run(main())


def test_idle_connections_of_other_origins_make_room(run: Any) -> None:
    async def main() -> None:
        async with Server(ok()) as first, Server(ok()) as second:
            pool = UpstreamPool(max_connections=1)
            for server in (first, second, first):
                response = await post(pool, server.target())
                await response.aread()
                await response.aclose()
            assert (first.connections, second.connections) == (2, 1)
            assert pool.open_connections <= 1
            await pool.aclose()

    run(main())


# --------------------------------------------------------------------------------------- TLS


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate it signed for upstream.test only."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder = tmp_path_factory.mktemp("tls")
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "creditdash test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_ca_key_usage(x509), critical=True)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "upstream.test")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("upstream.test")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_file, cert_file, key_file = folder / "ca.pem", folder / "cert.pem", folder / "key.pem"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca_file, cert_file, key_file


def _ca_key_usage(x509: Any) -> Any:
    flags = dict.fromkeys(
        ["content_commitment", "key_encipherment", "data_encipherment", "key_agreement",
         "encipher_only", "decipher_only"],
        False,
    )  # fmt: skip
    return x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, **flags)


def _server_context(cert_file: Path, key_file: Path, names: list[str | None]) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)

    def remember(_sock: Any, server_name: str | None, _context: Any) -> None:
        names.append(server_name)

    context.sni_callback = remember
    return context


def test_tls_to_a_pinned_address_verifies_the_name_and_sends_it_as_sni(
    run: Any, certificates: tuple[Path, Path, Path]
) -> None:
    ca_file, cert_file, key_file = certificates
    names: list[str | None] = []

    async def main() -> None:
        server_tls = _server_context(cert_file, key_file, names)
        async with Server(ok(b"secret"), ssl_context=server_tls) as server:
            client_tls = ssl.create_default_context(cafile=str(ca_file))
            pool = UpstreamPool(ssl_context=client_tls)
            target = Target(
                f"https://127.0.0.1:{server.port}/v1",
                host_header="upstream.test",
                sni="upstream.test",
            )
            for _ in range(2):
                response = await post(pool, target)
                assert await response.aread() == b"secret"
                await response.aclose()
            assert server.connections == 1
            assert b"Host: upstream.test\r\n" in server.requests[0].head
            await pool.aclose()

    run(main())
    assert names == ["upstream.test"]


def test_tls_refuses_a_certificate_for_another_name(
    run: Any, certificates: tuple[Path, Path, Path]
) -> None:
    ca_file, cert_file, key_file = certificates

    async def main() -> None:
        async with Server(ok(), ssl_context=_server_context(cert_file, key_file, [])) as server:
            pool = UpstreamPool(ssl_context=ssl.create_default_context(cafile=str(ca_file)))
            with pytest.raises(httpx.ConnectError):
                await post(pool, server.target(scheme="https", sni="other.test"))
            # Without a name, the address itself must be in the certificate, and it is not.
            with pytest.raises(httpx.ConnectError):
                await post(pool, server.target(scheme="https"))
            assert server.requests == []
            await pool.aclose()

    run(main())


def test_tls_verifies_certificates_by_default(
    run: Any, certificates: tuple[Path, Path, Path]
) -> None:
    _ca_file, cert_file, key_file = certificates

    async def main() -> None:
        async with Server(ok(), ssl_context=_server_context(cert_file, key_file, [])) as server:
            pool = UpstreamPool()  # httpx's default trust: the test CA is not in it
            with pytest.raises(httpx.ConnectError):
                await post(pool, server.target(scheme="https", sni="upstream.test"))
            context = pool.ssl_context()
            assert context.verify_mode == ssl.CERT_REQUIRED
            assert context.check_hostname
            assert server.requests == []
            await pool.aclose()

    run(main())


def test_a_slow_consumer_gets_a_large_stream_whole_and_in_order(run: Any) -> None:
    piece = bytes(range(256)) * 256  # 64 KiB
    count = 32  # 2 MiB in all, well past the point where reading from the socket pauses

    async def floods(exchange: Exchange) -> None:
        await exchange.send(
            f"HTTP/1.1 200 OK\r\nContent-Length: {len(piece) * count}\r\n\r\n".encode()
        )
        for _ in range(count):
            await exchange.send(piece)

    async def main() -> None:
        async with Server(floods) as server:
            pool = UpstreamPool()
            response = await post(pool, server.target())
            received = bytearray()
            async for block in response.aiter_bytes():
                received += block
                await asyncio.sleep(0.001)
            await response.aclose()
            assert bytes(received) == piece * count
            assert pool.idle_connections == 1
            await pool.aclose()

    run(main())


def test_closing_an_unread_large_answer_leaves_the_pool_working(run: Any) -> None:
    big = b"y" * (300 * 1024)  # past the pause threshold: reading may stop before the end

    async def main() -> None:
        async with Server(ok(big)) as server:
            pool = UpstreamPool()
            for _ in range(3):
                response = await post(pool, server.target())
                await asyncio.sleep(0.05)
                await response.aclose()  # unread: reused only if it was whole, never paused
            response = await post(pool, server.target(), read_timeout=1.0)
            assert await response.aread() == big
            await response.aclose()
            await pool.aclose()

    run(main())
