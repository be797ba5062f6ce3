"""Cross-origin (browser) access to the /v1 paths: an ASGI layer of GatewayApp.

CREDITDASH_CORS_ORIGINS names the origins (comma-separated; `*` any). There are no
credentials: a browser sends the customer's key itself, as a header. A preflight (OPTIONS with
Origin and Access-Control-Request-Method) is answered 204 here, before any authentication.
An allowed origin gets the Access-Control-* headers, on the preflight and on the answer; a
disallowed one gets none (its preflight is still 204, which the browser then refuses).
A request without an Origin header costs one scan of its headers and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.types import Message, Send

ALLOW_METHODS = b"GET, POST, DELETE, OPTIONS"
# Sent when a preflight names no headers; otherwise the ones it asks for are allowed as asked.
DEFAULT_ALLOW_HEADERS = (
    b"authorization, content-type, idempotency-key, x-api-key, anthropic-version, "
    b"anthropic-beta, openai-organization, openai-project"
)
# What a browser script may read of an answer.
EXPOSE_HEADERS = (
    b"x-request-id, x-credits-charged, x-credits-remaining, x-credits-available, retry-after"
)
MAX_AGE_S = b"7200"  # Chromium's ceiling


def parse_origins(setting: str) -> frozenset[bytes]:
    """The allowed origins of CREDITDASH_CORS_ORIGINS, trailing slashes and blanks dropped."""
    return frozenset(
        part.strip().rstrip("/").encode("latin-1") for part in setting.split(",") if part.strip()
    )


def header(scope: Any, name: bytes) -> bytes | None:
    """One request header (names arrive lowercased), or None."""
    key: bytes
    value: bytes
    for key, value in scope["headers"]:
        if key == name:
            return value
    return None


def is_gateway_path(path: str) -> bool:
    return path == "/v1" or path.startswith("/v1/")


class CorsPolicy:
    def __init__(self, setting: str) -> None:
        origins = parse_origins(setting)
        self.any_origin = b"*" in origins
        self.origins = origins - {b"*"}

    def allow_origin(self, origin: bytes) -> bytes | None:
        """The Access-Control-Allow-Origin value for this origin, or None: not allowed."""
        if self.any_origin:
            return b"*"
        return origin if origin in self.origins else None

    def preflight_headers(self, allowed: bytes | None, requested: bytes | None) -> list[Any]:
        headers: list[tuple[bytes, bytes]] = [(b"vary", b"origin")]
        if allowed is None:
            return headers
        return [
            *headers,
            (b"access-control-allow-origin", allowed),
            (b"access-control-allow-methods", ALLOW_METHODS),
            (b"access-control-allow-headers", requested or DEFAULT_ALLOW_HEADERS),
            (b"access-control-max-age", MAX_AGE_S),
        ]

    def answer_headers(self, allowed: bytes) -> list[tuple[bytes, bytes]]:
        headers = [
            (b"access-control-allow-origin", allowed),
            (b"access-control-expose-headers", EXPOSE_HEADERS),
        ]
        if allowed != b"*":
            headers.append((b"vary", b"origin"))
        return headers


def is_preflight(scope: Any) -> bool:
    return scope["method"] == "OPTIONS" and (
        header(scope, b"access-control-request-method") is not None
    )


def adding_headers(send: Send, extra: Callable[[], list[tuple[bytes, bytes]]]) -> Send:
    """send, with extra() headers added to the answer's start (those it does not set itself)."""

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", ()))
            present = {name.lower() for name, _ in headers}
            headers += [(name, value) for name, value in extra() if name not in present]
            message = {**message, "headers": headers}
        await send(message)

    return sending
