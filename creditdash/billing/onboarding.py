"""New workspaces: a customer with its owner, its ledger account and its opening credit, and
self-service sign-up, which makes one with a zero balance.

Creating a customer is money work as much as account work (every customer has a ledger account
from the start, and an opening credit is a grant), so it lives here in billing, over the
accounts' users and tables; accounts/ itself never touches the ledger.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from creditdash.accounts.models import Customer, Membership, User
from creditdash.accounts.users import create_user, get_user_by_email, normalize_email
from creditdash.billing import codes, ledger
from creditdash.billing.adjustments import grant_credits
from creditdash.core.audit import Actor, record
from creditdash.core.errors import Conflict, ValidationFailed
from creditdash.core.ids import new_id
from creditdash.core.money import MAX_MICROS


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
            idempotency_key=codes.opening_grant_key(customer.id),
        )
    session.flush()
    return customer


def sign_up(
    session: Session, *, email: str, password: str, workspace_name: str, display_name: str = ""
) -> tuple[User, Customer]:
    """A new user who owns a new workspace with a zero balance."""
    normalized = normalize_email(email)
    if get_user_by_email(session, normalized) is not None:
        raise Conflict("An account with this email exists already; sign in instead.")
    customer = create_customer(
        session,
        name=workspace_name,
        email=normalized,
        actor=Actor(label=f"signup:{normalized}"),
        owner_password=password,
    )
    user = get_user_by_email(session, normalized)
    assert user is not None
    user.display_name = (display_name or "").strip()[:200]
    session.add(user)
    session.flush()
    return user, customer
