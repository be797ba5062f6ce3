"""Billing profiles (the buyer) and the seller profile, with tax ID format checks.

Tax IDs are checked for format and check digits with python-stdnum, never online. A bad tax ID
is refused with a clear error; a business without a checkable tax ID is taxed as a consumer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from email_validator import EmailNotValidError, validate_email
from sqlmodel import Session
from stdnum import get_cc_module
from stdnum.exceptions import ValidationError as StdnumError

from creditdash.accounts import roles
from creditdash.accounts.customers import get_customer
from creditdash.billing.invoicing.countries import COUNTRY_CODES, COUNTRY_RULE, country_name
from creditdash.billing.invoicing.models import BillingProfile, SellerProfile
from creditdash.billing.invoicing.tax import EU_MEMBERS, BuyerFacts, SellerFacts, rate_on
from creditdash.core.audit import Actor, record
from creditdash.core.errors import NotFound, ValidationFailed
from creditdash.core.timeutil import utcnow

# Kept under this name for callers; the table with names lives in countries.py.
ISO_COUNTRIES = COUNTRY_CODES
# EU VAT numbers carry their member state's prefix; Greece's is EL, not GR.
_VAT_PREFIX = {code: ("EL" if code == "GR" else code) for code in EU_MEMBERS}
_TAX_ID_NAMES = {"AU": "ABN", "NZ": "IRD number", "CA": "business number", "GB": "VAT number"}


@dataclass(frozen=True)
class ProfileInput:
    legal_name: str
    country: str
    is_business: bool = False
    tax_id: str = ""
    address_line1: str = ""
    address_line2: str = ""
    city: str = ""
    postal_code: str = ""
    region: str = ""
    billing_email: str = ""


@dataclass(frozen=True)
class CheckedTaxId:
    given: str
    compact: str
    valid: bool


def check_country(code: str) -> str:
    """An assigned ISO 3166-1 alpha-2 code, in capitals, as given (surrounding blanks aside).

    Nothing is truncated, upper-cased or looked up by name: "Germany" is not "GE" (Georgia),
    and "ge" is refused too, since a lower-case pair is as likely the start of a name.
    """
    given = (code or "").strip()
    if given not in COUNTRY_CODES:
        hint = "; codes are written in capitals" if given.upper() in COUNTRY_CODES else ""
        raise ValidationFailed(f"{COUNTRY_RULE}, not {given!r}{hint}")
    return given


def check_tax_id(country: str, tax_id: str) -> CheckedTaxId:
    """Format and check digits of a tax ID for the country; refuses a bad one."""
    given = " ".join((tax_id or "").split())
    if not given:
        return CheckedTaxId("", "", False)
    if len(given) > 40:
        raise ValidationFailed("the tax ID is too long")
    if country in EU_MEMBERS:
        from stdnum.eu import vat

        prefix = _VAT_PREFIX[country]
        candidate = given.replace(" ", "").upper()
        if not candidate[:2].isalpha():
            candidate = prefix + candidate
        if candidate[:2] != prefix:
            raise ValidationFailed(
                f"the VAT ID {given!r} belongs to {candidate[:2]}, but the country is {country}"
            )
        try:
            return CheckedTaxId(given, vat.validate(candidate), True)
        except StdnumError:
            raise ValidationFailed(f"{given!r} is not a valid {country} VAT ID") from None
    module: Any = get_cc_module(country.lower(), "vat")
    if module is None:
        # No format known here: kept as given, not used to change the tax treatment.
        return CheckedTaxId(given, given, False)
    try:
        return CheckedTaxId(given, str(module.validate(given)), True)
    except StdnumError:
        name = _TAX_ID_NAMES.get(country, "tax ID")
        raise ValidationFailed(f"{given!r} is not a valid {country} {name}") from None


def _text(value: str, name: str, limit: int, *, required: bool = False) -> str:
    value = " ".join((value or "").split())
    if required and not value:
        raise ValidationFailed(f"{name} is required")
    if len(value) > limit:
        raise ValidationFailed(f"{name} is limited to {limit} characters")
    return value


def save_billing_profile(
    session: Session, *, customer_id: str, data: ProfileInput, actor: Actor
) -> BillingProfile:
    """Create or replace the customer's billing profile (issued invoices keep their copy). A
    user actor needs billing.manage in the workspace; the operator does not."""
    get_customer(session, customer_id)
    roles.require_actor(session, actor=actor, customer_id=customer_id, permission="billing.manage")
    country = check_country(data.country)
    region = _text(data.region, "region", 10).upper()
    if country == "CA" and not region:
        raise ValidationFailed("a Canadian billing profile needs its province (e.g. ON)")
    checked = check_tax_id(country, data.tax_id)
    email = _text(data.billing_email, "billing email", 320)
    if email:
        try:
            email = validate_email(email, check_deliverability=False).normalized
        except EmailNotValidError as exc:
            raise ValidationFailed(f"billing email: {exc}") from None
    profile = session.get(BillingProfile, customer_id)
    before = describe_profile(profile) if profile else None
    if profile is None:
        profile = BillingProfile(customer_id=customer_id, legal_name="", country=country)
    profile.legal_name = _text(data.legal_name, "legal name", 200, required=True)
    profile.country = country
    profile.region = region
    profile.is_business = bool(data.is_business)
    profile.tax_id = checked.given
    profile.tax_id_compact = checked.compact
    profile.tax_id_valid = checked.valid
    profile.address_line1 = _text(data.address_line1, "address", 200)
    profile.address_line2 = _text(data.address_line2, "address line 2", 200)
    profile.city = _text(data.city, "city", 120)
    profile.postal_code = _text(data.postal_code, "postal code", 40)
    profile.billing_email = email
    profile.updated_at = utcnow()
    session.add(profile)
    session.flush()
    record(
        session,
        actor=actor,
        action="billing_profile.save",
        target_type="customer",
        target_id=customer_id,
        before=before,
        after=describe_profile(profile),
    )
    return profile


def get_billing_profile(session: Session, customer_id: str) -> BillingProfile | None:
    return session.get(BillingProfile, customer_id)


def describe_profile(profile: BillingProfile) -> dict[str, object]:
    return {
        "customer_id": profile.customer_id,
        "legal_name": profile.legal_name,
        "address_line1": profile.address_line1,
        "address_line2": profile.address_line2,
        "city": profile.city,
        "postal_code": profile.postal_code,
        "region": profile.region,
        "country": profile.country,
        "is_business": profile.is_business,
        "tax_id": profile.tax_id,
        "tax_id_valid": profile.tax_id_valid,
        "billing_email": profile.billing_email,
    }


def buyer_facts(profile: BillingProfile | None, seller: SellerProfile) -> BuyerFacts:
    """Without a profile the buyer is a consumer in the seller's country (docs/contract.md)."""
    if profile is None:
        return BuyerFacts(country=seller.country)
    return BuyerFacts(
        country=profile.country,
        region=profile.region,
        is_business=profile.is_business,
        tax_id=profile.tax_id,
        tax_id_valid=profile.tax_id_valid,
    )


