"""The HTTP/1.1 wire pieces of the upstream client (upstream.py): a parsed upstream base URL,
a request's bytes, and gzip/deflate bodies decoded as they arrive. Pure functions and small
values, kept apart from the connection and pool logic they serve."""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable

import httpx

# (scheme, address, port, TLS server name)
Origin = tuple[str, str, int, str | None]


class Target:
    """A parsed upstream base URL: where to connect, what to call the host, the path prefix."""

    __slots__ = ("host_header", "origin", "prefix")

    def __init__(self, base_url: str, *, host_header: str | None, sni: str | None) -> None:
        url = httpx.URL(base_url)
        if url.scheme not in ("http", "https"):
            raise ValueError(f"unsupported scheme {url.scheme!r}")
        default_port = 443 if url.scheme == "https" else 80
        port = url.port or default_port
        address = url.host  # an IPv6 literal comes without its brackets
        server_name = (sni or address) if url.scheme == "https" else None
        self.origin: Origin = (url.scheme, address, port, server_name)
        if host_header is None:
            literal = f"[{address}]" if ":" in address else address
            host_header = literal if url.port in (None, default_port) else f"{literal}:{port}"
        self.host_header = host_header
        self.prefix = url.raw_path.decode("ascii").split("?", 1)[0].rstrip("/")


_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def serialize_request(
    method: str, path: str, host: str, headers: Iterable[tuple[str, str]], body: bytes
) -> bytes:
    """The request's bytes. Content-Length is the client's to set; a Host header among the
    headers replaces the default one. A header that could break the framing (a name that is
    not a token, CR, LF or NUL in a value) is refused, as h11 refuses it."""
    lines: list[str] = []
    for name, value in headers:
        if not _TOKEN.fullmatch(name) or "\r" in value or "\n" in value or "\0" in value:
            raise httpx.LocalProtocolError(f"illegal header {name!r}")
        lowered = name.lower()
        if lowered == "host":
            host = value
        elif lowered != "content-length" and lowered != "transfer-encoding":
            lines.append(f"{name}: {value}\r\n")
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n{''.join(lines)}"
    # Header text must be ASCII, as httpx requires; anything else raises UnicodeEncodeError.
    return f"{head}Content-Length: {len(body)}\r\n\r\n".encode("ascii") + body


class Decoder:
    """gzip or deflate bodies decoded as they arrive."""

    def __init__(self, encoding: bytes) -> None:
        self._gzip = encoding in (b"gzip", b"x-gzip")
        # 47 = 32 + 15: gzip or zlib header, detected; deflate without a header is retried raw.
        self._inflate = zlib.decompressobj(zlib.MAX_WBITS | 16 if self._gzip else 47)
        self._started = False

    def decode(self, data: bytes) -> bytes:
        try:
            out = self._inflate.decompress(data)
        except zlib.error as exc:
            if self._gzip or self._started:
                raise httpx.DecodingError(str(exc)) from None
            # Some servers send "deflate" as a bare deflate stream, without the zlib header.
            self._inflate = zlib.decompressobj(-zlib.MAX_WBITS)
            try:
                out = self._inflate.decompress(data)
            except zlib.error as raw_exc:
                raise httpx.DecodingError(str(raw_exc)) from None
        self._started = True
        return out

    def flush(self) -> bytes:
        try:
            return self._inflate.flush()
        except zlib.error as exc:
            raise httpx.DecodingError(str(exc)) from None


def decoders(value: bytes) -> list[Decoder]:
    # Listed in the order they were applied, so undone in reverse; unknown ones are left as
    # they are (as httpx does), identity too.
    names = [part.strip().lower() for part in value.split(b",")]
    return [Decoder(name) for name in reversed(names) if name in (b"gzip", b"x-gzip", b"deflate")]
