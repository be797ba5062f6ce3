"""The gateway's one usage shape (docs/contract.md "Usage"): what parse_usage accepts."""

from __future__ import annotations

from creditdash.catalog.prices import TokenUsage
from creditdash.proxy.usage import parse_usage


def test_chat_usage_with_cache_reads_and_writes() -> None:
    usage = parse_usage(
        {
            "prompt_tokens": 1000,
            "completion_tokens": 50,
            "prompt_tokens_details": {"cached_tokens": 300, "cache_write_tokens": 200},
            "completion_tokens_details": {"reasoning_tokens": 20},
        }
    )
    assert usage == TokenUsage(
        prompt_tokens=1000,
        completion_tokens=50,
        cached_tokens=300,
        reasoning_tokens=20,
        cache_write_tokens=200,
    )


def test_responses_style_names() -> None:
    usage = parse_usage(
        {
            "input_tokens": 40,
            "output_tokens": 9,
            "input_tokens_details": {"cached_tokens": 8},
            "output_tokens_details": {"reasoning_tokens": 3},
        }
    )
    assert usage == TokenUsage(
        prompt_tokens=40, completion_tokens=9, cached_tokens=8, reasoning_tokens=3
    )


def test_cache_counts_are_clamped_to_the_prompt() -> None:
    usage = parse_usage(
        {
            "prompt_tokens": 10,
            "completion_tokens": 1,
            "prompt_tokens_details": {"cached_tokens": 8, "cache_write_tokens": 50},
        }
    )
    assert usage is not None
    assert (usage.cached_tokens, usage.cache_write_tokens) == (8, 2)


def test_an_invalid_cache_write_count_is_invalid_usage() -> None:
    bad = {"prompt_tokens": 10, "completion_tokens": 1,
           "prompt_tokens_details": {"cache_write_tokens": -1}}  # fmt: skip
    assert parse_usage(bad) is None
