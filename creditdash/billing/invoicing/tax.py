"""Tax decisions: which scheme and rate apply to a sale, from the seller's registrations, the
buyer's country and status, and the rates table (rules as data with effective dates).

Rules, first match wins:
1. Buyer in the seller's country: the domestic standard rate.
2. Seller and buyer in different EU member states: a business buyer with a VAT ID whose format
   checks out -> reverse charge at 0% with the legal wording; anyone else is a consumer and pays
   the buyer country's rate when the seller is registered for the EU One-Stop-Shop ("EU_OSS"),
   else the seller country's rate.
3. United Kingdom, Australia, New Zealand, Canada, when the seller is registered there: a
   registered business (valid VAT number / ABN / IRD / BN) -> reverse charge at 0%; consumers
   pay UK VAT, AU or NZ GST, or in Canada HST in the HST provinces and GST elsewhere.
4. United States (checked first, so a US seller sells at home too): no tax by default.
5. Everything else is outside the seller's registrations: out of scope at 0% with wording.

Tax amounts round half-even to the minor unit, once per tax line.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import date

from sqlmodel import Session, col, or_, select

from creditdash.billing.invoicing.models import TaxRate
from creditdash.core.errors import ValidationFailed

EU_MEMBERS = frozenset(
    """AT BE BG CY CZ DE DK EE ES FI FR GR HR HU IE IT LT LU LV MT NL PL PT RO SE SI SK""".split()  # noqa: SIM905
)
CA_HST_PROVINCES = frozenset({"NB", "NL", "NS", "ON", "PE"})
CA_PROVINCES = frozenset(
    {"AB", "BC", "MB", "NB", "NL", "NS", "NT", "NU", "ON", "PE", "QC", "SK", "YT"}
)
OSS = "EU_OSS"

EU_REVERSE_CHARGE = (
    "Reverse charge: VAT to be accounted for by the recipient "
    "(Article 196, Council Directive 2006/112/EC)."
)
REVERSE_CHARGE_WORDING = {
    "GB": "Reverse charge: the customer accounts for UK VAT to HMRC.",
    "AU": "No GST charged: supply to an Australian GST-registered business (ABN provided).",
    "NZ": "No GST charged: supply to a GST-registered New Zealand business.",
    "CA": "No GST/HST charged: supply to a GST/HST registrant, who self-assesses.",
}
CONSUMER_TAX = {"GB": "VAT", "AU": "GST", "NZ": "GST", "CA": "GST"}


@dataclass(frozen=True)
class BuyerFacts:
    country: str
    region: str = ""
    is_business: bool = False
    tax_id: str = ""
    tax_id_valid: bool = False

    @property
    def registered_business(self) -> bool:
        # A business without a tax ID that checks out is treated as a consumer.
        return self.is_business and bool(self.tax_id) and self.tax_id_valid


@dataclass(frozen=True)
class SellerFacts:
    country: str
    registrations: frozenset[str]


@dataclass(frozen=True)
class TaxDecision:
    jurisdiction: str
    scheme: str  # standard | reverse_charge | exempt | out_of_scope
    tax_name: str
    rate_bp: int
    wording: str
    buyer_tax_id: str
    decided_on: str

    def amount_minor(self, taxable_minor: int) -> int:
        return tax_amount(taxable_minor, self.rate_bp)

    def snapshot(self, taxable_minor: int) -> dict[str, object]:
        return {
            **asdict(self),
            "taxable_minor": taxable_minor,
            "amount_minor": self.amount_minor(taxable_minor),
        }

    def snapshot_json(self, taxable_minor: int) -> str:
        return json.dumps(self.snapshot(taxable_minor), sort_keys=True)


def tax_amount(taxable_minor: int, rate_bp: int) -> int:
    """taxable * rate / 10000, rounded half-even to the minor unit, in integers only."""
    quotient, remainder = divmod(taxable_minor * rate_bp, 10_000)
    if remainder * 2 > 10_000 or (remainder * 2 == 10_000 and quotient % 2 == 1):
        quotient += 1
    return quotient


def rate_on(session: Session, jurisdiction: str, on: date) -> TaxRate:
    rate = session.exec(
        select(TaxRate)
        .where(
            col(TaxRate.jurisdiction) == jurisdiction,
            col(TaxRate.valid_from) <= on,
            or_(col(TaxRate.valid_to).is_(None), col(TaxRate.valid_to) >= on),
        )
        .order_by(col(TaxRate.valid_from).desc())
        .limit(1)
    ).first()
    if rate is None:
        raise ValidationFailed(f"no tax rate for {jurisdiction} effective on {on.isoformat()}")
    return rate


def decide(session: Session, *, seller: SellerFacts, buyer: BuyerFacts, on: date) -> TaxDecision:
    """The tax treatment of a sale from seller to buyer on a date."""
    day = on.isoformat()

    def charged(jurisdiction: str) -> TaxDecision:
        rate = rate_on(session, jurisdiction, on)
        return TaxDecision(
            jurisdiction, "standard", rate.tax_name, rate.rate_bp, "", buyer.tax_id, day
        )

    def zero(jurisdiction: str, scheme: str, name: str, wording: str) -> TaxDecision:
        return TaxDecision(jurisdiction, scheme, name, 0, wording, buyer.tax_id, day)

    country = buyer.country
    if country == "US":
        return zero(country, "out_of_scope", "Sales tax", "No US sales tax collected.")
    if country == seller.country:
        if country == "CA":
            return charged(_canada_jurisdiction(buyer.region))
        return charged(country)
    if seller.country in EU_MEMBERS and country in EU_MEMBERS:
        if buyer.registered_business:
            return zero(country, "reverse_charge", "VAT", EU_REVERSE_CHARGE)
        return charged(country if OSS in seller.registrations else seller.country)
    if country in CONSUMER_TAX and country in seller.registrations:
        if buyer.registered_business:
            return zero(
                country, "reverse_charge", CONSUMER_TAX[country], REVERSE_CHARGE_WORDING[country]
            )
        return charged(_canada_jurisdiction(buyer.region) if country == "CA" else country)
    return zero(
        country,
        "out_of_scope",
        "VAT",
        f"Outside the scope of VAT/GST in the seller's registrations (place of supply: {country}).",
    )


def _canada_jurisdiction(region: str) -> str:
    if region not in CA_PROVINCES:
        raise ValidationFailed("a Canadian billing profile needs its province (e.g. ON)")
    return f"CA-{region}" if region in CA_HST_PROVINCES else "CA"
