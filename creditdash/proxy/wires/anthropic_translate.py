"""Pure translations between Anthropic's Messages API and the hub's chat shape: stop reasons,
usage, error types and bodies, chat requests as Messages requests, and Messages answers as chat
completions (the event stream is translated in anthropic_upstream.py, which holds its state)."""

from __future__ import annotations

from typing import Any

import orjson

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


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def _blocks(content: Any) -> list[dict[str, Any]]:
    """Chat content (a string or parts) as Messages content blocks."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks: list[dict[str, Any]] = []
    for part in content if isinstance(content, list) else []:
        if not isinstance(part, dict):
            continue
        if part.get("type") == "text":
            blocks.append({"type": "text", "text": part.get("text", "")})
        elif part.get("type") == "image_url":
            url = (part.get("image_url") or {}).get("url", "")
            if url.startswith("data:") and ";base64," in url:
                media, data = url[5:].split(";base64,", 1)
                source = {"type": "base64", "media_type": media, "data": data}
            else:
                source = {"type": "url", "url": url}
            blocks.append({"type": "image", "source": source})
    return blocks


def chat_to_messages_request(body: dict[str, Any], model: str | None = None) -> dict[str, Any]:
    """A chat body as a Messages body (for `model` when given, else the body's own):
    system messages joined into `system`, tool results as tool_result blocks in a user turn,
    consecutive turns of one role merged."""
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    for message in body.get("messages") or []:
        role = message.get("role")
        if role in ("system", "developer"):
            system.append(_text(message.get("content")))
            continue
        if role == "tool":
            role, blocks = "user", [{"type": "tool_result",
                                     "tool_use_id": message.get("tool_call_id", ""),
                                     "content": _text(message.get("content"))}]  # fmt: skip
        else:
            blocks = _blocks(message.get("content"))
            for call in message.get("tool_calls") or []:
                function = call.get("function") or {}
                try:
                    arguments = orjson.loads(function.get("arguments") or "{}")
                except orjson.JSONDecodeError:
                    arguments = {}
                blocks.append({"type": "tool_use", "id": call.get("id", ""),
                               "name": function.get("name", ""), "input": arguments})  # fmt: skip
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"] += blocks
        else:
            turns.append({"role": role, "content": blocks})
    cap = body.get("max_completion_tokens") or body.get("max_tokens")
    out: dict[str, Any] = {"model": model or body.get("model"), "messages": turns,
                           "max_tokens": cap}  # fmt: skip
    if system:
        out["system"] = "\n\n".join(system)
    for name in ("temperature", "top_p", "stream"):
        if body.get(name) is not None:
            out[name] = body[name]
    stop = body.get("stop")
    if stop:
        out["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    tools = [t.get("function") or {} for t in body.get("tools") or [] if isinstance(t, dict)]
    if tools:
        out["tools"] = [{"name": f.get("name", ""), "description": f.get("description", ""),
                         "input_schema": f.get("parameters") or {"type": "object"}}
                        for f in tools]  # fmt: skip
    choice = body.get("tool_choice")
    if choice == "required":
        out["tool_choice"] = {"type": "any"}
    elif choice in ("auto", "none"):
        out["tool_choice"] = {"type": choice}
    elif isinstance(choice, dict):
        out["tool_choice"] = {"type": "tool", "name": (choice.get("function") or {}).get("name")}
    return out


def messages_to_chat_completion(message: dict[str, Any]) -> dict[str, Any]:
    """A complete Messages answer as a chat completion: text joined, tool_use blocks as tool
    calls, stop_reason as finish_reason, usage in the hub shape."""
    text: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in message.get("content") or []:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text":
            text.append(str(block.get("text", "")))
        elif block.get("type") == "tool_use":
            arguments = orjson.dumps(block.get("input") or {}).decode()
            calls.append({"id": block.get("id", ""), "type": "function",
                          "function": {"name": block.get("name", ""),
                                       "arguments": arguments}})  # fmt: skip
    reply: dict[str, Any] = {"role": "assistant", "content": "".join(text) if text else None}
    if calls:
        reply["tool_calls"] = calls
    usage = message.get("usage")
    return {
        "id": message.get("id", ""),
        "object": "chat.completion",
        "created": 0,
        "model": message.get("model", ""),
        "choices": [{"index": 0, "message": reply,
                     "finish_reason": finish_reason(message.get("stop_reason"))}],
        "usage": hub_usage(usage if isinstance(usage, dict) else {}),
    }  # fmt: skip


# Anthropic error type -> the OpenAI error type a chat client expects for it.
_CHAT_ERROR_TYPES = {
    "authentication_error": "authentication_error",
    "permission_error": "permission_error",
    "not_found_error": "invalid_request_error",
    "request_too_large": "invalid_request_error",
    "rate_limit_error": "rate_limit_error",
    "overloaded_error": "server_error",
    "api_error": "server_error",
}


def chat_error(error: Any, status: int = 0) -> dict[str, Any]:
    """An Anthropic error object ({"type", "message"}) in OpenAI's shape, with Anthropic's
    type kept as the code; a status stands in when the type is missing."""
    error = error if isinstance(error, dict) else {}
    kind = error.get("type")
    if not isinstance(kind, str) or not kind:
        kind = error_type(status) if status else "api_error"
    message = error.get("message")
    return {
        "message": message if isinstance(message, str) and message else "The upstream failed.",
        "type": _CHAT_ERROR_TYPES.get(kind, "invalid_request_error"),
        "code": kind,
    }


def chat_error_body(raw: bytes, status: int) -> bytes:
    """An Anthropic error body ({"type": "error", "error": {...}}) as OpenAI's error body;
    a body of any other shape keeps its text as the message."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        error = chat_error(data["error"], status)
    else:
        text = raw.decode("utf-8", "replace").strip()[:1000]
        error = chat_error({"message": text}, status)
    return orjson.dumps({"error": error})
