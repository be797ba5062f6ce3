"""The built-in sandbox upstream: an OpenAI-compatible and Anthropic-compatible responder
served in-process.

It answers deterministically (the same request gives the same text), counts tokens for real
(one token per word or punctuation mark of what it read and wrote), streams like OpenAI, and
honours stream_options.include_usage. For providers of kind anthropic-sandbox it also answers
POST /v1/messages in Anthropic's format, whole or streamed, with a prompt cache that behaves
like Anthropic's: the prompt up to its last cache_control breakpoint is written to the cache
the first time it is seen and read from it afterwards (cache_creation_input_tokens, then
cache_read_input_tokens). It lets a fresh install serve requests with no provider keys; the
gateway reaches it through an in-process transport, never the network.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import struct
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

_TOKEN = re.compile(r"\w+|[^\w\s]")
_PHRASES = (
    "This is the creditdash sandbox upstream.",
    "Every word you read here was counted and billed exactly.",
    "Swap this provider for a real one in the admin workspace.",
    "Balances move only through the double-entry ledger.",
)
DEFAULT_MAX_TOKENS = 64
EMBEDDING_DIMENSIONS = 16
# Prompt prefixes the sandbox's prompt cache remembers (the oldest are forgotten first).
CACHED_PREFIXES = 1024


def count_tokens(text: str) -> int:
    return len(_TOKEN.findall(text))


def _prompt_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return " ".join(_prompt_text(v) for v in value)
    if isinstance(value, dict):
        return _prompt_text(value.get("content") or value.get("text") or "")
    return ""


def _reply_tokens(seed: str, limit: int) -> list[str]:
    """Deterministic words for a prompt, cut to `limit` tokens."""
    digest = hashlib.sha256(seed.encode("utf-8")).digest()
    start = digest[0] % len(_PHRASES)
    words: list[str] = []
    i = 0
    while len(words) < limit and i < 4 * len(_PHRASES):
        words.extend(_TOKEN.findall(_PHRASES[(start + i) % len(_PHRASES)]))
        i += 1
    return words[:limit]


def _spaced(previous: str, token: str) -> str:
    """The token as it follows `previous` in running text."""
    if not previous or not token[0].isalnum() or previous in "-'(":
        return token
    return " " + token


def _join(tokens: list[str]) -> str:
    return "".join(_spaced(tokens[i - 1] if i else "", t) for i, t in enumerate(tokens))


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse(
        {"error": {"message": message, "type": "invalid_request_error", "code": None}},
        status_code=status,
    )


async def _body(request: Request) -> dict[str, Any] | None:
    try:
        body = json.loads(await request.body())
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _limit(body: dict[str, Any]) -> int:
    value = body.get("max_completion_tokens") or body.get("max_tokens") or DEFAULT_MAX_TOKENS
    return max(1, min(int(value), 4096)) if isinstance(value, int) else DEFAULT_MAX_TOKENS


async def chat_completions(request: Request) -> Response:
    body = await _body(request)
    if body is None or not isinstance(body.get("messages"), list):
        return _error(400, "messages must be a list")
    prompt = _prompt_text(body["messages"])
    return _answer(
        body, "chat.completion", prompt, count_tokens(prompt) + 3 * len(body["messages"])
    )


async def completions(request: Request) -> Response:
    body = await _body(request)
    if body is None or "prompt" not in body:
        return _error(400, "prompt is required")
    prompt = _prompt_text(body["prompt"])
    return _answer(body, "text_completion", prompt, count_tokens(prompt))


def _answer(body: dict[str, Any], kind: str, prompt: str, prompt_tokens: int) -> Response:
    tokens = _reply_tokens(prompt, _limit(body))
    model = str(body.get("model", "sandbox"))
    ident = "sbx-" + hashlib.sha256(prompt.encode()).hexdigest()[:16]
    usage = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": len(tokens),
        "total_tokens": prompt_tokens + len(tokens),
    }
    if body.get("stream"):
        include = bool((body.get("stream_options") or {}).get("include_usage"))
        return StreamingResponse(
            _stream(kind, ident, model, tokens, usage if include else None),
            media_type="text/event-stream",
        )
    if kind == "chat.completion":
        choice: dict[str, Any] = {
            "index": 0,
            "message": {"role": "assistant", "content": _join(tokens)},
            "finish_reason": "length" if len(tokens) >= _limit(body) else "stop",
        }
    else:
        choice = {"index": 0, "text": _join(tokens), "finish_reason": "stop"}
    return JSONResponse(
        {"id": ident, "object": kind, "created": int(time.time()), "model": model,
         "choices": [choice], "usage": usage}
    )  # fmt: skip


async def _stream(
    kind: str, ident: str, model: str, tokens: list[str], usage: dict[str, int] | None
) -> AsyncIterator[bytes]:
    chunk_kind = "chat.completion.chunk" if kind == "chat.completion" else "text_completion"
    base = {"id": ident, "object": chunk_kind, "created": int(time.time()), "model": model}
    for i, token in enumerate(tokens):
        piece = _spaced(tokens[i - 1] if i else "", token)
        if kind == "chat.completion":
            delta: dict[str, Any] = {"content": piece}
            if i == 0:
                delta["role"] = "assistant"
            choice: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": None}
        else:
            choice = {"index": 0, "text": piece, "finish_reason": None}
        yield b"data: " + json.dumps({**base, "choices": [choice]}).encode() + b"\n\n"
    final_choice: dict[str, Any] = {"index": 0, "finish_reason": "stop"}
    final_choice["delta" if kind == "chat.completion" else "text"] = (
        {} if kind == "chat.completion" else ""
    )
    yield b"data: " + json.dumps({**base, "choices": [final_choice]}).encode() + b"\n\n"
    if usage is not None:
        yield b"data: " + json.dumps({**base, "choices": [], "usage": usage}).encode() + b"\n\n"
    yield b"data: [DONE]\n\n"


async def embeddings(request: Request) -> Response:
    body = await _body(request)
    if body is None or "input" not in body:
        return _error(400, "input is required")
    encoding = body.get("encoding_format", "float")
    if encoding not in ("float", "base64"):
        return _error(400, "encoding_format must be 'float' or 'base64'")
    inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
    data = []
    total = 0
    for index, item in enumerate(inputs):
        text = _prompt_text(item) if not isinstance(item, int) else str(item)
        total += count_tokens(text) or 1
        digest = hashlib.sha256(text.encode()).digest()
        vector = [round((b - 128) / 128, 6) for b in digest[:EMBEDDING_DIMENSIONS]]
        embedding: list[float] | str = vector
        if encoding == "base64":  # as OpenAI sends it: little-endian float32s, base64-encoded
            packed = struct.pack(f"<{len(vector)}f", *vector)
            embedding = base64.b64encode(packed).decode()
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    return JSONResponse(
        {"object": "list", "data": data, "model": str(body.get("model", "sandbox")),
         "usage": {"prompt_tokens": total, "total_tokens": total}}
    )  # fmt: skip


async def models(_request: Request) -> Response:
    return JSONResponse({"object": "list", "data": [
        {"id": "sandbox-chat", "object": "model", "created": 0, "owned_by": "creditdash"},
        {"id": "sandbox-embed", "object": "model", "created": 0, "owned_by": "creditdash"},
        {"id": "sandbox-claude", "object": "model", "created": 0, "owned_by": "creditdash"},
    ]})  # fmt: skip


# ------------------------------------------------------------------ Anthropic's Messages API


class PromptCache:
    """The prefixes this sandbox has seen, as Anthropic's prompt cache would have stored them."""

    def __init__(self, size: int = CACHED_PREFIXES) -> None:
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._size = size

    def seen_before(self, key: str) -> bool:
        """Whether the prefix was cached already; it is (again) from now on."""
        known = key in self._seen
        self._seen[key] = None
        self._seen.move_to_end(key)
        while len(self._seen) > self._size:
            self._seen.popitem(last=False)
        return known


