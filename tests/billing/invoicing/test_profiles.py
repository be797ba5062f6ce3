"""Billing profiles: tax IDs checked offline for format, clear refusals that change nothing."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import Engine

from creditdash.billing.invoicing import countries, profiles
from creditdash.core import audit, db
from creditdash.core.audit import CLI
from creditdash.core.errors import ValidationFailed
from tests.factories import funded_customer


def _save(customer_id: str, **kw: object) -> profiles.BillingProfile:
    data = profiles.ProfileInput(**{"legal_name": "Müller GmbH", "country": "DE", **kw})  # type: ignore[arg-type]
    with db.session_scope() as session:
        saved = profiles.save_billing_profile(
            session, customer_id=customer_id, data=data, actor=CLI
        )
        session.expunge(saved)
        return saved


def test_valid_vat_ids_are_compacted_and_marked(sqlite_engine: Engine) -> None:
    who = funded_customer(sqlite_engine, credits_micros=0)
    saved = _save(who.customer_id, is_business=True, tax_id="DE 136 695 976")
    assert saved.tax_id == "DE 136 695 976" and saved.tax_id_compact == "DE136695976"
    assert saved.tax_id_valid
    greek = _save(who.customer_id, country="GR", is_business=True, tax_id="094259216")
    assert greek.tax_id_compact == "EL094259216"


@pytest.mark.parametrize(
    ("country", "tax_id", "message"),
    [
        ("DE", "DE999999999", "not a valid DE VAT ID"),
        ("DE", "FR40303265045", "belongs to FR, but the country is DE"),
        ("GB", "GB123", "not a valid GB VAT number"),
        ("AU", "12 345 678 901", "not a valid AU ABN"),
        ("XX", "", "ISO 3166"),
    ],
)
def test_bad_input_is_refused_and_changes_nothing(
    sqlite_engine: Engine, country: str, tax_id: str, message: str
) -> None:
    who = funded_customer(sqlite_engine, credits_micros=0)
    with pytest.raises(ValidationFailed, match=message):
        _save(who.customer_id, country=country, tax_id=tax_id)
    with db.session_scope(readonly=True) as session:
        assert profiles.get_billing_profile(session, who.customer_id) is None


def test_canadian_profiles_need_a_province(sqlite_engine: Engine) -> None:
    who = funded_customer(sqlite_engine, credits_micros=0)
    with pytest.raises(ValidationFailed, match="province"):
        _save(who.customer_id, country="CA")
    assert _save(who.customer_id, country="CA", region="on").region == "ON"


def test_unicode_names_are_kept(sqlite_engine: Engine) -> None:
    who = funded_customer(sqlite_engine, credits_micros=0)
    assert _save(who.customer_id, legal_name="Zoë  Šťastná").legal_name == "Zoë Šťastná"


@pytest.mark.parametrize(
    "country", ["Germany", "GER", "XX", "ge ", "ge", "de", "D E", "DEU", "", "  ", "G"]
)
def test_country_is_an_assigned_code_never_a_guess(engine: Engine, country: str) -> None:
    """Only an assigned ISO 3166-1 alpha-2 code in capitals: "Germany" is not saved as GE
    (Georgia) nor anything else, and a refused save leaves the stored profile as it was."""
    who = funded_customer(engine, credits_micros=0)
    _save(who.customer_id, country="FR", legal_name="Dupont SA")
    with db.session_scope(readonly=True) as session:
        entries = len(audit.list_entries(session))
    with pytest.raises(ValidationFailed) as refused:
        _save(who.customer_id, country=country, legal_name="Changed GmbH")
    assert "country must be an ISO 3166 two-letter code, e.g. DE for Germany" in str(
        refused.value.message
    )
    with db.session_scope(readonly=True) as session:
        kept = profiles.get_billing_profile(session, who.customer_id)
        assert kept is not None and (kept.country, kept.legal_name) == ("FR", "Dupont SA")
        assert len(audit.list_entries(session)) == entries


def test_country_codes_may_carry_blanks_around_them(engine: Engine) -> None:
    who = funded_customer(engine, credits_micros=0)
    assert _save(who.customer_id, country=" GE ", legal_name="Tbilisi LLC").country == "GE"
    assert profiles.check_country("\tDE\n") == "DE"
    assert set(countries.COUNTRY_NAMES) == countries.COUNTRY_CODES == profiles.ISO_COUNTRIES
    assert len(countries.COUNTRY_CODES) == 249
    assert countries.country_name("DE") == "Germany"
    assert countries.country_name("GE") == "Georgia"
    assert [code for code, _name in countries.COUNTRY_CHOICES][:3] == ["AF", "AX", "AL"]


def test_the_cli_profile_command_refuses_a_country_name(engine: Engine) -> None:
    from click.testing import CliRunner

    from creditdash.cli import main

    who = funded_customer(engine, credits_micros=0)
    result = CliRunner().invoke(
        main,
        ["customers", "profile", who.customer_id, "--legal-name", "Acme", "--country", "Germany"],
    )
    assert result.exit_code == 1
    assert "country must be an ISO 3166 two-letter code, e.g. DE for Germany" in result.output
    with db.session_scope(readonly=True) as session:
        assert profiles.get_billing_profile(session, who.customer_id) is None
