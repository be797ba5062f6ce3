"""Demo data for a fresh install: an admin, a customer with credits, and an API key.

The passwords are fixed and printed so a first run can sign in; change them (or do not seed)
on any server that others can reach: `creditdash users set-password EMAIL`.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlmodel import col

from creditdash import db
from creditdash.accounts import api_keys, customers, users
from creditdash.accounts.audit import CLI
from creditdash.accounts.models import Customer, User

DEMO_ADMIN_EMAIL = "admin@example.com"
DEMO_ADMIN_PASSWORD = "creditdash-admin"  # noqa: S105 (documented demo login)
DEMO_CUSTOMER_EMAIL = "demo@example.com"
DEMO_CUSTOMER_PASSWORD = "creditdash-demo"  # noqa: S105 (documented demo login)
DEMO_CUSTOMER_NAME = "Demo Workspace"
DEMO_OPENING_CREDITS_MICROS = 25_000_000


def seed_demo(*, only_if_empty: bool = False) -> list[str]:
    """Create what is missing of the demo data; return the lines to print."""
    with db.session_scope() as session:
        if only_if_empty and session.execute(select(func.count(col(User.id)))).scalar_one() > 0:
            return ["database already has users; demo data not seeded"]
        report: list[str] = []
        if users.get_user_by_email(session, DEMO_ADMIN_EMAIL) is None:
            users.create_user(
                session,
                email=DEMO_ADMIN_EMAIL,
                password=DEMO_ADMIN_PASSWORD,
                display_name="Demo Admin",
                is_platform_admin=True,
            )
            report.append(f"admin:    {DEMO_ADMIN_EMAIL} / {DEMO_ADMIN_PASSWORD}")
        else:
            report.append(f"admin:    {DEMO_ADMIN_EMAIL} (exists; password unchanged)")
        existing = session.execute(
            select(Customer).where(col(Customer.email) == DEMO_CUSTOMER_EMAIL)
        ).scalar_one_or_none()
        if existing is None:
            customer = customers.create_customer(
                session,
                name=DEMO_CUSTOMER_NAME,
                email=DEMO_CUSTOMER_EMAIL,
                owner_password=DEMO_CUSTOMER_PASSWORD,
                actor=CLI,
                opening_credits_micros=DEMO_OPENING_CREDITS_MICROS,
            )
            _key, raw = api_keys.create_api_key(session, customer_id=customer.id, name="demo")
            report.append(
                f"customer: {DEMO_CUSTOMER_EMAIL} / {DEMO_CUSTOMER_PASSWORD} ({customer.id})"
            )
            report.append(f"api key:  {raw}  (shown once)")
        else:
            report.append(f"customer: {DEMO_CUSTOMER_EMAIL} (exists; {existing.id})")
            report.append(
                f"api key:  kept; another: creditdash keys create --customer {existing.id}"
            )
        return report
