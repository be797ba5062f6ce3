"""What a request costs: token counts times per-1M-token prices, in integer micros.

Rounding rule (the only one for requests): the exact cost is
    (uncached_prompt * input + cache_read * cached_input + cache_write * cache_write
     + completion * output) / 1_000_000
micros, rounded half-up to a whole micro once per request, plus the per-request fee.
prompt_tokens counts every input token, cached or not (OpenAI's convention; Anthropic's
input_tokens is only the uncached part, and its adapter adds the cache counts back); of them,
cached_tokens were read from the provider's prompt cache and cache_write_tokens written to it.
Reasoning tokens are billed as output: OpenAI-style usage already counts them inside
completion_tokens, so they are recorded separately but not added twice.
"""

from __future__ import annotations

from dataclasses import dataclass

TOKENS_PER_MTOK = 1_000_000


@dataclass(frozen=True)
class Price:
    """Micros of a credit per 1M tokens, plus a flat fee per request."""

    input_micros_per_mtok: int
    output_micros_per_mtok: int
    cached_input_micros_per_mtok: int
    request_fee_micros: int = 0
    # Writing to a provider's prompt cache (Anthropic charges 1.25x input for it); None means
    # the input price.
    cache_write_micros_per_mtok: int | None = None

    @property
    def cache_write_micros(self) -> int:
        if self.cache_write_micros_per_mtok is None:
            return self.input_micros_per_mtok
        return self.cache_write_micros_per_mtok

    @property
    def has_negative(self) -> bool:
        """Whether any part is below zero (no price or cost may be)."""
        return (
            min(
                self.input_micros_per_mtok,
                self.output_micros_per_mtok,
                self.cached_input_micros_per_mtok,
                self.cache_write_micros,
                self.request_fee_micros,
            )
            < 0
        )


@dataclass(frozen=True)
class TokenUsage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    cache_write_tokens: int = 0

    def __post_init__(self) -> None:
        for name in (
            "prompt_tokens",
            "completion_tokens",
            "cached_tokens",
            "reasoning_tokens",
            "cache_write_tokens",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer")


def cost_micros(price: Price, usage: TokenUsage) -> int:
    cached = min(usage.cached_tokens, usage.prompt_tokens)
    written = min(usage.cache_write_tokens, usage.prompt_tokens - cached)
    uncached = usage.prompt_tokens - cached - written
    numerator = (
        uncached * price.input_micros_per_mtok
        + cached * price.cached_input_micros_per_mtok
        + written * price.cache_write_micros
        + usage.completion_tokens * price.output_micros_per_mtok
    )
    # Half-up: add half the divisor before the floor division (numerator is never negative).
    return (numerator + TOKENS_PER_MTOK // 2) // TOKENS_PER_MTOK + price.request_fee_micros


def worst_case_micros(price: Price, *, prompt_tokens: int, max_output_tokens: int) -> int:
    """The hold for a request: every prompt token at the dearer input price, all output used."""
    dearest_input = max(
        price.input_micros_per_mtok, price.cached_input_micros_per_mtok, price.cache_write_micros
    )
    return cost_micros(
        Price(dearest_input, price.output_micros_per_mtok, 0, price.request_fee_micros),
        TokenUsage(prompt_tokens=prompt_tokens, completion_tokens=max_output_tokens),
    )


# The traffic a route's margin is shown for: 1,000 prompt and 500 completion tokens.
REFERENCE_MIX = TokenUsage(prompt_tokens=1000, completion_tokens=500)
# The traffic it is reviewed on before it opens: the reference mix, and the same mix with most
# of the prompt read from or written to a cache, so a route whose cache prices cost more than
# the model charges for them is caught although the plain mix makes money.
REVIEW_MIXES = (
    ("1,000 prompt + 500 completion tokens", REFERENCE_MIX),
    (
        "1,000 prompt tokens (900 read from cache) + 500 completion tokens",
        TokenUsage(prompt_tokens=1000, completion_tokens=500, cached_tokens=900),
    ),
    (
        "1,000 prompt tokens (900 written to cache) + 500 completion tokens",
        TokenUsage(prompt_tokens=1000, completion_tokens=500, cache_write_tokens=900),
    ),
)


@dataclass(frozen=True)
class Loss:
    """A review mix on which a route costs more than its model charges."""

    mix: str
    price_micros: int
    cost_micros: int


def losing_mix(price: Price, cost: Price) -> Loss | None:
    """The first review mix on which cost exceeds price, or None when the route pays on all."""
    for label, mix in REVIEW_MIXES:
        charged, paid = cost_micros(price, mix), cost_micros(cost, mix)
        if paid > charged:
            return Loss(label, charged, paid)
    return None


def margin_basis_points(price_micros: int, cost_micros_: int) -> int | None:
    """(price - cost) / price in basis points, rounded toward zero; None when the price is 0."""
    if price_micros == 0:
        return None
    return int((price_micros - cost_micros_) * 10_000 / price_micros)
