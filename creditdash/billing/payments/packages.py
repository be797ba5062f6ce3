"""Credit packages: what customers can buy, managed by admins (and seeded by `creditdash demo`)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func
from sqlmodel import Session, col, select

from creditdash.billing.payments.models import PACKAGE_KINDS, CreditPackage
from creditdash.core.audit import Actor, record
from creditdash.core.errors import NotFound, ValidationFailed
from creditdash.core.ids import new_id
from creditdash.core.money import check_currency, format_credits, format_minor
from creditdash.core.numbers import CreditRate
from creditdash.core.timeutil import utcnow

MAX_QUANTITY = 1000


@dataclass(frozen=True)
class PackageSpec:
    name: str
    currency: str
    unit_price_minor: int
    credits_micros: int
    bonus_micros: int = 0
    min_quantity: int = 1
    max_quantity: int = 1
    kind: str = "standard"
    description: str = ""
    active: bool = True
    sort_order: int = 0


def _validate(spec: PackageSpec) -> PackageSpec:
    name = spec.name.strip()
    if not name or len(name) > 80:
        raise ValidationFailed("a package name of 1-80 characters is required")
    if spec.kind not in PACKAGE_KINDS:
        raise ValidationFailed(f"package kind must be one of {', '.join(PACKAGE_KINDS)}")
    if spec.unit_price_minor <= 0:
        raise ValidationFailed("the unit price must be positive")
    if spec.credits_micros <= 0:
        raise ValidationFailed("a package must grant a positive amount of credits")
    if spec.bonus_micros < 0:
        raise ValidationFailed("bonus credits cannot be negative")
    if not 1 <= spec.min_quantity <= spec.max_quantity <= MAX_QUANTITY:
        raise ValidationFailed(f"quantity bounds must satisfy 1 <= min <= max <= {MAX_QUANTITY}")
    if len(spec.description) > 500:
        raise ValidationFailed("the description is limited to 500 characters")
    return PackageSpec(
        name=name,
        currency=check_currency(spec.currency),
        unit_price_minor=spec.unit_price_minor,
        credits_micros=spec.credits_micros,
        bonus_micros=spec.bonus_micros,
        min_quantity=spec.min_quantity,
        max_quantity=spec.max_quantity,
        kind=spec.kind,
        description=spec.description.strip(),
        active=spec.active,
        sort_order=spec.sort_order,
    )


def find_package(session: Session, name_or_id: str) -> CreditPackage:
    key = (name_or_id or "").strip()
    package = session.get(CreditPackage, key)
    if package is None:
        package = session.exec(
            select(CreditPackage).where(func.lower(col(CreditPackage.name)) == key.lower())
        ).first()
    if package is None:
        raise NotFound(f"no credit package named {key!r}")
    return package


def list_packages(session: Session, *, active_only: bool = False) -> list[CreditPackage]:
    query = select(CreditPackage).order_by(col(CreditPackage.sort_order), col(CreditPackage.name))
    if active_only:
        query = query.where(col(CreditPackage.active).is_(True))
    return list(session.exec(query))


def save_package(session: Session, *, spec: PackageSpec, actor: Actor) -> CreditPackage:
    """Create the package, or update the one with this name (case-insensitive), with an audit."""
    spec = _validate(spec)
    try:
        package = find_package(session, spec.name)
        before: dict[str, object] | None = describe_package(package)
    except NotFound:
        package = CreditPackage(
            id=new_id("pkg"),
            name=spec.name,
            currency=spec.currency,
            unit_price_minor=spec.unit_price_minor,
            credits_micros=spec.credits_micros,
        )
        before = None
    # Custom packages are contract terms, settled by bank transfer only.
    package.manual_only = spec.kind == "custom"
    for field in (
        "name",
        "kind",
        "description",
        "currency",
        "unit_price_minor",
        "credits_micros",
        "bonus_micros",
        "min_quantity",
        "max_quantity",
        "active",
        "sort_order",
    ):
        setattr(package, field, getattr(spec, field))
    package.updated_at = utcnow()
    session.add(package)
    session.flush()
    after = describe_package(package)
    if after != before:
        record(
            session,
            actor=actor,
            action="package.create" if before is None else "package.update",
            target_type="credit_package",
            target_id=package.id,
            before=before,
            after=after,
        )
    return package


def describe_package(package: CreditPackage) -> dict[str, object]:
    """The public shape of a package (amounts as decimal strings)."""
    return {
        "id": package.id,
        "name": package.name,
        "kind": package.kind,
        "description": package.description,
        "currency": package.currency,
        "unit_price": format_minor(package.unit_price_minor, package.currency),
        "credits": format_credits(package.credits_micros),
        "bonus_credits": format_credits(package.bonus_micros),
        "min_quantity": package.min_quantity,
        "max_quantity": package.max_quantity,
        "manual_only": package.manual_only,
        "active": package.active,
    }


# The demo's packages, priced in EUR (the demo seller is a German company).
DEMO_PACKAGES = (
    PackageSpec(
        name="Starter",
        currency="EUR",
        unit_price_minor=1000,
        credits_micros=10_000_000,
        max_quantity=10,
        description="10 credits for trying things out.",
        sort_order=1,
    ),
    PackageSpec(
        name="Growth",
        currency="EUR",
        unit_price_minor=5000,
        credits_micros=50_000_000,
        bonus_micros=5_000_000,
        max_quantity=20,
        description="50 credits plus 5 bonus credits.",
        sort_order=2,
    ),
    PackageSpec(
        name="Enterprise",
        currency="EUR",
        unit_price_minor=25000,
        credits_micros=250_000_000,
        bonus_micros=37_500_000,
        max_quantity=40,
        description="250 credits plus 15% bonus, for production traffic.",
        sort_order=3,
    ),
    PackageSpec(
        name="Custom",
        kind="custom",
        currency="EUR",
        unit_price_minor=100000,
        credits_micros=1_000_000_000,
        max_quantity=100,
        description="Contract terms, invoiced and settled by bank transfer.",
        sort_order=4,
    ),
)


def seed_demo_packages(session: Session, *, actor: Actor) -> None:
    """Create the demo packages that do not exist yet; never overwrite an operator's edits."""
    for spec in DEMO_PACKAGES:
        try:
            find_package(session, spec.name)
        except NotFound:
            save_package(session, spec=spec, actor=actor)


def credit_rate(session: Session) -> CreditRate | None:
    """The price of one purchased credit in the first package on sale (bonus not counted), for
    the dashboard's "≈ €12.50" hints; None when no package is on sale."""
    for package in list_packages(session, active_only=True):
        if package.credits_micros > 0:
            return CreditRate(package.unit_price_minor, package.credits_micros, package.currency)
    return None
