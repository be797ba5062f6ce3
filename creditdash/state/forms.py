"""Reading admin and portal form fields: one place for the checks every form repeats.

Form values arrive as strings (or booleans from checkboxes); these turn them into typed values
or raise ValidationFailed with the field's name, so handlers only translate the refusal.
"""

from __future__ import annotations

from collections.abc import Mapping

from creditdash.billing.money import parse_credits
from creditdash.billing.pricing import Price
from creditdash.errors import ValidationFailed


def text(form: Mapping[str, object], name: str, default: str = "") -> str:
    return str(form.get(name) or default)


def checked(form: Mapping[str, object], name: str) -> bool:
    return form.get(name) in ("on", "true", True)


def whole(form: Mapping[str, object], name: str, default: str = "0", digits: int = 6) -> int:
    """A non-negative whole number of at most `digits` digits (ASCII only: "²" is no digit)."""
    value = text(form, name, default).strip()
    if not (value.isascii() and value.isdigit() and len(value) <= digits):
        raise ValidationFailed(f"{name.replace('_', ' ')} must be a whole number")
    return int(value)


def price(form: Mapping[str, object], what: str = "price") -> Price:
    """Credits per 1M tokens from the input, output, cached and fee fields."""
    return Price(
        parse_credits(text(form, "input", "0"), field=f"input {what}"),
        parse_credits(text(form, "output", "0"), field=f"output {what}"),
        parse_credits(text(form, "cached", "0"), field=f"cached input {what}"),
        parse_credits(text(form, "fee", "0"), field=f"per-request {what}"),
    )


def optional_whole(form: Mapping[str, object], name: str, digits: int = 9) -> int | None:
    """Like whole(), but a blank field means "not set"."""
    return whole(form, name, digits=digits) if text(form, name).strip() else None
