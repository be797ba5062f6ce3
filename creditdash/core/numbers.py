"""Credit figures as people read them on the dashboard: rounded, grouped, with a money hint.

money.format_credits stays the exact, machine-readable form (six places, no grouping) for
forms, CSV statements, the API and invoices. This module is for display only: two decimals
with thousands separators ("1,234.50"), more decimals only when a small non-zero amount would
otherwise read as zero, and an approximate amount of money at the current package rate.
Rounding is half away from zero, done on integers; babel only lays the digits out.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from babel.numbers import format_currency, format_decimal

from creditdash.core.money import CURRENCY_EXPONENTS, MICROS_PER_CREDIT

# One locale for every figure on the dashboard (separators, currency symbols).
DISPLAY_LOCALE = "en_US"
# An amount of at least this many micros (0.01 credit) shows with two decimals.
_CENT_MICROS = MICROS_PER_CREDIT // 100
# Significant digits kept for an amount below 0.01 credit (at most six decimals: one micro).
_SMALL_DIGITS = 2
BELOW_ONE_MICRO = "< 0.000001"


def _grouped(units: int, places: int) -> str:
    """units * 10**-places with thousands separators and exactly `places` decimals."""
    pattern = "#,##0" + ("." + "0" * places if places else "")
    return format_decimal(Decimal(units).scaleb(-places), format=pattern, locale=DISPLAY_LOCALE)


def _round(value: Fraction, step: int) -> int:
    """value / step rounded half away from zero, for a non-negative value."""
    return int((value / step) + Fraction(1, 2))


def credits_text(micros: int | Fraction) -> str:
    """Credits for display: 1_234_500_000 -> "1,234.50", 1_234 -> "0.0012", 0 -> "0.00".

    `micros` may be a fraction of a micro (a per-token price); a non-zero amount below one micro
    reads "< 0.000001" rather than zero."""
    value = Fraction(micros)
    if value == 0:
        return "0.00"
    sign = "-" if value < 0 else ""
    size = abs(value)
    if size < 1:
        return ("> -" + BELOW_ONE_MICRO[2:]) if sign else BELOW_ONE_MICRO
    if size >= _CENT_MICROS:
        return sign + _grouped(_round(size, _CENT_MICROS), 2)
    # Below 0.01: enough decimals for _SMALL_DIGITS significant digits, at most six.
    digits = len(str(int(size)))  # 1..4 digits of micros
    places = min(6, 6 - digits + _SMALL_DIGITS)
    step = 10 ** (6 - places)
    units = _round(size, step)
    if units * step >= _CENT_MICROS:  # rounded up to 0.01
        return sign + "0.01"
    # Trailing zeros say nothing here (0.0010 -> 0.001); at least three decimals remain.
    return sign + _grouped(units, places).rstrip("0")


def package_credits_text(micros: int) -> str:
    """Credits as packages and orders name them: whole credits without decimals ("1,000"),
    anything else as credits_text does ("12.50")."""
    if micros % MICROS_PER_CREDIT == 0:
        return _grouped(micros // MICROS_PER_CREDIT, 0)
    return credits_text(micros)


@dataclass(frozen=True)
class CreditRate:
    """What one purchased credit costs: price_minor for credits_micros, in currency."""

    price_minor: int
    credits_micros: int
    currency: str

    def money(self, micros: int) -> Decimal:
        """The amount of money (major units, exact to the minor unit, half up) worth `micros`."""
        exponent = CURRENCY_EXPONENTS[self.currency]
        minor = _round(abs(Fraction(micros * self.price_minor, self.credits_micros)), 1)
        return Decimal(-minor if micros < 0 else minor).scaleb(-exponent)


def money_text(amount: Decimal, currency: str) -> str:
    """An amount of money in major units for display: (Decimal("12.5"), "EUR") -> "€12.50"."""
    return str(format_currency(amount, currency, locale=DISPLAY_LOCALE))


def minor_text(minor: int, currency: str) -> str:
    """Minor units for display: (1000, "EUR") -> "€10.00"."""
    return money_text(Decimal(minor).scaleb(-CURRENCY_EXPONENTS[currency]), currency)


def money_hint(micros: int, rate: CreditRate | None) -> str:
    """ "≈ €12.50" for the credits at the rate; "" without a rate (no package on sale)."""
    if rate is None:
        return ""
    return "≈ " + money_text(rate.money(micros), rate.currency)


def credits_with_money(micros: int, rate: CreditRate | None) -> str:
    """ "12.50 credits (≈ €12.50)"; just "12.50 credits" without a rate."""
    hint = money_hint(micros, rate)
    return f"{credits_text(micros)} credits" + (f" ({hint})" if hint else "")
