"""What a 402 tells the client it can act on: the credits available, the worst case that was
to be held, and the largest max_tokens whose worst case would have fitted.

Computed only after the hold was refused (settlement.reserve), from one read of the balance:
the refusal itself stays the hold's one conditional statement.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from creditdash.catalog.prices import Price, worst_case_micros
from creditdash.core.money import format_credits
from creditdash.proxy import errors


@dataclass(frozen=True, slots=True)
class HoldTerms:
    """How a request's worst case was worked out: price, prompt tokens held for, the output
    multiplier (n, best_of, prompts) and the per-choice output cap."""

    price: Price
    prompt_tokens: int
    multiplier: int
    per_choice_cap: int

    def worst_case(self, per_choice: int) -> int:
        return worst_case_micros(
            self.price,
            prompt_tokens=self.prompt_tokens,
            max_output_tokens=per_choice * self.multiplier,
        )


def max_tokens_that_fit(terms: HoldTerms, spendable_micros: int) -> int | None:
    """The largest per-choice max_tokens below the one held whose worst case fits in
    spendable_micros; None when not even 1 fits (or there is no output cap to lower)."""
    low, high = 1, terms.per_choice_cap - 1
    if high < low or terms.worst_case(low) > spendable_micros:
        return None
    # The worst case grows with the cap: the largest cap that fits, by halving.
    while low < high:
        middle = (low + high + 1) // 2
        if terms.worst_case(middle) <= spendable_micros:
            low = middle
        else:
            high = middle - 1
    return low


def insufficient_credits(
    *, available_micros: int, spendable_micros: int, required_micros: int, terms: HoldTerms | None
) -> errors.GatewayError:
    """The 402: OpenAI's error shape, with available, required (credits strings, as
    /v1/credits writes them) and max_tokens_that_fit (when a smaller cap would fit) inside it.
    available is the balance less what is held; spendable adds the credit limit."""
    available = format_credits(available_micros)
    required = format_credits(required_micros)
    details: dict[str, Any] = {"available": available, "required": required}
    message = (
        f"Insufficient credits: this request's worst case is {required} credits and "
        f"{available} are available."
    )
    fit = max_tokens_that_fit(terms, spendable_micros) if terms is not None else None
    if fit is not None:
        details["max_tokens_that_fit"] = fit
        message += f" A max_tokens of {fit} or less would fit."
    return errors.insufficient_credits(message + " Top up your balance.", details)


def budget_exceeded(message: str) -> errors.GatewayError:
    """The 402 of a hold a hard monthly budget refused: the same error shape as the
    insufficient-credits 402, with its own code."""
    return errors.GatewayError(402, message, "insufficient_credits", "budget_exceeded")
