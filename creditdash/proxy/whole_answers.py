"""A whole JSON answer from an upstream, read before anything reaches the client.

Forwarding reads the body of every non-stream answer, and of a stream request answered with
`content-type: application/json`, before it counts the attempt a success, so two kinds of
answer can be told apart while another route can still be tried:

- a 200 whose body is only an error (`{"error": {...}}`, no choices, data or content): not a
  success, but an upstream failure that falls through as a 5xx does (`error_of`);
- a plain chat completion sent to a stream request: relayed as the chat event stream the
  client asked for (`completion_events`), and metered from its usage like any stream.

The body read is kept in a `WholeBody`, the ResponseLike the rest of the request reads.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

# Keys of a body that is an answer, whatever else it says: chat and completions (choices),
# embeddings (data), a Messages answer (content), a Responses answer (output).
ANSWER_KEYS = ("choices", "data", "content", "output")
MAX_MESSAGE_CHARS = 500


class WholeBody:
    """A ResponseLike over a body already read: the upstream connection is closed."""

    def __init__(self, status_code: int, body: bytes) -> None:
        self.status_code = status_code
        self._body = body

    async def aread(self) -> bytes:
        return self._body

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        if self._body:
            yield self._body

    async def aclose(self) -> None:
        pass


def is_json(response: Any) -> bool:
    """Whether an upstream response says its body is JSON (its content-type)."""
    value = getattr(response, "content_type", None)
    if value is None:
        headers = getattr(response, "headers", None)
        value = headers.get("content-type") if headers is not None else None
    if not isinstance(value, str):
        return False
    return value.split(";", 1)[0].strip().lower() == "application/json"


def parse(raw: bytes) -> Any:
    """The body as JSON, or None when it is not JSON."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


def error_of(data: Any) -> Any:
    """The error of an answer that is only an error, else None: a JSON object with a non-empty
    `error` and none of the keys an answer has (a Responses object's `"error": null` is not
    one)."""
    if not isinstance(data, dict):
        return None
    error = data.get("error")
    if not error or any(key in data for key in ANSWER_KEYS):
        return None
    return error


def error_message(error: Any) -> str:
    """The message of an upstream's error object (or the error itself when it is text)."""
    message = error.get("message") if isinstance(error, dict) else error
    text = message if isinstance(message, str) else orjson.dumps(error).decode()
    text = " ".join(text.split())
    return text if len(text) <= MAX_MESSAGE_CHARS else text[:MAX_MESSAGE_CHARS] + "..."


def completion_events(endpoint: str, data: Any) -> bytes:
    """A whole chat completion (or completions answer) as the event stream that would have
    carried it: per choice its role and content (chat) or text (completions), its tool calls,
    then its finish reason; the usage chunk (choices: []) when it has usage; `data: [DONE]`.
    Anything that is not an answer with choices gives no events at all (the relay then ends
    it as incomplete, and nothing was delivered to charge)."""
    if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
        return b""
    text_completion = endpoint == "completions"
    base = {key: data[key] for key in ("id", "created", "model", "system_fingerprint")
            if key in data}  # fmt: skip
    base["object"] = "text_completion" if text_completion else "chat.completion.chunk"
    events: list[dict[str, Any]] = []
    for position, choice in enumerate(data["choices"]):
        if not isinstance(choice, dict):
            continue
        index = choice.get("index", position)
        if text_completion:
            pieces = [{"text": choice.get("text") or ""}]
        else:
            pieces = [{"delta": delta} for delta in _deltas(choice.get("message"))]
        for piece in pieces:
            events.append({**base, "choices": [{"index": index, **piece, "finish_reason": None}]})
        end: dict[str, Any] = {"index": index, "finish_reason": choice.get("finish_reason")}
        if text_completion:
            end["text"] = ""
        else:
            end["delta"] = {}
        if "logprobs" in choice:
            end["logprobs"] = choice["logprobs"]
        events.append({**base, "choices": [end]})
    if isinstance(data.get("usage"), dict):
        events.append({**base, "choices": [], "usage": data["usage"]})
    return b"".join(b"data: " + orjson.dumps(e) + b"\n\n" for e in events) + b"data: [DONE]\n\n"


def _deltas(message: Any) -> list[dict[str, Any]]:
    """A chat message as stream deltas: role and content (and refusal) first, then one delta
    per tool call with its index."""
    if not isinstance(message, dict):
        return []
    first: dict[str, Any] = {"role": message.get("role") or "assistant"}
    first["content"] = message.get("content")
    if message.get("refusal") is not None:
        first["refusal"] = message["refusal"]
    deltas = [first]
    calls = message.get("tool_calls")
    for index, call in enumerate(calls if isinstance(calls, list) else []):
        if isinstance(call, dict):
            deltas.append({"tool_calls": [{"index": index, **call}]})
    return deltas
