"""The outbox: events and emails exist exactly when the change that caused them committed."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from creditdash.accounts import api_keys
from creditdash.core import db, outbox
from creditdash.core.errors import ValidationFailed
from creditdash.core.outbox import Event, OutboxMail
from tests.factories import funded_customer


def _events(type_: str) -> list[Event]:
    with db.session_scope(readonly=True) as session:
        rows = session.execute(select(Event).where(Event.type == type_)).scalars().all()
        for row in rows:
            session.expunge(row)
        return list(rows)


def test_a_dedupe_key_records_one_event_however_often_it_is_emitted(engine: Engine) -> None:
    funded = funded_customer(engine, credits_micros=0)
    ids = []
    for _ in range(3):
        with db.session_scope() as session:
            ids.append(
                outbox.emit(
                    session,
                    type="budget.threshold",
                    customer_id=funded.customer_id,
                    data={"threshold": 80},
                    dedupe_key=f"budget:{funded.customer_id}:2026-12:80",
                )
            )
    assert ids[0] is not None and ids[0].startswith("evt_")
    assert ids[1:] == [None, None]
    [event] = _events("budget.threshold")
    assert event.id == ids[0] and event.data() == {"threshold": 80}
    assert event.mailed_at is None and event.hooked_at is None


def test_an_event_of_a_rolled_back_change_is_not_recorded(engine: Engine) -> None:
    funded = funded_customer(engine, credits_micros=0)
    with pytest.raises(RuntimeError), db.session_scope() as session:
        api_keys.create_api_key(session, customer_id=funded.customer_id, name="ci")
        raise RuntimeError("the caller's transaction fails after the key was made")
    assert _events("key.created") == []
    with db.session_scope() as session:
        key, _raw = api_keys.create_api_key(session, customer_id=funded.customer_id, name="ci")
    [created] = _events("key.created")
    assert created.customer_id == funded.customer_id
    assert created.data()["key_id"] == key.id
    for _ in range(2):  # revoking twice tells once
        with db.session_scope() as session:
            api_keys.revoke_api_key(session, customer_id=funded.customer_id, key_id=key.id)
    [revoked] = _events("key.revoked")
    assert revoked.data() == {"key_id": key.id, "name": "ci"}


def test_mail_is_queued_once_per_dedupe_key_and_refuses_a_bad_address(engine: Engine) -> None:
    with db.session_scope() as session:
        first = outbox.enqueue_mail(
            session,
            to="ada@example.com",
            subject="Your  invitation\n to Acme",
            text="Open the link.",
            kind="invite",
            dedupe_key="invite:1",
        )
        again = outbox.enqueue_mail(
            session,
            to="ada@example.com",
            subject="x",
            text="y",
            kind="invite",
            dedupe_key="invite:1",
        )
        with pytest.raises(ValidationFailed):
            outbox.enqueue_mail(session, to="nobody", subject="x", text="y", kind="invite")
    assert isinstance(first, int) and again is None
    with db.session_scope(readonly=True) as session:
        assert session.execute(select(func.count()).select_from(OutboxMail)).scalar() == 1
        mail = session.get(OutboxMail, first)
        assert mail is not None
        assert (mail.subject, mail.status, mail.attempts) == (
            "Your invitation to Acme",
            "pending",
            0,
        )
