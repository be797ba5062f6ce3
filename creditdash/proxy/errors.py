"""Gateway errors in OpenAI's shape: {"error": {"message", "type", "code"}}."""

from __future__ import annotations

import re

import orjson
from starlette.responses import Response


class GatewayError(Exception):
    def __init__(self, status: int, message: str, type_: str, code: str | None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.code = code


def bad_request(message: str, code: str | None = None) -> GatewayError:
    return GatewayError(400, message, "invalid_request_error", code)


def unauthorized() -> GatewayError:
    # Never echo the key that was sent.
    return GatewayError(401, "Invalid API key.", "authentication_error", "invalid_api_key")


def insufficient_credits() -> GatewayError:
    return GatewayError(
        402,
        "Insufficient credits for this request; top up your balance.",
        "insufficient_credits",
        "insufficient_credits",
    )


def model_not_found(name: str) -> GatewayError:
    shown = name if len(name) <= 120 else name[:120] + "..."
    return GatewayError(
        404, f"The model '{shown}' does not exist or you do not have access to it.",
        "invalid_request_error", "model_not_found",
    )  # fmt: skip


def unsupported_endpoint(name: str, endpoint: str) -> GatewayError:
    shown = name if len(name) <= 120 else name[:120] + "..."
    return GatewayError(
        400, f"The model '{shown}' cannot serve {endpoint} requests: its upstreams speak "
        "another API.", "invalid_request_error", "unsupported_endpoint",
    )  # fmt: skip


def too_large(limit: int) -> GatewayError:
    return GatewayError(
        413, f"Request body exceeds {limit} bytes.", "invalid_request_error", "request_too_large"
    )


def rate_limited(message: str, code: str) -> GatewayError:
    return GatewayError(429, message, "rate_limit_error", code)


def upstream_failed(detail: str | None = None) -> GatewayError:
    """Every route failed; detail is the upstream's own message, when it sent one (redact it
    first)."""
    message = "The upstream provider failed on every route."
    if detail:
        message = f"The upstream provider returned an error: {detail}"
    return GatewayError(502, message, "upstream_error", "upstream_failed")


def upstream_incomplete() -> GatewayError:
    return GatewayError(
        502,
        "The upstream provider ended the stream before it was complete.",
        "upstream_error",
        "upstream_incomplete",
    )


def metering_failed() -> GatewayError:
    return GatewayError(
        500,
        "The request could not be metered; nothing was charged. Try again.",
        "server_error",
        "metering_failed",
    )


def upstream_timeout() -> GatewayError:
    return GatewayError(
        504, "The upstream provider timed out.", "upstream_error", "upstream_timeout"
    )


def error_body(message: str, type_: str, code: str | None) -> bytes:
    return orjson.dumps({"error": {"message": message, "type": type_, "code": code}})


def error_response(error: GatewayError, request_id: str | None = None) -> Response:
    headers = {"x-request-id": request_id} if request_id else None
    return Response(
        error_body(error.message, error.type, error.code),
        status_code=error.status,
        media_type="application/json",
        headers=headers,
    )


_BEARER = re.compile(rb"(?i)bearer\s+[A-Za-z0-9._~+/=-]{8,}")
# Key-shaped tokens, including masked ones such as "sk-proj-****abcd".
_KEYLIKE = re.compile(rb"\b(sk|pk|rk|key)[-_][A-Za-z0-9_*-]{4,}")


def redact_text(text: str, secrets: tuple[str, ...]) -> str:
    return redact(text.encode("utf-8"), secrets).decode("utf-8", "replace")


def redact(body: bytes, secrets: tuple[str, ...]) -> bytes:
    """Remove upstream secrets (and anything shaped like an API key) from an upstream body."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            body = body.replace(secret.encode("utf-8"), b"[redacted]")
    body = _BEARER.sub(b"Bearer [redacted]", body)
    return _KEYLIKE.sub(b"[redacted]", body)