def buyer_snapshot(
    profile: BillingProfile | None, *, customer_name: str, customer_email: str, tax_country: str
) -> dict[str, object]:
    """The buyer as the order and its invoice record it. Without a profile the customer gave
    no address: no country is recorded as theirs, only the one taxed as (the seller's)."""
    if profile is None:
        return {
            "legal_name": customer_name,
            "country": "",
            "is_business": False,
            "billing_email": customer_email,
            "profile": False,
            "taxed_as": "consumer",
            "tax_country": tax_country,
        }
    return {**describe_profile(profile), "profile": True}


def no_address_note(buyer: dict[str, Any]) -> str | None:
    """The line an invoice prints for a buyer who gave no billing profile, else None.

    Invoices issued before tax_country was recorded stored the seller's country as country."""
    if buyer.get("profile") is not False:
        return None
    code = str(buyer.get("tax_country") or buyer.get("country") or "")
    where = f"{country_name(code)} ({code})" if code else "the seller's country"
    return f"No billing address given; taxed as a consumer in {where}"


# ------------------------------------------------------------------------------------ seller


@dataclass(frozen=True)
class SellerInput:
    legal_name: str
    country: str
    tax_id: str = ""
    address_line1: str = ""
    address_line2: str = ""
    city: str = ""
    postal_code: str = ""
    email: str = ""
    registrations: tuple[str, ...] = field(default_factory=tuple)
    bank_details: str = ""


