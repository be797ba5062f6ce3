"""Factories for test data, through the same services the app uses."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from sqlalchemy.engine import Engine

from creditdash.accounts.api_keys import create_api_key
from creditdash.billing import ledger
from creditdash.billing.hotpath import HotLedger
from creditdash.billing.models import UsageEntry
from creditdash.billing.onboarding import create_customer, sign_up
from creditdash.core import db
from creditdash.core.audit import CLI

_sequence = itertools.count(1)


@dataclass(frozen=True)
class Funded:
    customer_id: str
    account_id: int
    revenue_id: int


def funded_customer(engine: Engine, *, credits_micros: int, name: str = "Acme") -> Funded:
    """A customer with an opening grant, and the usage-revenue account to hold against."""
    number = next(_sequence)
    with db.session_scope(engine=engine) as session:
        customer = create_customer(
            session,
            name=f"{name} {number}",
            email=f"ops{number}@acme{number}.example.com",
            actor=CLI,
            opening_credits_micros=credits_micros,
        )
        account_id = ledger.customer_account_id(session, customer.id)
        revenue_id = ledger.usage_revenue_account_id(session, account_id)
        return Funded(customer.id, account_id, revenue_id)


def signed_up(email: str = "founder@example.com") -> tuple[int, str]:
    """A self-service sign-up (user id, customer id), as the sign-up page makes one."""
    with db.session_scope() as session:
        user, customer = sign_up(
            session,
            email=email,
            password="a-long-password-1",
            workspace_name="Acme Labs",
            display_name="Ada",
        )
        assert user.id is not None
        return user.id, customer.id


def customer_with_key(engine: Engine, credits: int) -> tuple[Funded, str]:
    """A funded customer and the id of one of its API keys."""
    who = funded_customer(engine, credits_micros=credits)
    with db.session_scope(engine=engine) as session:
        key, _raw = create_api_key(session, customer_id=who.customer_id, name="hot")
        return who, key.id


def usage_entry(who: Funded, key_id: str, request_id: str) -> UsageEntry:
    """The usage record of one ordinary chat request, before it is priced."""
    return UsageEntry(
        id=request_id,
        customer_id=who.customer_id,
        api_key_id=key_id,
        endpoint="chat",
        public_model="m",
        status="ok",
        usage_source="provider",
        provider="p",
        upstream_model="u",
        prompt_tokens=12,
        completion_tokens=7,
        upstream_cost_micros=11,
        latency_ms=3,
        ttfb_ms=2,
        attempts=1,
        attempts_json='[{"provider": "p"}]',
    )


def hot_ledger(engine: Engine) -> HotLedger:
    """The gateway's raw-connection transactions for the test database's dialect."""
    dialect = engine.dialect
    return HotLedger(dialect.name, dialect.loaded_dbapi.IntegrityError, db.writer_lock(engine))
