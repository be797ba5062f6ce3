"""The dashboard's credit figures: rounded for reading, never shown as zero when they are not."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest

from creditdash.core.numbers import (
    CreditRate,
    credits_text,
    credits_with_money,
    minor_text,
    money_hint,
    package_credits_text,
)


@pytest.mark.parametrize(
    ("micros", "shown"),
    [
        (0, "0.00"),
        (1_000_000, "1.00"),
        (1_234_500_000, "1,234.50"),
        (1_234_567_890_000, "1,234,567.89"),
        (12_345_000, "12.35"),  # half away from zero
        (12_344_999, "12.34"),
        (10_000, "0.01"),
        (-12_345_000, "-12.35"),
        (-1_234_500_000, "-1,234.50"),
        (999_999_999_999, "1,000,000.00"),
    ],
)
def test_two_decimals_with_thousands_separators(micros: int, shown: str) -> None:
    assert credits_text(micros) == shown


@pytest.mark.parametrize(
    ("micros", "shown"),
    [
        (1_234, "0.0012"),
        (1_000, "0.001"),
        (5_000, "0.005"),
        (7_250, "0.0073"),
        (100, "0.0001"),
        (15, "0.000015"),
        (1, "0.000001"),
        (-1_234, "-0.0012"),
        (9_999, "0.01"),  # rounds up to the two-decimal form, not "0.0100"
    ],
)
def test_small_amounts_keep_enough_digits_to_be_seen(micros: int, shown: str) -> None:
    assert credits_text(micros) == shown


def test_below_one_micro_is_not_zero() -> None:
    assert credits_text(Fraction(1, 3)) == "< 0.000001"
    assert credits_text(-Fraction(1, 3)) == "> -0.000001"
    assert credits_text(Fraction(3, 2)) == "0.000002"


def test_currency_equivalent_at_the_package_rate() -> None:
    rate = CreditRate(price_minor=1000, credits_micros=10_000_000, currency="EUR")
    assert credits_with_money(12_500_000, rate) == "12.50 credits (≈ €12.50)"
    assert money_hint(1_234_500_000, rate) == "≈ €1,234.50"
    assert money_hint(-3_335_000, rate) == "≈ -€3.34"
    assert rate.money(5) == Decimal("0.00")
    # No package on sale: no guess at a price.
    assert credits_with_money(12_500_000, None) == "12.50 credits"
    assert money_hint(1, None) == ""


def test_money_in_the_currency_own_minor_units() -> None:
    assert minor_text(1000, "EUR") == "€10.00"
    assert minor_text(123_456, "USD") == "$1,234.56"
    assert minor_text(1500, "JPY") == "¥1,500"


def test_package_credits_drop_decimals_only_when_whole() -> None:
    assert package_credits_text(1_000_000_000) == "1,000"
    assert package_credits_text(0) == "0"
    assert package_credits_text(37_500_000) == "37.50"