KNOWN_REGISTRATIONS = ISO_COUNTRIES | {"EU_OSS"}


def get_seller(session: Session) -> SellerProfile:
    seller = session.get(SellerProfile, 1)
    if seller is None:
        raise NotFound(
            "the seller profile is not set; an admin sets it with `creditdash seller set`"
        )
    return seller


def seller_facts(seller: SellerProfile) -> SellerFacts:
    return SellerFacts(
        country=seller.country, registrations=frozenset(json.loads(seller.registrations_json))
    )


def save_seller(session: Session, *, data: SellerInput, actor: Actor) -> SellerProfile:
    country = check_country(data.country)
    registrations = sorted({r.strip().upper() for r in data.registrations if r.strip()} | {country})
    unknown = [r for r in registrations if r not in KNOWN_REGISTRATIONS]
    if unknown:
        raise ValidationFailed(f"unknown tax registrations: {', '.join(unknown)}")
    checked = check_tax_id(country, data.tax_id)
    if country not in ("US", "CA"):
        # A seller must be able to sell at home: refuse a country with no rate on file.
        rate_on(session, country, utcnow().date())
    seller = session.get(SellerProfile, 1)
    before = describe_seller(seller) if seller else None
    if seller is None:
        seller = SellerProfile(id=1, legal_name="", country=country)
    seller.legal_name = _text(data.legal_name, "legal name", 200, required=True)
    seller.country = country
    seller.tax_id = checked.compact if checked.valid else checked.given
    seller.address_line1 = _text(data.address_line1, "address", 200)
    seller.address_line2 = _text(data.address_line2, "address line 2", 200)
    seller.city = _text(data.city, "city", 120)
    seller.postal_code = _text(data.postal_code, "postal code", 40)
    seller.email = _text(data.email, "email", 320)
    seller.bank_details = _text(data.bank_details, "bank details", 500)
    seller.registrations_json = json.dumps(registrations)
    seller.updated_at = utcnow()
    session.add(seller)
    session.flush()
    record(
        session,
        actor=actor,
        action="seller.save",
        target_type="seller",
        target_id="1",
        before=before,
        after=describe_seller(seller),
    )
    return seller


def describe_seller(seller: SellerProfile) -> dict[str, object]:
    return {
        "legal_name": seller.legal_name,
        "address_line1": seller.address_line1,
        "address_line2": seller.address_line2,
        "city": seller.city,
        "postal_code": seller.postal_code,
        "country": seller.country,
        "tax_id": seller.tax_id,
        "email": seller.email,
        "registrations": json.loads(seller.registrations_json),
        "bank_details": seller.bank_details,
    }


DEMO_SELLER = SellerInput(
    legal_name="Creditdash Demo GmbH",
    country="DE",
    tax_id="DE136695976",
    address_line1="Friedrichstraße 123",
    city="Berlin",
    postal_code="10117",
    email="billing@example.com",
    registrations=("DE", "EU_OSS"),
    bank_details="IBAN DE89 3704 0044 0532 0130 00 · BIC COBADEFFXXX",
)


def seed_demo_seller(session: Session, *, actor: Actor) -> None:
    if session.get(SellerProfile, 1) is None:
        save_seller(session, data=DEMO_SELLER, actor=actor)
