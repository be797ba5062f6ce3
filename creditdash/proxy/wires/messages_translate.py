"""Pure translations for Messages API clients served over chat upstreams: a Messages request
as a chat body, a chat completion as a Messages answer, and the relay's chat events as
Messages stream events.

The opposite directions (for the Anthropic upstream) and the shared mappings (stop reasons,
usage, error types) are in anthropic_translate.py; this module reuses them.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from creditdash.proxy import errors, tokens
from creditdash.proxy.wires.anthropic_translate import error_type, messages_usage, stop_reason

# Anthropic fields with no chat counterpart that are accepted and dropped: top_k (chat has
# none), metadata (its user_id is Anthropic's own opaque id), thinking (see messages_to_chat),
# and the service and caching controls of Anthropic's own platform.
_TOOL_CHOICE = {"auto": "auto", "any": "required", "none": "none"}
# The usage chunk's cost as the relay wrote it: an exact decimal number. A "cost" key inside a
# string the model wrote would have its quotes escaped, so this only matches the real key.
_COST = re.compile(rb'"cost":(-?[0-9][0-9.eE+-]*)')


# --------------------------------------------------------------------------------- requests


def messages_to_chat(body: dict[str, Any], *, require_max_tokens: bool = True) -> dict[str, Any]:
    """A Messages request as the chat body the core meters.

    system (a string or text blocks; cache_control ignored) becomes the first system message,
    and a system-role message in the conversation a system message where it stands;
    tool_result blocks become tool messages placed before the rest of their user turn; tool_use
    blocks become the assistant's tool_calls; images (base64 or url) become image_url parts.
    Thinking and redacted_thinking blocks of earlier turns are dropped: a chat upstream cannot
    check their signatures.

    `thinking` is accepted and dropped rather than mapped to reasoning_effort: a chat upstream
    that is not a reasoning model refuses reasoning_effort, and the budget (a token count) has
    no faithful mapping to its three levels. Output stays bounded by max_tokens either way.
    top_k, metadata and Anthropic's platform controls (context_management, output_config,
    service_tier, container, mcp_servers) are dropped too. max_tokens is required, as
    Anthropic requires it (a 400 invalid_request_error), except for count_tokens.
    """
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise errors.bad_request("'messages' must be a non-empty list.", "invalid_messages")
    cap = body.get("max_tokens")
    if cap is None and require_max_tokens:
        raise errors.bad_request("'max_tokens' is required.", "missing_max_tokens")
    chat: list[dict[str, Any]] = []
    system = _system_text(body.get("system"))
    if system:
        chat.append({"role": "system", "content": system})
    for message in messages:
        role = message.get("role") if isinstance(message, dict) else None
        if role == "user":
            chat += _user_turn(message.get("content"))
        elif role == "assistant":
            chat.append(_assistant_turn(message.get("content")))
        elif role == "system":  # instructions in the conversation (Claude Code sends them)
            chat.append({"role": "system", "content": _system_text(message.get("content"))})
        else:
            raise errors.bad_request(
                "Each message needs a role of 'user', 'assistant' or 'system'.",
                "invalid_messages",
            )
    out: dict[str, Any] = {"model": body.get("model"), "messages": chat}
    if cap is not None:
        out["max_tokens"] = cap
    for name in ("temperature", "top_p", "stream"):
        if body.get(name) is not None:
            out[name] = body[name]
    stops = body.get("stop_sequences")
    if isinstance(stops, list) and stops:
        out["stop"] = [s for s in stops if isinstance(s, str)]
    tools = [_tool(t) for t in body.get("tools") or [] if isinstance(t, dict)]
    tools = [t for t in tools if t is not None]
    if tools:
        out["tools"] = tools
        choice = body.get("tool_choice")
        if isinstance(choice, dict):
            kind = choice.get("type")
            if kind == "tool" and isinstance(choice.get("name"), str):
                out["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
            elif kind in _TOOL_CHOICE:
                out["tool_choice"] = _TOOL_CHOICE[kind]
            if choice.get("disable_parallel_tool_use") is True:
                out["parallel_tool_calls"] = False
    return out


def _system_text(system: Any) -> str:
    if isinstance(system, str):
        return system
    if isinstance(system, list):
        return "\n\n".join(
            b["text"] for b in system if isinstance(b, dict) and isinstance(b.get("text"), str)
        )
    return ""


def _image_part(source: Any) -> dict[str, Any] | None:
    if not isinstance(source, dict):
        return None
    if source.get("type") == "base64":
        url = f"data:{source.get('media_type', 'image/png')};base64,{source.get('data', '')}"
    elif source.get("type") == "url" and isinstance(source.get("url"), str):
        url = source["url"]
    else:
        return None
    return {"type": "image_url", "image_url": {"url": url}}


def _parts(content: Any) -> list[dict[str, Any]]:
    """Text and image blocks as chat content parts (other block kinds are left out)."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    parts: list[dict[str, Any]] = []
    for block in content if isinstance(content, list) else []:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text" and isinstance(block.get("text"), str):
            parts.append({"type": "text", "text": block["text"]})
        elif block.get("type") == "image":
            image = _image_part(block.get("source"))
            if image is not None:
                parts.append(image)
    return parts


