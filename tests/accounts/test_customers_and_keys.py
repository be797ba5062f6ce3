"""API keys: shown once and stored hashed, revoked by their own workspace only, stopped with a
suspended workspace."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import Engine

from creditdash.accounts import api_keys
from creditdash.accounts.models import ApiKey, Customer
from creditdash.billing import onboarding
from creditdash.core import db
from creditdash.core.audit import CLI
from creditdash.core.errors import NotFound, ValidationFailed


def test_api_key_is_shown_once_and_stored_hashed(sqlite_engine: Engine) -> None:
    with db.session_scope(engine=sqlite_engine) as session:
        customer = onboarding.create_customer(
            session, name="Acme", email="k@acme.example.com", actor=CLI
        )
        key, raw = api_keys.create_api_key(session, customer_id=customer.id, name="prod")
    assert raw.startswith("sk-cd-") and len(raw) > 40
    with db.session_scope(engine=sqlite_engine, readonly=True) as session:
        stored = session.get(ApiKey, key.id)
        assert stored is not None
        assert raw not in (stored.key_hash, stored.display_prefix)
        assert raw.startswith(stored.display_prefix)
        found = api_keys.find_active_key(session, raw)
        assert found is not None and found.customer_id == customer.id
        assert api_keys.find_active_key(session, raw[:-1]) is None
        assert api_keys.find_active_key(session, "") is None


def test_revoked_key_stops_and_other_customers_cannot_revoke(sqlite_engine: Engine) -> None:
    with db.session_scope(engine=sqlite_engine) as session:
        a = onboarding.create_customer(session, name="A", email="a@a.example.com", actor=CLI)
        b = onboarding.create_customer(session, name="B", email="b@b.example.com", actor=CLI)
        key, raw = api_keys.create_api_key(session, customer_id=a.id, name="k")
    with pytest.raises(NotFound), db.session_scope(engine=sqlite_engine) as session:
        api_keys.revoke_api_key(session, customer_id=b.id, key_id=key.id)
    with db.session_scope(engine=sqlite_engine) as session:
        assert api_keys.find_active_key(session, raw) is not None
        api_keys.revoke_api_key(session, customer_id=a.id, key_id=key.id)
        api_keys.revoke_api_key(session, customer_id=a.id, key_id=key.id)  # repeat is harmless
    with db.session_scope(engine=sqlite_engine) as session:
        assert api_keys.find_active_key(session, raw) is None


def test_suspended_customer_keys_stop(sqlite_engine: Engine) -> None:
    with db.session_scope(engine=sqlite_engine) as session:
        customer = onboarding.create_customer(session, name="A", email="s@a.example.com", actor=CLI)
        _key, raw = api_keys.create_api_key(session, customer_id=customer.id, name="k")
    with db.session_scope(engine=sqlite_engine) as session:
        stored = session.get(Customer, customer.id)
        assert stored is not None
        stored.status = "suspended"
    with db.session_scope(engine=sqlite_engine) as session:
        assert api_keys.find_active_key(session, raw) is None


@pytest.mark.parametrize("name", ["", "   ", "x" * 101])
def test_bad_key_name_is_refused(sqlite_engine: Engine, name: str) -> None:
    with db.session_scope(engine=sqlite_engine) as session:
        customer = onboarding.create_customer(session, name="A", email="n@a.example.com", actor=CLI)
    with pytest.raises(ValidationFailed), db.session_scope(engine=sqlite_engine) as session:
        api_keys.create_api_key(session, customer_id=customer.id, name=name)
