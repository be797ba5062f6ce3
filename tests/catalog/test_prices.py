import pytest

from creditdash.catalog.prices import (
    Price,
    TokenUsage,
    cost_micros,
    margin_basis_points,
    worst_case_micros,
)

# gpt-4o-mini-like: 0.60 / 2.40 / 0.30 credits per 1M tokens.
PRICE = Price(600_000, 2_400_000, 300_000)


def test_cost_is_exact_for_whole_micros() -> None:
    usage = TokenUsage(prompt_tokens=1_000_000, completion_tokens=500_000)
    assert cost_micros(PRICE, usage) == 600_000 + 1_200_000


def test_cached_prompt_tokens_use_the_cached_price() -> None:
    usage = TokenUsage(prompt_tokens=1000, completion_tokens=0, cached_tokens=400)
    # 600 * 0.6 + 400 * 0.3 = 360 + 120 micros
    assert cost_micros(PRICE, usage) == 480


def test_cache_writes_use_the_cache_write_price_or_else_input() -> None:
    # Anthropic-like: cache writes at 1.25x input (0.75), reads at 0.1x.
    price = Price(600_000, 2_400_000, 60_000, cache_write_micros_per_mtok=750_000)
    usage = TokenUsage(prompt_tokens=1000, cached_tokens=300, cache_write_tokens=200)
    # 500 uncached * 0.6 + 300 read * 0.06 + 200 written * 0.75 = 300 + 18 + 150
    assert cost_micros(price, usage) == 468
    # Without a cache-write price the written tokens cost input.
    assert cost_micros(Price(600_000, 2_400_000, 60_000), usage) == 300 + 18 + 120


def test_cache_counts_never_exceed_the_prompt() -> None:
    price = Price(1_000_000, 0, 0, cache_write_micros_per_mtok=2_000_000)
    # A write count beyond what is left after the reads is clamped: 10 prompt, 8 read, 2 written.
    usage = TokenUsage(prompt_tokens=10, cached_tokens=8, cache_write_tokens=50)
    assert cost_micros(price, usage) == 4


def test_worst_case_holds_the_dearest_input_price() -> None:
    price = Price(600_000, 0, 60_000, cache_write_micros_per_mtok=750_000)
    hold = worst_case_micros(price, prompt_tokens=1000, max_output_tokens=0)
    assert hold == 750
    assert cost_micros(price, TokenUsage(prompt_tokens=1000, cache_write_tokens=1000)) <= hold


def test_rounding_is_half_up_once_per_request() -> None:
    # 1 prompt token at 0.6 micros -> 0.6 -> 1 micro; 0.4 -> 0; exactly 0.5 -> 1.
    assert cost_micros(PRICE, TokenUsage(prompt_tokens=1)) == 1
    assert cost_micros(Price(400_000, 0, 0), TokenUsage(prompt_tokens=1)) == 0
    assert cost_micros(Price(500_000, 0, 0), TokenUsage(prompt_tokens=1)) == 1
    # Summed before rounding: 3 tokens * 0.4 = 1.2 -> 1 (not 0 + 0 + 0).
    assert cost_micros(Price(400_000, 0, 0), TokenUsage(prompt_tokens=3)) == 1


def test_reasoning_tokens_are_output_and_not_counted_twice() -> None:
    plain = TokenUsage(prompt_tokens=10, completion_tokens=100)
    reasoning = TokenUsage(prompt_tokens=10, completion_tokens=100, reasoning_tokens=80)
    assert cost_micros(PRICE, plain) == cost_micros(PRICE, reasoning) == 6 + 240


def test_request_fee_and_zero_usage() -> None:
    fee = Price(0, 0, 0, request_fee_micros=1500)
    assert cost_micros(fee, TokenUsage()) == 1500
    assert cost_micros(PRICE, TokenUsage()) == 0


def test_worst_case_covers_any_real_outcome() -> None:
    hold = worst_case_micros(PRICE, prompt_tokens=500, max_output_tokens=1000)
    for completion in (0, 1, 999, 1000):
        for cached in (0, 250, 500):
            usage = TokenUsage(
                prompt_tokens=500, completion_tokens=completion, cached_tokens=cached
            )
            assert cost_micros(PRICE, usage) <= hold


@pytest.mark.parametrize("bad", [-1, True, 1.5])
def test_token_counts_must_be_non_negative_integers(bad: object) -> None:
    with pytest.raises(ValueError):
        TokenUsage(prompt_tokens=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        TokenUsage(cache_write_tokens=bad)  # type: ignore[arg-type]


def test_margin() -> None:
    assert margin_basis_points(1000, 250) == 7500
    assert margin_basis_points(1000, 1200) == -2000
    assert margin_basis_points(0, 10) is None
