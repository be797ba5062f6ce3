"""Reading admin and portal form fields: one place for the checks every form repeats.

Form values arrive as strings (or booleans from checkboxes); these turn them into typed values
or raise ValidationFailed with the field's name, so handlers only translate the refusal.
"""

from __future__ import annotations

from collections.abc import Mapping

from creditdash.catalog.prices import Price
from creditdash.core.errors import ValidationFailed
from creditdash.core.money import parse_credits, parse_minor


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


def credits(form: Mapping[str, object], name: str, *, field: str, default: str = "") -> int:
    """An amount of credits in micros: plain digits only (money.parse_credits); a blank field
    reads as `default`."""
    return parse_credits(text(form, name, default), field=field)


def optional_credits(form: Mapping[str, object], name: str, *, field: str) -> int | None:
    """Like credits(), but a blank (or all-space) field means "not set"."""
    return credits(form, name, field=field) if text(form, name).strip() else None


def money(form: Mapping[str, object], name: str, currency: str, *, field: str) -> int:
    """An amount of money in the currency's minor units: plain digits only (money.parse_minor)."""
    return parse_minor(text(form, name), currency, field=field)


def price(form: Mapping[str, object], what: str = "price") -> Price:
    """Credits per 1M tokens from the input, output, cached, cache-write and fee fields (a
    blank cache-write field: prompt-cache writes cost input)."""
    return Price(
        credits(form, "input", field=f"input {what}", default="0"),
        credits(form, "output", field=f"output {what}", default="0"),
        credits(form, "cached", field=f"cached input {what}", default="0"),
        credits(form, "fee", field=f"per-request {what}", default="0"),
        optional_credits(form, "cache_write", field=f"cache-write {what}"),
    )


def optional_whole(form: Mapping[str, object], name: str, digits: int = 9) -> int | None:
    """Like whole(), but a blank field means "not set"."""
    return whole(form, name, digits=digits) if text(form, name).strip() else None


def error_field(message: str, labels: Mapping[str, str | tuple[str, ...]]) -> str:
    """The form field a refusal is about, so the page can show it beside that field: the name
    whose label the message starts with (service messages start with the field's own words,
    e.g. "password must be at least 10 characters"); "" when it is about no one field."""
    lowered = message.lower()
    for name, label in labels.items():
        words = (label,) if isinstance(label, str) else label
        if any(lowered.startswith(w.lower()) for w in words):
            return name
    return ""
