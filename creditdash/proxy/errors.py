"""Gateway errors in OpenAI's shape: {"error": {"message", "type", "code"}}.

Every error answer carries an `x-request-id`: the request's own once it has one, else a fresh
one (error_response here, and the Anthropic wire's renderer, are the only places that write
error answers).
"""

from __future__ import annotations

import re
from typing import Any

import orjson
from starlette.responses import Response

from creditdash.core.ids import new_id

# A key's concurrency limit frees a slot when one of its requests ends: a second is a fair wait.
CONCURRENCY_RETRY_AFTER_S = 1
# An upstream's Retry-After is passed on as given (seconds or an HTTP-date), if it is this short.
MAX_RETRY_AFTER_CHARS = 64


class GatewayError(Exception):
    """A refusal or failure the gateway decided. headers: extra answer headers (Retry-After);
    details: extra fields inside "error" (kept by the SDKs in error.body)."""

    def __init__(
        self,
        status: int,
        message: str,
        type_: str,
        code: str | None,
        *,
        headers: dict[str, str] | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.code = code
        self.headers = headers or {}
        self.details = details or {}
        # The request's id when the error was decided after it got one (a 402 after its hold).
        self.request_id: str | None = None


def bad_request(message: str, code: str | None = None) -> GatewayError:
    return GatewayError(400, message, "invalid_request_error", code)


def unauthorized() -> GatewayError:
    # Never echo the key that was sent.
    return GatewayError(401, "Invalid API key.", "authentication_error", "invalid_api_key")


def insufficient_credits(
    message: str = "Insufficient credits for this request; top up your balance.",
    details: dict[str, Any] | None = None,
) -> GatewayError:
    return GatewayError(
        402, message, "insufficient_credits", "insufficient_credits", details=details
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


def rate_limited(message: str, code: str, retry_after_s: int | None = None) -> GatewayError:
    headers = {"retry-after": str(retry_after_s)} if retry_after_s is not None else None
    return GatewayError(429, message, "rate_limit_error", code, headers=headers)


def upstream_rate_limited(retry_after: str | None) -> GatewayError:
    """Every route was tried and the last one answered 429: the provider's limit, passed on
    with its Retry-After when it gave a usable one."""
    headers = None
    if retry_after and len(retry_after) <= MAX_RETRY_AFTER_CHARS and retry_after.isprintable():
        headers = {"retry-after": retry_after}
    return GatewayError(
        429,
        "The upstream provider is rate limiting requests for this model; retry later.",
        "rate_limit_error",
        "rate_limit_exceeded",
        headers=headers,
    )


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


def error_body(
    message: str, type_: str, code: str | None, details: dict[str, Any] | None = None
) -> bytes:
    inner: dict[str, Any] = {"message": message, "type": type_, "code": code}
    if details:
        inner.update(details)
    return orjson.dumps({"error": inner})


def error_headers(error: GatewayError, request_id: str | None) -> dict[str, str]:
    """An error answer's headers: its request id (a fresh one when the request had none yet)
    and the error's own (Retry-After)."""
    return {"x-request-id": request_id or error.request_id or new_id("req"), **error.headers}


def error_response(error: GatewayError, request_id: str | None = None) -> Response:
    return Response(
        error_body(error.message, error.type, error.code, error.details),
        status_code=error.status,
        media_type="application/json",
        headers=error_headers(error, request_id),
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
