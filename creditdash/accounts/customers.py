"""Customers (workspaces): creation with their owner, ledger account and opening credit."""

from __future__ import annotations

import json
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from creditdash.accounts.models import Customer, Membership
from creditdash.accounts.users import create_user, get_user_by_email, normalize_email
from creditdash.billing import ledger
from creditdash.billing.adjustments import grant_credits
from creditdash.core.audit import Actor, record
from creditdash.core.errors import Conflict, NotFound, ValidationFailed
from creditdash.core.ids import new_id
from creditdash.core.money import MAX_MICROS, format_credits


@dataclass(frozen=True)
class CustomerBalance:
    posted_micros: int
    held_micros: int
    available_micros: int

    def as_json(self) -> dict[str, str]:
        return {
            "balance": format_credits(self.posted_micros),
            "held": format_credits(self.held_micros),
            "available": format_credits(self.available_micros),
        }


def create_customer(
    session: Session,
    *,
    name: str,
    email: str,
    actor: Actor,
    owner_password: str | None = None,
    opening_credits_micros: int = 0,
) -> Customer:
    """A workspace, its owner (the user with this email, created if new) and its ledger account.

    opening_credits_micros > 0 posts an audited manual grant.
    """
    name = (name or "").strip()
    if not name or len(name) > 200:
        raise ValidationFailed("customer name must be 1-200 characters")
    normalized = normalize_email(email)
    if isinstance(opening_credits_micros, bool) or not isinstance(opening_credits_micros, int):
        raise ValidationFailed("opening credits must be an integer number of micros")
    if opening_credits_micros < 0:
        raise ValidationFailed("opening credits cannot be negative")
    if opening_credits_micros > MAX_MICROS:
        raise ValidationFailed("opening credits are too large")
    # All rows below or none: a refusal part-way leaves the caller's transaction untouched.
    with session.begin_nested():
        return _create_customer(
            session,
            name=name,
            email=normalized,
            actor=actor,
            owner_password=owner_password,
            opening_credits_micros=opening_credits_micros,
        )


def _create_customer(
    session: Session,
    *,
    name: str,
    email: str,
    actor: Actor,
    owner_password: str | None,
    opening_credits_micros: int,
) -> Customer:
    normalized = email
    if session.execute(select(col(Customer.id)).where(col(Customer.email) == normalized)).first():
        raise Conflict(f"a customer with email {normalized} already exists")
    owner = get_user_by_email(session, normalized) or create_user(
        session, email=normalized, password=owner_password
    )
    customer = Customer(id=new_id("cus"), name=name, email=normalized)
    session.add(customer)
    try:
        session.flush()
    except IntegrityError:
        raise Conflict(f"a customer with email {normalized} already exists") from None
    assert owner.id is not None
    session.add(Membership(customer_id=customer.id, user_id=owner.id, role="owner"))
    ledger.open_account(
        session, code=ledger.customer_account_code(customer.id), customer_id=customer.id
    )
    record(
        session,
        actor=actor,
        action="customer.create",
        target_type="customer",
        target_id=customer.id,
        after={"name": name, "email": normalized},
    )
    if opening_credits_micros:
        grant_credits(
            session,
            customer_id=customer.id,
            amount_micros=opening_credits_micros,
            reason="opening credit",
            actor=actor,
            idempotency_key=f"opening-grant:{customer.id}",
        )
    session.flush()
    return customer


def get_customer(session: Session, customer_id: str) -> Customer:
    customer = session.get(Customer, customer_id)
    if customer is None:
        raise NotFound("customer not found")
    return customer


def customer_balance(session: Session, customer_id: str) -> CustomerBalance:
    get_customer(session, customer_id)
    balance = ledger.get_balance(session, ledger.customer_account_id(session, customer_id))
    return CustomerBalance(
        posted_micros=balance.posted_micros,
        held_micros=balance.held_micros,
        available_micros=balance.available_micros,
    )


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


def set_credit_limit(
    session: Session, *, customer_id: str, credit_limit_micros: int, actor: Actor, reason: str
) -> None:
    """How far below zero the workspace may spend (0: prepaid only); audited."""
    reason = (reason or "").strip()
    if not reason:
        raise ValidationFailed("a reason is required")
    account_id = ledger.customer_account_id(session, customer_id)
    before = ledger.get_balance(session, account_id).credit_limit_micros
    ledger.set_credit_limit(session, account_id=account_id, credit_limit_micros=credit_limit_micros)
    record(
        session,
        actor=actor,
        action="customer.credit_limit",
        target_type="customer",
        target_id=customer_id,
        before={"credit_limit": format_credits(before)},
        after={"credit_limit": format_credits(credit_limit_micros)},
        reason=reason,
    )
