"""From what the upstream reported to what is charged, and back into the answer's usage object.

The upstream's usage is trusted only when every count is a plausible integer; otherwise a marked
estimate applies, so a request is never free and no count can overflow 64-bit micros. The
charged counts are bounded by the output cap that was held. The cost is written into the
serialized answer from integer micros, never through a float.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

from creditdash.catalog.prices import TokenUsage
from creditdash.core.money import format_credits
from creditdash.proxy import tokens
from creditdash.proxy.call import Call, Outcome

# No request uses a billion tokens; a count beyond it is invalid usage (the estimate applies),
# and keeps every price product far inside 64-bit micros.
MAX_USAGE_TOKENS = 10**9


def usage_of(call: Call, usage: Any, produced_text: Callable[[], str]) -> tuple[TokenUsage, str]:
    """The upstream's usage when it gave a valid one, else an estimate (marked) that is never
    zero. The produced text is only assembled when an estimate is needed."""
    if isinstance(usage, dict):
        parsed = parse_usage(usage)
        if parsed is not None:
            return parsed, "provider"
    prompt = tokens.prompt_tokens(call.endpoint, call.body, call.model.media_part_tokens)
    completion = tokens.text_tokens(produced_text())
    return TokenUsage(prompt_tokens=prompt, completion_tokens=completion), "estimated"


def bounded_outcome(
    call: Call, status: str, http_status: int, usage: TokenUsage, source: str, billable: bool
) -> Outcome:
    """How a request ended, with its output bounded by the cap the upstream was sent.

    The upstream was told it may write call.output_cap tokens at most, and the hold covers no
    more. A count above it (a provider bug, or a provider that ignores the cap) is charged at
    the cap; the excess is recorded on the usage record as disputed. An estimate above it is
    our own over-count of the text, and is clamped without a dispute.
    """
    cap = call.output_cap
    disputed = 0
    if usage.completion_tokens > cap:
        disputed = usage.completion_tokens - cap if source == "provider" else 0
        usage = TokenUsage(
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=cap,
            cached_tokens=usage.cached_tokens,
            reasoning_tokens=min(usage.reasoning_tokens, cap),
            cache_write_tokens=usage.cache_write_tokens,
        )
    return Outcome(status, http_status, usage, source, billable, disputed)


def _count(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_USAGE_TOKENS:
        return value
    return None


def parse_usage(usage: dict[str, Any]) -> TokenUsage | None:
    """The upstream's counts (chat or Responses-style names), or None if any is invalid.

    This is the gateway's one usage shape (the hub every protocol adapter translates to and
    from, docs/contract.md "Usage"): prompt_tokens counts all input, cached or not;
    prompt_tokens_details.cached_tokens were read from the prompt cache and
    prompt_tokens_details.cache_write_tokens written to it (not an OpenAI field: the Anthropic
    adapters fill it in); completion_tokens includes reasoning_tokens."""
    prompt = _count(usage.get("prompt_tokens", usage.get("input_tokens")))
    completion = _count(usage.get("completion_tokens", usage.get("output_tokens", 0)))
    if prompt is None or completion is None:
        return None
    prompt_details = usage.get("prompt_tokens_details") or usage.get("input_tokens_details") or {}
    completion_details = (
        usage.get("completion_tokens_details") or usage.get("output_tokens_details") or {}
    )
    cached = _detail(prompt_details, "cached_tokens")
    written = _detail(prompt_details, "cache_write_tokens")
    reasoning = _detail(completion_details, "reasoning_tokens")
    if cached is None or written is None or reasoning is None:
        return None
    cached = min(cached, prompt)
    return TokenUsage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        cached_tokens=cached,
        reasoning_tokens=reasoning,
        cache_write_tokens=min(written, prompt - cached),
    )


def _detail(details: Any, name: str) -> int | None:
    """A count inside a details object: 0 when absent or null, None when present but invalid."""
    value = details.get(name) if isinstance(details, dict) else None
    return 0 if value is None else _count(value)


def usage_for_client(upstream: Any, outcome: Outcome, placeholder: str) -> dict[str, Any]:
    """The usage object the client sees: the upstream's, with the counts that were charged
    where they differ (an estimate, or output beyond the cap), and the cost."""
    shown = dict(upstream) if isinstance(upstream, dict) else {}
    usage = outcome.usage
    if outcome.usage_source == "estimated" or outcome.disputed_completion_tokens:
        shown.update(
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            total_tokens=usage.prompt_tokens + usage.completion_tokens,
        )
    if outcome.usage_source == "estimated":
        shown["estimated"] = True
    shown["cost"] = placeholder
    return shown


def cost_placeholder() -> str:
    # Stands in for usage.cost while serializing and is then replaced by the exact decimal
    # text, so the number is written from integer micros without passing through a float.
    # Random per response, so no text the model wrote can collide with it.
    return "__creditdash_cost_" + secrets.token_hex(16) + "__"


def with_cost(serialized: bytes, placeholder: str, price_micros: int) -> bytes:
    quoted = b'"' + placeholder.encode() + b'"'
    return serialized.replace(quoted, format_credits(price_micros).encode(), 1)
