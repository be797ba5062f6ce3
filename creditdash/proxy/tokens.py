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
