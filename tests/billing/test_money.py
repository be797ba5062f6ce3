from decimal import Decimal

import pytest

from creditdash.billing.money import format_credits, parse_credits
from creditdash.errors import ValidationFailed


@pytest.mark.parametrize(
    ("text", "micros"),
    [
        ("1", 1_000_000),
        ("0.000001", 1),
        ("12.345678", 12_345_678),
        (" 2.5 ", 2_500_000),
        ("-3", -3_000_000),
        ("0", 0),
    ],
)
def test_parse_exact_amounts(text: str, micros: int) -> None:
    assert parse_credits(text) == micros


@pytest.mark.parametrize("text", ["0.0000001", "abc", "", "NaN", "Infinity", "1e30", "1,5"])
def test_parse_refuses_what_it_cannot_represent(text: str) -> None:
    with pytest.raises(ValidationFailed):
        parse_credits(text)


def test_parse_refuses_bool() -> None:
    with pytest.raises(ValidationFailed):
        parse_credits(True)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("micros", "text"),
    [
        (0, "0.000000"),
        (1, "0.000001"),
        (1_500_000, "1.500000"),
        (-1, "-0.000001"),
        (-2_000_001, "-2.000001"),
    ],
)
def test_format_is_exact(micros: int, text: str) -> None:
    assert format_credits(micros) == text
    assert parse_credits(text) == micros
    assert Decimal(text) * 1_000_000 == micros
