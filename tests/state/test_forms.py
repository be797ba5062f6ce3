"""Form field parsing shared by the admin and portal handlers."""

from __future__ import annotations

import pytest

from creditdash.catalog.prices import Price
from creditdash.core.errors import ValidationFailed
from creditdash.state import forms


def test_whole_numbers() -> None:
    assert forms.whole({"n": " 42 "}, "n") == 42
    assert forms.whole({}, "n", "7") == 7
    assert forms.optional_whole({"n": "  "}, "n") is None
    for bad in ("-1", "1.5", "²", "1234567", "x"):
        with pytest.raises(ValidationFailed, match="n must be a whole number"):
            forms.whole({"n": bad}, "n")


def test_checkboxes_and_prices() -> None:
    assert forms.checked({"a": "on"}, "a") and not forms.checked({}, "a")
    form = {"input": "0.6", "output": "2.4", "cached": "", "fee": "0.000001"}
    assert forms.price(form) == Price(600_000, 2_400_000, 0, 1)
    with pytest.raises(ValidationFailed, match="output cost"):
        forms.price({"output": "0.0000001"}, "cost")
    # A blank cache-write field: writes cost input; a value is its own price.
    assert forms.price({**form, "cache_write": " "}).cache_write_micros_per_mtok is None
    assert forms.price({**form, "cache_write": "0.75"}).cache_write_micros_per_mtok == 750_000
    with pytest.raises(ValidationFailed, match="cache-write price"):
        forms.price({**form, "cache_write": "-1"})


def test_money_fields_take_plain_ascii_digits_only() -> None:
    from tests.core.test_money import EXOTIC

    for bad in [b for b in EXOTIC if b.strip()]:  # a blank field reads as its default
        with pytest.raises(ValidationFailed, match="amount must be a decimal number"):
            forms.credits({"amount": bad}, "amount", field="amount")
        with pytest.raises(ValidationFailed, match="price must be a decimal amount"):
            forms.money({"unit_price": bad}, "unit_price", "EUR", field="price")
        with pytest.raises(ValidationFailed, match="Monthly cap must be a decimal number"):
            forms.optional_credits({"cap": bad}, "cap", field="Monthly cap")
        with pytest.raises(ValidationFailed, match="input price must be a decimal number"):
            forms.price({"input": bad})
    assert forms.credits({"amount": "5.25"}, "amount", field="amount") == 5_250_000
    assert forms.credits({}, "limit", field="credit limit", default="0") == 0
    assert forms.optional_credits({"cap": " "}, "cap", field="Monthly cap") is None
    assert forms.money({"unit_price": "11.90"}, "unit_price", "EUR", field="price") == 1190
    with pytest.raises(ValidationFailed, match="amount must be a decimal amount"):
        forms.money({}, "amount", "EUR", field="amount")