def _anthropic_error(status: int, message: str) -> JSONResponse:
    body = {"type": "error", "error": {"type": "invalid_request_error", "message": message}}
    return JSONResponse(body, status_code=status)


def _blocks(value: Any) -> list[Any]:
    """A system prompt or a message's content as a list of blocks."""
    if isinstance(value, str):
        return [{"type": "text", "text": value}] if value else []
    return [b for b in value if isinstance(b, dict)] if isinstance(value, list) else []


def _prefix_text(body: dict[str, Any]) -> str:
    """The prompt's text up to its last cache_control breakpoint ("" when it has none)."""
    seen: list[str] = []
    prefix = ""
    blocks = _blocks(body.get("system"))
    for message in body["messages"]:
        if isinstance(message, dict):
            blocks += _blocks(message.get("content"))
    for block in blocks:
        seen.append(_prompt_text(block))
        if block.get("cache_control"):
            prefix = " ".join(seen)
    return prefix


def _messages_usage(body: dict[str, Any], prompt: str, cache: PromptCache) -> dict[str, int]:
    total = count_tokens(prompt) + 3 * len(body["messages"])
    prefix = _prefix_text(body)
    cached = min(count_tokens(prefix), total)
    key = hashlib.sha256(f"{body.get('model')}\n{prefix}".encode()).hexdigest()
    read = cached if prefix and cache.seen_before(key) else 0
    written = cached - read
    return {"input_tokens": total - cached, "cache_creation_input_tokens": written,
            "cache_read_input_tokens": read, "output_tokens": 0}  # fmt: skip


