"""Reading the audit log back: newest first, filtered, in bounded pages."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy.engine import Engine

from creditdash.core import audit, db
from creditdash.core.audit import Actor, AuditFilters
from creditdash.core.errors import ValidationFailed
from creditdash.core.timeutil import utcnow


def _seed() -> None:
    start = utcnow() - timedelta(hours=1)
    rows = [
        ("credits.grant", "customer", "cus_a", "user:ops@example.com", {"amount": "5"}),
        ("order.approve", "order", "ord_1", "user:checker@example.com", None),
        ("model.price", "model", "gpt_mini", "cli", {"input": "0.6"}),
        ("customer.status", "customer", "cus_b", "system", {"status": "suspended"}),
    ]
    with db.session_scope() as session:
        for n, (action, target_type, target_id, label, after) in enumerate(rows):
            entry = audit.record(
                session,
                actor=Actor(label=label),
                action=action,
                target_type=target_type,
                target_id=target_id,
                after=after,
                reason=f"reason {n}",
            )
            entry.at = start + timedelta(minutes=n)


def test_entries_come_newest_first_filtered_and_paged(engine: Engine) -> None:
    _seed()
    with db.session_scope(readonly=True) as session:
        everything = audit.list_entries(session)
        granted = audit.list_entries(session, filters=AuditFilters(search="GRANT"))
        customers = audit.list_entries(session, filters=AuditFilters(target_type="customer"))
        by_actor = audit.list_entries(session, filters=AuditFilters(search="checker@"))
        one = audit.list_entries(session, filters=AuditFilters(target_id="gpt_mini"))
        # "_" and "%" are searched for literally, not as wildcards.
        literal = audit.list_entries(session, filters=AuditFilters(search="gpt_m"))
        wildcard = audit.list_entries(session, filters=AuditFilters(search="%"))
        first = audit.list_entries(session, page=1, page_size=3)
        second = audit.list_entries(session, page=2, page_size=3)
        with pytest.raises(ValidationFailed):
            audit.list_entries(session, page_size=1000)
        with pytest.raises(ValidationFailed):
            audit.list_entries(session, page_size=0)
    assert [e.action for e in everything] == [
        "customer.status",
        "model.price",
        "order.approve",
        "credits.grant",
    ]
    assert [e.target_id for e in granted] == ["cus_a"]
    assert [e.target_id for e in customers] == ["cus_b", "cus_a"]
    assert [e.action for e in by_actor] == ["order.approve"]
    assert [e.action for e in one] == ["model.price"] == [e.action for e in literal]
    assert wildcard == []
    assert len(first) == 3 and [e.action for e in second] == ["credits.grant"]
