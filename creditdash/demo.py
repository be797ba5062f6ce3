"""Demo data for a fresh install: an admin, a customer with credits, and an API key.

The passwords are fixed and printed so a first run can sign in; change them (or do not seed)
on any server that others can reach: `creditdash users set-password EMAIL`.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlmodel import Session, col

from creditdash.accounts import api_keys, users
from creditdash.accounts.models import Customer, User
from creditdash.billing import onboarding
from creditdash.billing.invoicing.profiles import seed_demo_seller
from creditdash.billing.payments.packages import list_packages, seed_demo_packages
from creditdash.catalog.importer import CatalogSpec, import_catalog, parse_catalog
from creditdash.catalog.models import Provider
from creditdash.core import db
from creditdash.core.audit import CLI

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
            customer = onboarding.create_customer(
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
        report += _seed_sandbox_catalog(session)
        seed_demo_seller(session, actor=CLI)
        seed_demo_packages(session, actor=CLI)
        names = ", ".join(p.name for p in list_packages(session, active_only=True))
        report.append(f"packages: {names} (EUR)")
        return report


# The demo's models run on the built-in sandbox upstream, priced like small hosted models:
# OpenAI-style ones on the sandbox provider, and demo-claude on its Anthropic twin (Messages
# natively, chat through translation; its price reads and writes a prompt cache).
DEMO_ANTHROPIC_PROVIDER = "sandbox-anthropic"
DEMO_ANTHROPIC_MODEL = "demo-claude"
DEMO_CATALOG = """
providers:
  - name: sandbox
    kind: sandbox
    base_url: http://creditdash-sandbox/v1
  - name: sandbox-anthropic
    kind: anthropic-sandbox
    base_url: http://creditdash-sandbox/v1
models:
  - name: demo-claude
    price: {input_per_mtok: "0.80", output_per_mtok: "4.00", cached_input_per_mtok: "0.08",
            cache_write_per_mtok: "1.00"}
    max_output_tokens: 1024
    routes:
      - provider: sandbox-anthropic
        upstream_model: sandbox-claude
        cost: {input_per_mtok: "0.20", output_per_mtok: "1.00", cached_input_per_mtok: "0.02",
               cache_write_per_mtok: "0.25"}
  - name: gpt-4o-mini
    price: {input_per_mtok: "0.60", output_per_mtok: "2.40", cached_input_per_mtok: "0.30"}
    max_output_tokens: 1024
    routes:
      - provider: sandbox
        upstream_model: sandbox-chat
        cost: {input_per_mtok: "0.15", output_per_mtok: "0.60", cached_input_per_mtok: "0.075"}
  - name: sandbox-chat
    price: {input_per_mtok: "0.60", output_per_mtok: "2.40", cached_input_per_mtok: "0.30"}
    max_output_tokens: 1024
    routes:
      - provider: sandbox
        upstream_model: sandbox-chat
        cost: {input_per_mtok: "0.15", output_per_mtok: "0.60", cached_input_per_mtok: "0.075"}
  - name: text-embedding-3-small
    price: {input_per_mtok: "0.04", output_per_mtok: "0"}
    routes:
      - provider: sandbox
        upstream_model: sandbox-embed
        cost: {input_per_mtok: "0.02", output_per_mtok: "0"}
"""


def _has_provider(session: Session, name: str) -> bool:
    return (
        session.execute(select(col(Provider.id)).where(col(Provider.name) == name)).first()
        is not None
    )


def _seed_sandbox_catalog(session: Session) -> list[str]:
    """The sandbox providers and their models, once: a re-run never overwrites operators'
    prices. An install seeded before the Anthropic sandbox existed gets just that part."""
    spec = parse_catalog(DEMO_CATALOG)
    if _has_provider(session, "sandbox"):
        if _has_provider(session, DEMO_ANTHROPIC_PROVIDER):
            return ["catalog:  sandbox providers exist; prices unchanged"]
        spec = CatalogSpec(
            providers=[p for p in spec.providers if p.name == DEMO_ANTHROPIC_PROVIDER],
            models=[m for m in spec.models if m.name == DEMO_ANTHROPIC_MODEL],
        )
    margins = import_catalog(session, spec)
    names = sorted({line.model for line in margins})
    return [f"catalog:  sandbox upstreams with models {', '.join(names)}"]