def _content(parts: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """Parts as chat content: a plain string when they are all text (what every upstream takes)."""
    if all(p["type"] == "text" for p in parts):
        return "".join(p["text"] for p in parts)
    return parts


def _user_turn(content: Any) -> list[dict[str, Any]]:
    """A user turn: its tool results as tool messages first (they answer the assistant's calls
    just before), then its text and images as one user message; images a tool returned follow
    in that user message, since a tool message carries text only."""
    if not isinstance(content, list):
        return [{"role": "user", "content": _content(_parts(content))}]
    results: list[dict[str, Any]] = []
    plain: list[Any] = []
    media: list[dict[str, Any]] = []
    for block in content:
        if not (isinstance(block, dict) and block.get("type") == "tool_result"):
            plain.append(block)
            continue
        parts = _parts(block.get("content"))
        text = "".join(p["text"] for p in parts if p["type"] == "text")
        if block.get("is_error") is True:
            text = f"Error: {text}" if text else "Error"
        tool_call_id = str(block.get("tool_use_id", ""))
        results.append({"role": "tool", "tool_call_id": tool_call_id, "content": text})
        media += [p for p in parts if p["type"] != "text"]
    rest = _parts(plain) + media
    if rest or not results:
        results.append({"role": "user", "content": _content(rest)})
    return results


def _assistant_turn(content: Any) -> dict[str, Any]:
    text = "".join(p["text"] for p in _parts(content) if p["type"] == "text")
    turn: dict[str, Any] = {"role": "assistant", "content": text or None}
    calls = []
    for block in content if isinstance(content, list) else []:
        if isinstance(block, dict) and block.get("type") == "tool_use":
            arguments = orjson.dumps(block.get("input") or {}).decode()
            calls.append({"id": str(block.get("id", "")), "type": "function",
                          "function": {"name": str(block.get("name", "")),
                                       "arguments": arguments}})  # fmt: skip
    if calls:
        turn["tool_calls"] = calls
    elif turn["content"] is None:
        turn["content"] = ""
    return turn


def _tool(tool: dict[str, Any]) -> dict[str, Any] | None:
    """A client tool as a chat function; Anthropic's server tools (a versioned type and no
    input_schema, such as web search) cannot run on a chat upstream and are left out."""
    schema = tool.get("input_schema")
    if not isinstance(tool.get("name"), str) or not isinstance(schema, dict):
        return None
    if tool.get("type") not in (None, "custom"):
        return None
    function: dict[str, Any] = {"name": tool["name"], "parameters": schema}
    if isinstance(tool.get("description"), str):
        function["description"] = tool["description"]
    return {"type": "function", "function": function}


def count_input_tokens(chat: dict[str, Any]) -> int:
    """The gateway's own estimate of a translated request's input (tokens.py's rule): the
    messages' text and images, the tool definitions and the tool calls of earlier turns."""
    return tokens.prompt_tokens("chat", chat)


# ---------------------------------------------------------------------------------- answers


def message_id(request_id: str) -> str:
    return "msg_" + request_id.removeprefix("req_")


def answer_usage(usage: dict[str, Any], cost: Any) -> dict[str, Any]:
    """Hub usage in Anthropic's shape (input_tokens without the cache counts), with the cost."""
    return {**messages_usage(usage), "cost": cost}


def chat_to_message(
    data: dict[str, Any], *, message_id: str, model: str, usage: dict[str, Any]
) -> dict[str, Any]:
    """A chat completion as a Messages answer: the first choice's text as a text block, its
    tool calls as tool_use blocks, finish_reason as stop_reason. usage is the answer's usage
    object, already in Anthropic's shape. A chat upstream does not say which stop sequence
    ended the text, so stop_sequence is always null."""
    choices = data.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices else {}
    choice = choice if isinstance(choice, dict) else {}
    reply = choice.get("message")
    reply = reply if isinstance(reply, dict) else {}
    content: list[dict[str, Any]] = []
    text = reply.get("content")
    if isinstance(text, list):
        text = "".join(p.get("text", "") for p in text if isinstance(p, dict))
    if isinstance(text, str) and text:
        content.append({"type": "text", "text": text})
    for call in reply.get("tool_calls") or []:
        if not isinstance(call, dict):
            continue
        function = call.get("function") or {}
        content.append({"type": "tool_use", "id": str(call.get("id") or ""),
                        "name": str(function.get("name") or ""),
                        "input": _arguments(function.get("arguments"))})  # fmt: skip
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason(choice.get("finish_reason")),
        "stop_sequence": None,
        "usage": usage,
    }


