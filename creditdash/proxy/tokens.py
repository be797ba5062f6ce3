"""Token estimates, for holds and for responses that carry no usage.

Holds must never be too small, so the hold estimate counts request bytes generously. A missing
usage object is billed from a text estimate (about four characters a token, never zero for a
non-empty text) and the usage record is marked "estimated".
"""

from __future__ import annotations

from typing import Any

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


def prompt_tokens(endpoint: str, body: dict[str, Any]) -> int:
    """A best estimate of the prompt's tokens, for billing when the upstream gives no usage."""
    if endpoint == "chat":
        messages = body.get("messages")
        if isinstance(messages, list):
            return (
                sum(
                    text_tokens(_content_text(m.get("content"))) + PER_MESSAGE_OVERHEAD
                    for m in messages
                    if isinstance(m, dict)
                )
                or 1
            )
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
