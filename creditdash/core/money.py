"""Credits as integer micros, and their decimal text form.

Amounts are parsed from text by one strict parser (parse_amount) and printed exactly; all
arithmetic on money is integer arithmetic.
"""

from __future__ import annotations

import re

from creditdash.core.errors import ValidationFailed

MICROS_PER_CREDIT = 1_000_000
# Far above any real balance, far below BIGINT's 9.2e18: keeps sums of many amounts in range.
MAX_MICROS = 10**15


# The one spelling of an amount typed by a person or written in a file: ASCII digits, at most
# one dot with digits on both sides, and a leading minus only where the caller allows it. No
# spaces, "+", exponents, underscores, thousands separators, NaN/Infinity or non-ASCII digits.
_AMOUNT = re.compile(r"\A(-?)([0-9]+)(?:\.([0-9]+))?\Z", re.ASCII)
PLAIN_AMOUNT_HINT = "written with plain digits like 5 or 5.25"


def parse_amount(
    text: str, places: int, *, field: str, signed: bool = False, what: str = "a decimal number"
) -> int:
    """Parse a decimal amount into integer units of 10**-places, exactly.

    Refuses anything but plain digits (see _AMOUNT), a minus sign unless signed, and more
    significant decimal places than `places`. Every money input goes through here."""
    if not isinstance(text, str):
        raise ValidationFailed(f"{field} must be {what} {PLAIN_AMOUNT_HINT}")
    match = _AMOUNT.match(text)
    if match is None:
        raise ValidationFailed(f"{field} must be {what} {PLAIN_AMOUNT_HINT}")
    sign, whole, fraction = match.group(1), match.group(2), (match.group(3) or "")
    if sign and not signed:
        raise ValidationFailed(f"{field} cannot be negative")
    fraction = fraction.rstrip("0")
    if len(fraction) > places:
        raise _TooPrecise(field)
    whole = whole.lstrip("0") or "0"
    if len(whole) > 30:  # far past any limit; keeps int() away from huge digit strings
        raise ValidationFailed(f"{field} is too large")
    units = int(whole) * 10**places + int(fraction.ljust(places, "0") or "0")
    return -units if sign else units


class _TooPrecise(ValidationFailed):
    def __init__(self, field: str) -> None:
        super().__init__(f"{field} has too many decimal places")
        self.field = field


def parse_credits(text: str, *, field: str = "amount", signed: bool = False) -> int:
    """Parse a decimal amount of credits into micros, refusing anything that would need rounding."""
    try:
        result = parse_amount(
            text, 6, field=field, signed=signed, what="a decimal number of credits"
        )
    except _TooPrecise:
        raise ValidationFailed(f"{field} has more than 6 decimal places (1 micro-credit)") from None
    if abs(result) > MAX_MICROS:
        raise ValidationFailed(f"{field} is too large")
    return result


def format_credits(micros: int) -> str:
    """Micros as an exact decimal string with six places, e.g. 1500000 -> '1.500000'."""
    sign = "-" if micros < 0 else ""
    whole, frac = divmod(abs(micros), MICROS_PER_CREDIT)
    return f"{sign}{whole}.{frac:06d}"


# ISO 4217 minor-unit exponents for the currencies we sell in. Payment amounts are integers
# in the minor unit (cents for EUR); a currency not listed here cannot be priced.
CURRENCY_EXPONENTS = {
    "EUR": 2,
    "USD": 2,
    "GBP": 2,
    "CHF": 2,
    "SEK": 2,
    "NOK": 2,
    "DKK": 2,
    "PLN": 2,
    "CZK": 2,
    "CAD": 2,
    "AUD": 2,
    "NZD": 2,
    "SGD": 2,
    "INR": 2,
    "JPY": 0,
}
MAX_MINOR = 10**13


def check_currency(code: str) -> str:
    code = (code or "").strip().upper()
    if code not in CURRENCY_EXPONENTS:
        supported = ", ".join(sorted(CURRENCY_EXPONENTS))
        raise ValidationFailed(f"currency {code or '(empty)'} is not supported ({supported})")
    return code


def parse_minor(text: str, currency: str, *, field: str = "amount", signed: bool = False) -> int:
    """Major units ("11.90") as minor units (1190), refusing digits below the minor unit."""
    exponent = CURRENCY_EXPONENTS[check_currency(currency)]
    try:
        result = parse_amount(text, exponent, field=field, signed=signed, what="a decimal amount")
    except _TooPrecise:
        raise ValidationFailed(
            f"{field} has more than {exponent} decimal places for {currency}"
        ) from None
    if abs(result) > MAX_MINOR:
        raise ValidationFailed(f"{field} is too large")
    return result


def format_minor(minor: int, currency: str) -> str:
    """Minor units as an exact decimal string in major units: (1190, "EUR") -> "11.90"."""
    exponent = CURRENCY_EXPONENTS[check_currency(currency)]
    if exponent == 0:
        return str(minor)
    sign = "-" if minor < 0 else ""
    whole, frac = divmod(abs(minor), 10**exponent)
    return f"{sign}{whole}.{frac:0{exponent}d}"
