"""Token estimates, for holds and for responses that carry no usage.

Holds must never be too small, so the hold estimate counts request bytes generously. A missing
usage object is billed from a text estimate (about four characters a token, never zero for a
non-empty text) and the usage record is marked "estimated".
"""

from __future__ import annotations

import base64
import binascii
import math
import struct
from typing import Any

import orjson

CHARS_PER_TOKEN = 4
PER_MESSAGE_OVERHEAD = 4


def hold_prompt_tokens(body_bytes: bytes) -> int:
    """An over-estimate of the prompt's tokens: no tokenizer yields more than one per 2 bytes."""
    return len(body_bytes) // 2 + 16


# Content parts whose token cost is not the length of their bytes: images (a URL of a few bytes
# can cost thousands of tokens), audio and files.
MEDIA_PART_TYPES = frozenset(
    {"image_url", "input_image", "image", "input_audio", "file", "input_file"}
)


def media_parts(endpoint: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    """The image, audio and file parts of a chat request's messages."""
    if endpoint != "chat":
        return []
    messages = body.get("messages")
    if not isinstance(messages, list):
        return []
    found = []
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            found += [
                part
                for part in content
                if isinstance(part, dict) and part.get("type") in MEDIA_PART_TYPES
            ]
    return found


def has_inline_data(part: dict[str, Any]) -> bool:
    """Whether a file part carries its bytes (which the byte estimate then counts)."""
    inner = part.get("file")
    for holder in (part, inner if isinstance(inner, dict) else {}):
        if isinstance(holder.get("file_data"), str) and holder["file_data"]:
            return True
    return False


# OpenAI's rule for an image's prompt tokens: detail "low" is a flat 85; otherwise the image is
# fitted into 2048 x 2048, then scaled so its short side is at most 768, and each 512 x 512 tile
# of the result costs 170 on top of the 85.
IMAGE_BASE_TOKENS = 85
IMAGE_TILE_TOKENS = 170
# An image whose size the gateway cannot see (a URL, or data it cannot read): the count of a
# 1024 x 1024 image (four tiles), the usual size clients send.
UNKNOWN_IMAGE_TOKENS = IMAGE_BASE_TOKENS + 4 * IMAGE_TILE_TOKENS
# How much of a data URL is decoded to find the image's size (a JPEG's frame header can sit
# after tens of kilobytes of metadata).
_SIZE_PREFIX_CHARS = 96 * 1024
PER_TOOL_OVERHEAD = 8


def image_tile_tokens(width: int, height: int) -> int:
    """The tokens of a high-detail image of this size, by OpenAI's tile rule."""
    if width <= 0 or height <= 0:
        return UNKNOWN_IMAGE_TOKENS
    fit = min(1.0, 2048 / max(width, height))
    wide, high = width * fit, height * fit
    short = min(1.0, 768 / min(wide, high))
    tiles = math.ceil(wide * short / 512) * math.ceil(high * short / 512)
    return IMAGE_BASE_TOKENS + IMAGE_TILE_TOKENS * tiles


def image_tokens(part: dict[str, Any]) -> int:
    """An image part's prompt tokens: 85 at detail "low", else the tile rule for the size read
    from a data URL's image header, else the count of a 1024-square image."""
    holder = part.get("image_url")
    url = holder.get("url") if isinstance(holder, dict) else holder
    detail = (holder.get("detail") if isinstance(holder, dict) else None) or part.get("detail")
    if detail == "low":
        return IMAGE_BASE_TOKENS
    if isinstance(url, str) and url.startswith("data:"):
        size = image_size(url)
        if size is not None:
            return image_tile_tokens(*size)
    return UNKNOWN_IMAGE_TOKENS


def image_size(data_url: str) -> tuple[int, int] | None:
    """Width and height from the header of a base64 data URL's PNG, GIF, JPEG or WebP image."""
    comma = data_url.find(",")
    if comma < 0 or ";base64" not in data_url[:comma]:
        return None
    encoded = data_url[comma + 1 : comma + 1 + _SIZE_PREFIX_CHARS]
    try:
        head = base64.b64decode(encoded[: len(encoded) // 4 * 4], validate=False)
    except (binascii.Error, ValueError):
        return None
    if head[:8] == b"\x89PNG\r\n\x1a\n" and len(head) >= 24:
        return struct.unpack(">II", head[16:24])
    if head[:6] in (b"GIF87a", b"GIF89a") and len(head) >= 10:
        return struct.unpack("<HH", head[6:10])
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return _webp_size(head)
    if head[:2] == b"\xff\xd8":
        return _jpeg_size(head)
    return None


def _webp_size(head: bytes) -> tuple[int, int] | None:
    chunk = head[12:16]
    if chunk == b"VP8X" and len(head) >= 30:
        width = int.from_bytes(head[24:27], "little") + 1
        return width, int.from_bytes(head[27:30], "little") + 1
    if chunk == b"VP8 " and len(head) >= 30:
        width, height = struct.unpack("<HH", head[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L" and len(head) >= 25:
        bits = int.from_bytes(head[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    return None


def _jpeg_size(head: bytes) -> tuple[int, int] | None:
    """The size in a JPEG's first start-of-frame marker, walking the segments before it."""
    at = 2
    while at + 9 <= len(head):
        if head[at] != 0xFF:
            return None
        marker = head[at + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
            at += 2
            continue
        length = struct.unpack(">H", head[at + 2 : at + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", head[at + 5 : at + 9])
            return width, height
        at += 2 + length
    return None


def media_tokens(part: dict[str, Any], per_part: int | None) -> int:
    """A media part's estimated prompt tokens: images by the tile rule, other media at the
    model's per-part allowance; never more than that allowance (what the hold covered)."""
    kind = part.get("type")
    estimate = image_tokens(part) if kind in ("image_url", "input_image", "image") else None
    if per_part is None:
        return estimate if estimate is not None else UNKNOWN_IMAGE_TOKENS
    return per_part if estimate is None else min(estimate, per_part)


def tools_tokens(body: dict[str, Any]) -> int:
    """The tool definitions' share of the prompt: their JSON text, plus a little per tool."""
    tools = body.get("tools")
    if not isinstance(tools, list) or not tools:
        return 0
    return text_tokens(orjson.dumps(tools).decode()) + PER_TOOL_OVERHEAD * len(tools)


def _message_tokens(message: dict[str, Any], media_cap: int | None) -> int:
    content = message.get("content")
    total = text_tokens(_content_text(content)) + PER_MESSAGE_OVERHEAD
    if isinstance(content, list):
        total += sum(
            media_tokens(part, media_cap)
            for part in content
            if isinstance(part, dict) and part.get("type") in MEDIA_PART_TYPES
        )
    calls = message.get("tool_calls")
    if isinstance(calls, list) and calls:
        total += text_tokens(orjson.dumps(calls).decode())
    return total


def text_tokens(text: str) -> int:
    if not text:
        return 0
    return max(1, -(-len(text) // CHARS_PER_TOKEN))


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
            elif isinstance(part, str):
                parts.append(part)
        return " ".join(parts)
    return ""


def prompt_tokens(endpoint: str, body: dict[str, Any], media_cap: int | None = None) -> int:
    """A best estimate of the prompt's tokens, for billing when the upstream gives no usage:
    message text, images by the tile rule (each at most media_cap, the model's per-part
    allowance the hold covered), tool calls and tool definitions."""
    if endpoint == "chat":
        messages = body.get("messages")
        if isinstance(messages, list):
            total = sum(_message_tokens(m, media_cap) for m in messages if isinstance(m, dict))
            return total + tools_tokens(body) or 1
        return 1
    field = body.get("prompt" if endpoint == "completions" else "input")
    if isinstance(field, str):
        return text_tokens(field) or 1
    if isinstance(field, list):
        total = 0
        for item in field:
            if isinstance(item, str):
                total += text_tokens(item)
            elif isinstance(item, int):
                total += 1  # a token id
            elif isinstance(item, list):
                total += len(item)  # a list of token ids
        return total or 1
    return 1


def choices_text(payload: dict[str, Any]) -> str:
    """The text a response or a streamed chunk carries: message or delta content, tool calls,
    or completion text, over all choices."""
    choices = payload.get("choices")
    if not isinstance(choices, list):
        return ""
    texts = []
    for choice in choices:
        if not isinstance(choice, dict):
            continue
        body = choice.get("message") or choice.get("delta")
        if isinstance(body, dict):
            texts.append(_content_text(body.get("content")))
            if body.get("tool_calls"):
                texts.append(str(body["tool_calls"]))
        elif isinstance(choice.get("text"), str):
            texts.append(choice["text"])
    return "".join(texts)
