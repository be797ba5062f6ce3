"""Pure translations between Anthropic's Messages API and the hub's chat shape (a first part:
stop reasons, usage and error types; requests and streams are still to come)."""

from __future__ import annotations

from typing import Any

# Anthropic stop_reason -> chat finish_reason.
_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "pause_turn": "stop",
    "refusal": "content_filter",
}
# chat finish_reason -> Anthropic stop_reason.
_STOP = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use",
         "function_call": "tool_use", "content_filter": "refusal"}  # fmt: skip
# Gateway status -> Anthropic error type. 402 keeps its status with "billing_error"; 502 and
# 504 are api_error (the upstream failed or timed out), 529 overloaded_error.
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


def finish_reason(stop_reason: Any) -> str:
    """The chat finish_reason of an Anthropic stop_reason (unknown ones read as stop)."""
    return _FINISH.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"


def stop_reason(finish: Any) -> str:
    """The Anthropic stop_reason of a chat finish_reason (unknown ones read as end_turn)."""
    return _STOP.get(finish, "end_turn") if isinstance(finish, str) else "end_turn"


def error_type(status: int) -> str:
    """The Anthropic error type for an HTTP status."""
    if status in _ERROR_TYPES:
        return _ERROR_TYPES[status]
    return "invalid_request_error" if 400 <= status < 500 else "api_error"


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def hub_usage(usage: dict[str, Any]) -> dict[str, Any]:
    """Anthropic usage in the hub shape: prompt_tokens counts all input, cache reads and
    writes included (Anthropic's input_tokens is only the uncached part)."""
    read = _int(usage.get("cache_read_input_tokens"))
    written = _int(usage.get("cache_creation_input_tokens"))
    prompt = _int(usage.get("input_tokens")) + read + written
    output = _int(usage.get("output_tokens"))
    return {
        "prompt_tokens": prompt,
        "completion_tokens": output,
        "total_tokens": prompt + output,
        "prompt_tokens_details": {"cached_tokens": read, "cache_write_tokens": written},
    }


def messages_usage(usage: dict[str, Any]) -> dict[str, int]:
    """Hub usage as Anthropic reports it: input_tokens is the uncached part only."""
    details = usage.get("prompt_tokens_details")
    details = details if isinstance(details, dict) else {}
    read = _int(details.get("cached_tokens"))
    written = _int(details.get("cache_write_tokens"))
    prompt = _int(usage.get("prompt_tokens"))
    return {
        "input_tokens": max(0, prompt - read - written),
        "cache_read_input_tokens": read,
        "cache_creation_input_tokens": written,
        "output_tokens": _int(usage.get("completion_tokens")),
    }
