"""Customers (workspaces): finding them, their members, their status and model access.

A customer is created, with its ledger account and opening credit, in billing/onboarding.py; its
balance and credit limit are in billing/balances.py. Nothing here touches the ledger.
"""

from __future__ import annotations

import json

from sqlalchemy import select
from sqlmodel import Session, col

from creditdash.accounts.models import Customer, Membership
from creditdash.core.audit import Actor, record
from creditdash.core.errors import NotFound, ValidationFailed


def get_customer(session: Session, customer_id: str) -> Customer:
    customer = session.get(Customer, customer_id)
    if customer is None:
        raise NotFound("customer not found")
    return customer


def customers_of_user(session: Session, user_id: int) -> list[tuple[Customer, str]]:
    """The workspaces a user belongs to, with the user's role in each."""
    rows = session.execute(
        select(Customer, col(Membership.role))
        .join(Membership, col(Membership.customer_id) == col(Customer.id))
        .where(col(Membership.user_id) == user_id)
        .order_by(col(Customer.name))
    ).all()
    return [(row[0], row[1]) for row in rows]


def list_customers(session: Session, *, search: str = "", limit: int = 100) -> list[Customer]:
    limit = max(1, min(limit, 500))
    query = select(Customer).order_by(col(Customer.created_at).desc()).limit(limit)
    if search:
        pattern = f"%{search.strip().lower()}%"
        query = query.where(col(Customer.email).like(pattern) | col(Customer.name).ilike(pattern))
    return list(session.execute(query).scalars())


def set_allowed_models(
    session: Session, *, customer_id: str, models: list[str] | None, actor: Actor
) -> None:
    """Restrict the workspace to these public models (None lifts the restriction); audited."""
    customer = get_customer(session, customer_id)
    if models is not None:
        models = sorted({m.strip() for m in models})
        if not models or any(not m or len(m) > 120 for m in models):
            raise ValidationFailed("allowed models must be 1-120 character model names")
    before = customer.allowed_models_json
    customer.allowed_models_json = json.dumps(models) if models is not None else None
    session.add(customer)
    record(
        session,
        actor=actor,
        action="customer.allowed_models",
        target_type="customer",
        target_id=customer_id,
        before={"allowed_models": json.loads(before) if before else None},
        after={"allowed_models": models},
    )
    session.flush()


def set_status(
    session: Session, *, customer_id: str, status: str, actor: Actor, reason: str
) -> None:
    """Suspend a workspace (its keys stop within the key cache's seconds) or reactivate it."""
    if status not in ("active", "suspended"):
        raise ValidationFailed("status must be active or suspended")
    reason = (reason or "").strip()
    if not reason:
        raise ValidationFailed("a reason is required")
    customer = get_customer(session, customer_id)
    if customer.status == status:
        return
    before = customer.status
    customer.status = status
    session.add(customer)
    record(
        session,
        actor=actor,
        action="customer.status",
        target_type="customer",
        target_id=customer_id,
        before={"status": before},
        after={"status": status},
        reason=reason,
    )