def messages_endpoint(cache: PromptCache) -> Any:
    async def messages(request: Request) -> Response:
        body = await _body(request)
        if body is None or not isinstance(body.get("messages"), list) or not body["messages"]:
            return _anthropic_error(400, "messages: at least one message is required")
        limit = body.get("max_tokens")
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            return _anthropic_error(400, "max_tokens: a positive integer is required")
        prompt = " ".join((_prompt_text(body.get("system") or ""),
                           _prompt_text(body["messages"])))  # fmt: skip
        limit = min(limit, 4096)
        tokens = _reply_tokens(prompt, limit)
        usage = _messages_usage(body, prompt, cache)
        usage["output_tokens"] = len(tokens)
        message = {
            "id": "msg_sbx_" + hashlib.sha256(prompt.encode()).hexdigest()[:20],
            "type": "message",
            "role": "assistant",
            "model": str(body.get("model", "sandbox-claude")),
            "content": [{"type": "text", "text": _join(tokens)}],
            "stop_reason": "max_tokens" if len(tokens) >= limit else "end_turn",
            "stop_sequence": None,
            "usage": usage,
        }
        if body.get("stream"):
            return StreamingResponse(_message_events(message, tokens),
                                     media_type="text/event-stream")  # fmt: skip
        return JSONResponse(message)

    return messages


def _event(kind: str, data: dict[str, Any]) -> bytes:
    return f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n".encode()


async def _message_events(message: dict[str, Any], tokens: list[str]) -> AsyncIterator[bytes]:
    usage = message["usage"]
    start = {**message, "content": [], "stop_reason": None,
             "usage": {**usage, "output_tokens": 1}}  # fmt: skip
    yield _event("message_start", {"message": start})
    yield _event("content_block_start", {"index": 0, "content_block": {"type": "text",
                                                                     "text": ""}})  # fmt: skip
    yield _event("ping", {})
    for i, token in enumerate(tokens):
        piece = _spaced(tokens[i - 1] if i else "", token)
        delta = {"type": "text_delta", "text": piece}
        yield _event("content_block_delta", {"index": 0, "delta": delta})
    yield _event("content_block_stop", {"index": 0})
    yield _event("message_delta", {
        "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
        "usage": {"output_tokens": usage["output_tokens"]},
    })  # fmt: skip
    yield _event("message_stop", {})


def create_sandbox_app() -> Starlette:
    cache = PromptCache()
    return Starlette(
        routes=[
            Route("/v1/messages", messages_endpoint(cache), methods=["POST"]),
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
            Route("/v1/completions", completions, methods=["POST"]),
            Route("/v1/embeddings", embeddings, methods=["POST"]),
            Route("/v1/models", models, methods=["GET"]),
        ]
    )
