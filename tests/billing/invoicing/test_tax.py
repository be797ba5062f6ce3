"""Each tax rule, decided from the seeded rates; amounts exact in minor units."""

from __future__ import annotations

from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from creditdash.billing.invoicing.tax import (
    EU_REVERSE_CHARGE,
    BuyerFacts,
    SellerFacts,
    decide,
    tax_amount,
)
from creditdash.core import db
from creditdash.core.errors import ValidationFailed

GERMAN = SellerFacts(country="DE", registrations=frozenset({"DE", "EU_OSS"}))
GERMAN_NO_OSS = SellerFacts(country="DE", registrations=frozenset({"DE"}))
GLOBAL = SellerFacts(
    country="DE", registrations=frozenset({"DE", "EU_OSS", "GB", "AU", "NZ", "CA"})
)
DAY = date(2026, 11, 28)


def _decide(seller: SellerFacts, buyer: BuyerFacts, on: date = DAY) -> tuple[str, str, int]:
    with db.session_scope(readonly=True) as session:
        decision = decide(session, seller=seller, buyer=buyer, on=on)
    return decision.jurisdiction, decision.scheme, decision.rate_bp


@pytest.mark.parametrize(
    ("seller", "buyer", "expected"),
    [
        pytest.param(GERMAN, BuyerFacts("DE"), ("DE", "standard", 1900), id="domestic-consumer"),
        pytest.param(
            GERMAN,
            BuyerFacts("DE", is_business=True, tax_id="DE136695976", tax_id_valid=True),
            ("DE", "standard", 1900),
            id="domestic-business",
        ),
        pytest.param(
            GERMAN,
            BuyerFacts("FR", is_business=True, tax_id="FR40303265045", tax_id_valid=True),
            ("FR", "reverse_charge", 0),
            id="eu-b2b-reverse-charge",
        ),
        pytest.param(GERMAN, BuyerFacts("FR"), ("FR", "standard", 2000), id="eu-consumer-oss"),
        pytest.param(
            GERMAN,
            BuyerFacts("FR", is_business=True, tax_id="FR00000000000", tax_id_valid=False),
            ("FR", "standard", 2000),
            id="eu-invalid-vat-id-is-a-consumer",
        ),
        pytest.param(
            GERMAN,
            BuyerFacts("FR", is_business=True),
            ("FR", "standard", 2000),
            id="eu-business-without-vat-id",
        ),
        pytest.param(
            GERMAN_NO_OSS, BuyerFacts("FR"), ("DE", "standard", 1900), id="eu-consumer-no-oss"
        ),
        pytest.param(GLOBAL, BuyerFacts("GB"), ("GB", "standard", 2000), id="uk-consumer"),
        pytest.param(
            GLOBAL,
            BuyerFacts("GB", is_business=True, tax_id="GB980780684", tax_id_valid=True),
            ("GB", "reverse_charge", 0),
            id="uk-business",
        ),
        pytest.param(GERMAN, BuyerFacts("GB"), ("GB", "out_of_scope", 0), id="uk-unregistered"),
        pytest.param(GLOBAL, BuyerFacts("AU"), ("AU", "standard", 1000), id="au-gst"),
        pytest.param(
            GLOBAL,
            BuyerFacts("AU", is_business=True, tax_id="51824753556", tax_id_valid=True),
            ("AU", "reverse_charge", 0),
            id="au-business",
        ),
        pytest.param(GLOBAL, BuyerFacts("NZ"), ("NZ", "standard", 1500), id="nz-gst"),
        pytest.param(GLOBAL, BuyerFacts("CA", "ON"), ("CA-ON", "standard", 1300), id="ca-on-hst"),
        pytest.param(GLOBAL, BuyerFacts("CA", "NS"), ("CA-NS", "standard", 1400), id="ca-ns-hst"),
        pytest.param(GLOBAL, BuyerFacts("CA", "AB"), ("CA", "standard", 500), id="ca-ab-gst"),
        pytest.param(GLOBAL, BuyerFacts("US"), ("US", "out_of_scope", 0), id="us-no-tax"),
        pytest.param(GLOBAL, BuyerFacts("JP"), ("JP", "out_of_scope", 0), id="outside"),
    ],
)
def test_tax_rules(
    sqlite_engine: Engine, seller: SellerFacts, buyer: BuyerFacts, expected: tuple[str, str, int]
) -> None:
    assert _decide(seller, buyer) == expected


def test_reverse_charge_and_out_of_scope_carry_their_wording(sqlite_engine: Engine) -> None:
    buyer = BuyerFacts("AT", is_business=True, tax_id="ATU13585627", tax_id_valid=True)
    with db.session_scope(readonly=True) as session:
        reverse = decide(session, seller=GERMAN, buyer=buyer, on=DAY)
        outside = decide(session, seller=GERMAN, buyer=BuyerFacts("BR"), on=DAY)
    assert reverse.wording == EU_REVERSE_CHARGE and reverse.buyer_tax_id == "ATU13585627"
    assert "Article 196" in reverse.wording
    assert "place of supply: BR" in outside.wording


def test_rates_follow_their_effective_dates(sqlite_engine: Engine) -> None:
    seller = SellerFacts(country="EE", registrations=frozenset({"EE"}))
    assert _decide(seller, BuyerFacts("EE"), date(2025, 6, 30))[2] == 2200
    assert _decide(seller, BuyerFacts("EE"), date(2025, 7, 1))[2] == 2400
    assert _decide(GLOBAL, BuyerFacts("CA", "NS"), date(2025, 3, 31))[2] == 1500


def test_canada_needs_a_province(sqlite_engine: Engine) -> None:
    with pytest.raises(ValidationFailed, match="province"):
        _decide(GLOBAL, BuyerFacts("CA"))


def test_a_missing_rate_is_a_clear_error(sqlite_engine: Engine) -> None:
    with pytest.raises(ValidationFailed, match="no tax rate for DE effective on 2019-01-01"):
        _decide(GERMAN, BuyerFacts("DE"), date(2019, 1, 1))


@given(
    taxable=st.integers(min_value=0, max_value=10**12),
    rate_bp=st.integers(min_value=0, max_value=10_000),
)
def test_tax_amount_is_half_even_and_exact(taxable: int, rate_bp: int) -> None:
    exact = Decimal(taxable) * Decimal(rate_bp) / Decimal(10_000)
    assert tax_amount(taxable, rate_bp) == int(exact.quantize(Decimal(1), ROUND_HALF_EVEN))


def test_tax_amount_ties_go_to_even() -> None:
    assert tax_amount(50, 1000) == 5
    assert tax_amount(25, 1000) == 2  # 2.5 -> 2
    assert tax_amount(35, 1000) == 4  # 3.5 -> 4
