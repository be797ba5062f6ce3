from decimal import Decimal

import pytest

from creditdash.core.errors import ValidationFailed
from creditdash.core.money import format_credits, parse_credits, parse_minor

# Spellings Decimal() (or YAML, or int()) would take but a money input must not.
EXOTIC = [
    "1E-2",
    "1e3",
    " 5",
    "5 ",
    "5\n",
    "\t5",
    "\u0661",  # Arabic-Indic one
    "\uff15",  # full-width five
    "1_0",
    "+5",
    ".5",
    "5.",
    "0x10",
    "NaN",
    "-NaN",
    "Infinity",
    "inf",
    "",
    "1,5",
    "1.2.3",
    "--5",
    "- 5",
]
VALID = [("5", 5_000_000), ("5.25", 5_250_000), ("0.000001", 1), ("007", 7_000_000)]


@pytest.mark.parametrize(
    ("text", "micros"),
    [
        ("1", 1_000_000),
        ("0.000001", 1),
        ("12.345678", 12_345_678),
        ("0", 0),
        ("1.500000000", 1_500_000),
    ],
)
def test_parse_exact_amounts(text: str, micros: int) -> None:
    assert parse_credits(text) == micros


@pytest.mark.parametrize("text", ["0.0000001", "abc", "", "NaN", "Infinity", "1e30", "1,5"])
def test_parse_refuses_what_it_cannot_represent(text: str) -> None:
    with pytest.raises(ValidationFailed):
        parse_credits(text)


@pytest.mark.parametrize("text", EXOTIC)
def test_parse_takes_plain_ascii_digits_only(text: str) -> None:
    with pytest.raises(ValidationFailed, match="--credits must be a decimal number"):
        parse_credits(text, field="--credits")
    with pytest.raises(ValidationFailed, match="--amount must be a decimal amount"):
        parse_minor(text, "EUR", field="--amount")


@pytest.mark.parametrize(("text", "micros"), VALID)
def test_parse_plain_amounts(text: str, micros: int) -> None:
    assert parse_credits(text) == micros


def test_minus_only_where_the_caller_allows_it() -> None:
    with pytest.raises(ValidationFailed, match="refund cannot be negative"):
        parse_minor("-5", "EUR", field="refund")
    with pytest.raises(ValidationFailed, match="grant cannot be negative"):
        parse_credits("-5", field="grant")
    assert parse_credits("-3", signed=True) == -3_000_000
    assert parse_minor("-11.90", "EUR", signed=True) == -1190
    assert parse_minor("11.90", "EUR") == 1190
    assert parse_minor("1190", "JPY") == 1190
    with pytest.raises(ValidationFailed, match="more than 0 decimal places for JPY"):
        parse_minor("5.5", "JPY")
    with pytest.raises(ValidationFailed, match="too large"):
        parse_credits("9" * 5000)


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
    assert parse_credits(text, signed=True) == micros
    assert Decimal(text) * 1_000_000 == micros
