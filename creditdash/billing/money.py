"""Credits as integer micros, and their decimal text form.

Decimal is used only to parse and print; arithmetic on money is integer arithmetic.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from creditdash.errors import ValidationFailed

MICROS_PER_CREDIT = 1_000_000
# Far above any real balance, far below BIGINT's 9.2e18: keeps sums of many amounts in range.
MAX_MICROS = 10**15


def parse_credits(text: str | Decimal | int, *, field: str = "amount") -> int:
    """Parse a decimal amount of credits into micros, refusing anything that would need rounding."""
    if isinstance(text, bool):
        raise ValidationFailed(f"{field} must be a decimal number of credits")
    try:
        value = text if isinstance(text, Decimal) else Decimal(str(text).strip())
    except (InvalidOperation, ValueError):
        raise ValidationFailed(f"{field} must be a decimal number of credits") from None
    if not value.is_finite():
        raise ValidationFailed(f"{field} must be a finite number")
    micros = value * MICROS_PER_CREDIT
    if micros != micros.to_integral_value():
        raise ValidationFailed(f"{field} has more than 6 decimal places (1 micro-credit)")
    result = int(micros)
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


def parse_minor(text: str | Decimal | int, currency: str, *, field: str = "amount") -> int:
    """Major units ("11.90") as minor units (1190), refusing digits below the minor unit."""
    exponent = CURRENCY_EXPONENTS[check_currency(currency)]
    if isinstance(text, bool):
        raise ValidationFailed(f"{field} must be a decimal amount")
    try:
        value = text if isinstance(text, Decimal) else Decimal(str(text).strip())
    except (InvalidOperation, ValueError):
        raise ValidationFailed(f"{field} must be a decimal amount") from None
    if not value.is_finite():
        raise ValidationFailed(f"{field} must be a finite number")
    minor = value.scaleb(exponent)
    if minor != minor.to_integral_value():
        raise ValidationFailed(f"{field} has more than {exponent} decimal places for {currency}")
    result = int(minor)
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
