"""The portal's billing profile form: the country comes from a list of ISO codes, and the
handler refuses anything else through the service, with its message and nothing saved."""

from __future__ import annotations

from sqlalchemy.engine import Engine

from creditdash.billing.invoicing import profiles
from creditdash.billing.invoicing.countries import COUNTRY_CHOICES
from creditdash.core import db
from creditdash.pages.portal.billing import country_select
from creditdash.state.portal.billing import BillingState
from tests.factories import funded_customer
from tests.state.portal.test_portal_tenancy import _member_token, _run, _state


def test_the_form_saves_a_code_and_refuses_a_name(sqlite_engine: Engine) -> None:
    who = funded_customer(sqlite_engine, credits_micros=0)
    token = _member_token(sqlite_engine, who.customer_id)
    billing = _state(BillingState, token, workspace_id=who.customer_id)
    _run(billing, BillingState, "save_profile", {"legal_name": "Müller", "country": "Germany"})
    assert "ISO 3166 two-letter code, e.g. DE for Germany" in billing.profile_error
    assert not billing.profile_saved
    with db.session_scope(readonly=True) as session:
        assert profiles.get_billing_profile(session, who.customer_id) is None
    _run(billing, BillingState, "save_profile", {"legal_name": "Müller", "country": "DE"})
    assert billing.profile_error == "" and billing.profile_saved
    assert billing.profile["country"] == "DE"


def test_the_country_field_is_a_select_of_names_submitting_codes() -> None:
    rendered = str(country_select("DE").render())
    assert "RadixThemesSelect.Root" in rendered and 'name:"country"' in rendered
    assert "Germany (DE)" in rendered and '"GE"' in rendered and "Georgia (GE)" in rendered
    assert len(COUNTRY_CHOICES) == 249
