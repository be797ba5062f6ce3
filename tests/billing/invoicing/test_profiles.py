"""Billing profiles: tax IDs checked offline for format, clear refusals that change nothing."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import Engine

from creditdash import db
from creditdash.accounts.audit import CLI
from creditdash.billing.invoicing import profiles
from creditdash.errors import ValidationFailed
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