def _arguments(arguments: Any) -> dict[str, Any]:
    """Tool call arguments as tool_use input: an object (invalid JSON reads as empty)."""
    if isinstance(arguments, dict):
        return arguments
    try:
        parsed = orjson.loads(arguments or "{}")
    except (orjson.JSONDecodeError, TypeError):
        return {}
    return parsed if isinstance(parsed, dict) else {}


def error_body(status: int, message: str) -> bytes:
    """An error in Anthropic's shape, its type from the status. 503 reads as overloaded_error
    (Anthropic's 529); 413 as invalid_request_error, as the gateway's contract has it."""
    if status == 503:
        kind = "overloaded_error"
    elif status == 413:
        kind = "invalid_request_error"
    else:
        kind = error_type(status)
    return orjson.dumps({"type": "error", "error": {"type": kind, "message": message}})


def upstream_error_body(status: int, body: bytes) -> bytes:
    """An upstream's 4xx body in Anthropic's shape: an Anthropic error as it is, a chat error's
    message re-wrapped, anything else a generic message."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        parsed = None
    if isinstance(parsed, dict) and parsed.get("type") == "error" and "error" in parsed:
        return body
    message = "The upstream rejected the request."
    inner = parsed.get("error") if isinstance(parsed, dict) else None
    if isinstance(inner, dict) and isinstance(inner.get("message"), str):
        message = inner["message"]
    elif isinstance(inner, str):
        message = inner
    return error_body(status, message)


# ---------------------------------------------------------------------------------- streams


def sse(event: str, data: dict[str, Any]) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


class StreamTranslator:
    """The relay's chat events as Messages events, in Anthropic's order: message_start and a
    ping, then each content block's start, deltas and stop (text_delta for text,
    input_json_delta for a tool call's arguments), then message_delta with the stop reason and
    the final usage and cost, then message_stop. A relay error event becomes an `error` event.

    The usage a chat upstream reports comes last, so message_start says 0 input tokens and
    message_delta carries the final input, cache and output counts.
    """

    def __init__(self, message_id: str, model: str) -> None:
        self.message_id = message_id
        self.model = model
        self.started = False
        self.ended = False
        self._index = -1  # the open block's index; -1 before the first block
        self._open: str | None = None  # "text", or the chat tool call index as "tool:N"
        self._finish: Any = None
        self._usage: dict[str, Any] = {}
        self._cost = b"0"

    def start(self) -> bytes:
        self.started = True
        message: dict[str, Any] = {"id": self.message_id, "type": "message", "role": "assistant",
                   "model": self.model, "content": [], "stop_reason": None,
                   "stop_sequence": None,
                   "usage": {"input_tokens": 0, "cache_read_input_tokens": 0,
                             "cache_creation_input_tokens": 0, "output_tokens": 0}}  # fmt: skip
        return sse("message_start", {"type": "message_start", "message": message}) + sse(
            "ping", {"type": "ping"}
        )

    def feed(self, payload: bytes) -> bytes:
        """One relayed `data:` payload (a chat chunk, [DONE] or an error) as Messages events."""
        out = b"" if self.started else self.start()
        if self.ended:
            return out
        if payload == b"[DONE]":
            return out + self._end()
        try:
            chunk = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return out + self.fail("The upstream stream could not be read.")
        if not isinstance(chunk, dict):
            return out
        if "error" in chunk:
            return out + self._relay_error(chunk["error"])
        if isinstance(chunk.get("usage"), dict):
            self._usage = chunk["usage"]
            found = _COST.search(payload)
            self._cost = found.group(1) if found else b"0"
        for choice in chunk.get("choices") or []:
            if isinstance(choice, dict) and choice.get("index", 0) == 0:
                out += self._delta(choice.get("delta") or {})
                if choice.get("finish_reason"):
                    self._finish = choice["finish_reason"]
        return out

    def close(self) -> bytes:
        """The end of the relay's events: a stream that ended without [DONE] or an error
        event was cut short, and the client is told so."""
        out = b"" if self.started else self.start()
        if not self.ended:
            out += self.fail("The upstream provider ended the stream before it was complete.")
        return out

    def fail(self, message: str, kind: str = "api_error") -> bytes:
        self.ended = True
        return sse("error", {"type": "error", "error": {"type": kind, "message": message}})

    def _relay_error(self, error: Any) -> bytes:
        error = error if isinstance(error, dict) else {}
        code = str(error.get("code") or "")
        kind = "overloaded_error" if "overload" in code or "rate" in code else "api_error"
        return self.fail(str(error.get("message") or "The upstream provider failed."), kind)

    def _delta(self, delta: dict[str, Any]) -> bytes:
        out = b""
        text = delta.get("content")
        if isinstance(text, str) and text:
            if self._open != "text":
                out += self._open_block({"type": "text", "text": ""}, "text")
            out += self._block_delta({"type": "text_delta", "text": text})
        for call in delta.get("tool_calls") or []:
            if not isinstance(call, dict):
                continue
            key = f"tool:{call.get('index', 0)}"
            function = call.get("function") or {}
            if self._open != key:
                block = {"type": "tool_use", "id": str(call.get("id") or ""),
                         "name": str(function.get("name") or ""), "input": {}}  # fmt: skip
                out += self._open_block(block, key)
            arguments = function.get("arguments")
            if isinstance(arguments, str) and arguments:
                out += self._block_delta({"type": "input_json_delta", "partial_json": arguments})
        return out

    def _open_block(self, block: dict[str, Any], key: str) -> bytes:
        out = self._close_block()
        self._index += 1
        self._open = key
        start = {"type": "content_block_start", "index": self._index, "content_block": block}
        return out + sse("content_block_start", start)

    def _block_delta(self, delta: dict[str, Any]) -> bytes:
        event = {"type": "content_block_delta", "index": self._index, "delta": delta}
        return sse("content_block_delta", event)

    def _close_block(self) -> bytes:
        if self._open is None:
            return b""
        self._open = None
        stop = {"type": "content_block_stop", "index": self._index}
        return sse("content_block_stop", stop)

    def _end(self) -> bytes:
        self.ended = True
        placeholder = b'"__cost__"'
        delta = {"type": "message_delta",
                 "delta": {"stop_reason": stop_reason(self._finish), "stop_sequence": None},
                 "usage": answer_usage(self._usage, "__cost__")}  # fmt: skip
        # The cost goes out as the relay wrote it: exact decimal text, never through a float.
        final = sse("message_delta", delta).replace(placeholder, self._cost, 1)
        return self._close_block() + final + sse("message_stop", {"type": "message_stop"})
