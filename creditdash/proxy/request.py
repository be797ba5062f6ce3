"""Reading a client's request body: pure functions over its bytes and its parsed object.

They decide what the hold must cover (the output cap, the number of choices, the media parts)
and refuse what cannot be priced before it runs, so nothing here needs the database or the
upstream. The OpenAI wire's field names live here and in usage.py / streaming.py only; a second
wire protocol would bring its own versions of these functions.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request

from creditdash.proxy import errors, tokens
from creditdash.proxy.snapshot import ModelEntry

MAX_CHOICES = 16
OUTPUT_CAP_FIELDS = ("max_completion_tokens", "max_tokens")


async def read_limited(request: Request, limit: int) -> bytes:
    """The body, refused with a 413 as soon as it (or its declared length) passes limit."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise errors.too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise errors.too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def parse_object(body: bytes) -> dict[str, Any]:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise errors.bad_request("The request body is not valid JSON.", "invalid_json") from None
    if not isinstance(parsed, dict):
        raise errors.bad_request("The request body must be a JSON object.", "invalid_json")
    return parsed


def model_name(body: dict[str, Any]) -> str:
    name = body.get("model")
    if not isinstance(name, str) or not name:
        raise errors.bad_request("'model' is required.", "missing_model")
    return name


def stream_flags(endpoint: str, body: dict[str, Any]) -> tuple[bool, bool]:
    """Whether the answer streams, and whether the client asked for the usage chunk."""
    flag = body.get("stream", False)
    if flag is not None and not isinstance(flag, bool):
        raise errors.bad_request("'stream' must be true or false.")
    stream = endpoint != "embeddings" and flag is True
    options = body.get("stream_options")
    wants_usage = bool(isinstance(options, dict) and options.get("include_usage"))
    return stream, wants_usage


def max_output(endpoint: str, body: dict[str, Any], model: ModelEntry) -> int:
    """The output one choice may produce, and the one cap the upstream is told.

    The smaller of max_completion_tokens and max_tokens, clamped to the model's limit (the
    limit itself when the client gave neither), is what the hold covers. The body then carries
    exactly that cap in exactly one field: max_completion_tokens when a chat client used that
    name (OpenAI's current one, which reasoning models require), else max_tokens. Forwarding
    both would let an upstream that reads the larger one produce output nobody holds for.
    """
    if endpoint == "embeddings":
        return 0
    asked: int | None = None
    for name in OUTPUT_CAP_FIELDS:
        value = body.get(name)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise errors.bad_request(f"'{name}' must be a positive integer.")
        asked = value if asked is None else min(asked, value)
    cap = model.max_output_tokens if asked is None else min(asked, model.max_output_tokens)
    modern = endpoint == "chat" and body.get("max_completion_tokens") is not None
    for name in OUTPUT_CAP_FIELDS:
        body.pop(name, None)
    body["max_completion_tokens" if modern else "max_tokens"] = cap
    return cap


def media_part_count(endpoint: str, body: dict[str, Any], model: ModelEntry) -> int:
    """How many image and file parts the request's input carries, checked against the model.

    An image costs a model up to thousands of tokens whatever the size of its URL, so each part
    is held as model.media_part_tokens on top of the byte estimate. A file referenced only by an
    id has no size the gateway can see: its cost cannot be bounded before it runs, so the
    request is refused rather than run unbounded.
    """
    count = 0
    for part in tokens.media_parts(endpoint, body):
        if part.get("type") in ("file", "input_file") and not tokens.has_inline_data(part):
            raise errors.bad_request(
                "File parts must carry their data inline (file_data); a file referenced by id "
                "cannot be priced before it runs.",
                "unsupported_file_reference",
            )
        count += 1
    if count > model.max_media_parts:
        what = (
            "no image or file input"
            if not model.max_media_parts
            else (f"at most {model.max_media_parts} image or file parts per request")
        )
        raise errors.bad_request(
            f"The model '{model.name}' takes {what}; this request has {count}.",
            "too_many_media_parts",
        )
    return count


def output_multiplier(endpoint: str, body: dict[str, Any]) -> int:
    """How many completions one request asks for: n, best_of and a list of prompts multiply."""
    total = 1
    for name in ("n", "best_of") if endpoint == "completions" else ("n",):
        value = body.get(name, 1)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_CHOICES:
            raise errors.bad_request(f"'{name}' must be an integer from 1 to {MAX_CHOICES}.")
        total *= value
    prompt = body.get("prompt")
    if endpoint == "completions" and isinstance(prompt, list) and prompt:
        if all(isinstance(p, int) for p in prompt):
            return total  # one prompt given as token ids
        if len(prompt) > MAX_CHOICES:
            raise errors.bad_request(f"At most {MAX_CHOICES} prompts per request.")
        total *= len(prompt)
    return total
