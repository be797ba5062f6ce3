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
