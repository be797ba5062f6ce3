"""Auto top-up settings: the saved card and its consent, and the workspace's rule.

Keyword-only service functions that take the session first and never commit. A user actor
needs autotopup.manage in the workspace (accounts/roles.py); the operator (CLI, admin) does not.
The purchase itself (claim, charge, result) is in billing/payments/autotopup.py and
autotopup_results.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, update
from sqlmodel import Session, col, select

from creditdash.accounts import roles
from creditdash.accounts.customers import get_customer
from creditdash.billing.payments import packages
from creditdash.billing.payments.autotopup_models import (
    MAX_CONSECUTIVE_FAILURES,
    AutoTopupAttempt,
    AutoTopupRule,
    SavedPaymentMethod,
)
from creditdash.billing.payments.models import CreditPackage
from creditdash.billing.payments.providers import checkout_provider_name
from creditdash.core import db
from creditdash.core.audit import Actor, record
from creditdash.core.errors import Conflict, NotFound, ValidationFailed
from creditdash.core.ids import new_id
from creditdash.core.money import MAX_MICROS, format_credits
from creditdash.core.settings import get_settings
from creditdash.core.timeutil import utcnow

PERMISSION = "autotopup.manage"
MAX_COOLDOWN_S = 7 * 24 * 3600
DEFAULT_COOLDOWN_S = 600
# Attempts that count against the caps: the ones that may still take, or took, money.
SPENDING = ("charging", "succeeded")

_rules = AutoTopupRule.__table__  # type: ignore[attr-defined]
_methods = SavedPaymentMethod.__table__  # type: ignore[attr-defined]


def consent_text(workspace: str, terms_version: str) -> str:
    """What a member agrees to when saving a card; stored word for word with the card."""
    return (
        f"I authorise creditdash to save this card for {workspace} and to charge it without "
        "asking me each time, for the credit package chosen in the workspace's auto top-up "
        "rule, whenever the available balance falls below the rule's threshold, within its "
        "monthly and daily caps. I can remove the card or turn the rule off at any time in "
        f"the dashboard. Terms and refund policy version {terms_version}."
    )


def _authorize(session: Session, customer_id: str, actor: Actor) -> None:
    get_customer(session, customer_id)  # NotFound for an unknown workspace
    roles.require_actor(session, actor=actor, customer_id=customer_id, permission=PERMISSION)


# ------------------------------------------------------------------------------ the card


def start_setup(
    session: Session, *, customer_id: str, actor: Actor, accept: bool
) -> SavedPaymentMethod:
    """A pending card for the workspace, with the consent the member just gave; the hosted page
    that takes the card is opened after the commit (autotopup.open_setup)."""
    if not accept:
        raise ValidationFailed("saving a card for automatic top-ups needs your explicit consent")
    _authorize(session, customer_id, actor)
    customer = get_customer(session, customer_id)
    settings = get_settings()
    previous = session.exec(
        select(SavedPaymentMethod)
        .where(
            col(SavedPaymentMethod.customer_id) == customer_id,
            col(SavedPaymentMethod.customer_ref) != "",
        )
        .order_by(col(SavedPaymentMethod.created_at).desc())
    ).first()
    provider = checkout_provider_name(settings)
    now = utcnow()
    method = SavedPaymentMethod(
        id=new_id("pmt"),
        customer_id=customer_id,
        provider=provider,
        # The provider's customer record is reused for every card the workspace saves.
        customer_ref=previous.customer_ref if previous and previous.provider == provider else "",
        consent_text=consent_text(customer.name, settings.terms_version),
        consent_terms_version=settings.terms_version,
        consent_at=now,
        created_by_user_id=actor.user_id,
        created_by_label=actor.label,
        created_at=now,
    )
    session.add(method)
    session.flush()
    record(
        session,
        actor=actor,
        action="autotopup.card_setup",
        target_type="customer",
        target_id=customer_id,
        after={"method_id": method.id, "terms_version": method.consent_terms_version},
    )
    return method


def active_method(session: Session, customer_id: str) -> SavedPaymentMethod | None:
    return session.exec(
        select(SavedPaymentMethod)
        .where(
            col(SavedPaymentMethod.customer_id) == customer_id,
            col(SavedPaymentMethod.status) == "active",
        )
        .order_by(col(SavedPaymentMethod.activated_at).desc())
    ).first()


def activate_method(session: Session, method: SavedPaymentMethod, *, method_ref: str) -> bool:
    """The provider confirmed the card (signed webhook): it becomes the workspace's card, the
    one before it is removed, and the rule charges it from now on. False if already done."""
    now = utcnow()
    moved = session.execute(
        update(_methods)
        .where(_methods.c.id == method.id, _methods.c.status == "pending")
        .values(status="active", activated_at=now, method_ref=method.method_ref or method_ref)
    )
    if db.rowcount(moved) != 1:
        return False
    session.execute(
        update(_methods)
        .where(
            _methods.c.customer_id == method.customer_id,
            _methods.c.status == "active",
            _methods.c.id != method.id,
        )
        .values(status="removed", removed_at=now)
    )
    session.execute(
        update(_rules)
        .where(_rules.c.customer_id == method.customer_id)
        .values(method_id=method.id, updated_at=now)
    )
    session.refresh(method)
    return True


def remove_method(session: Session, *, customer_id: str, actor: Actor) -> bool:
    """Forget the workspace's saved card; the rule is disabled with it. False if none."""
    _authorize(session, customer_id, actor)
    now = utcnow()
    removed = session.execute(
        update(_methods)
        .where(
            _methods.c.customer_id == customer_id,
            _methods.c.status.in_(("active", "pending")),
        )
        .values(status="removed", removed_at=now)
    )
    if db.rowcount(removed) == 0:
        return False
    session.execute(
        update(_rules)
        .where(_rules.c.customer_id == customer_id)
        .values(method_id=None, status="disabled", paused_reason="card removed", updated_at=now)
    )
    record(
        session,
        actor=actor,
        action="autotopup.card_remove",
        target_type="customer",
        target_id=customer_id,
        after={"rule": "disabled"},
    )
    return True


# ------------------------------------------------------------------------------ the rule


@dataclass(frozen=True)
class RuleInput:
    threshold_micros: int
    package_name: str
    quantity: int = 1
    monthly_cap_micros: int | None = None
    daily_cap_micros: int | None = None
    cooldown_s: int = DEFAULT_COOLDOWN_S


def _check(data: RuleInput, package: CreditPackage) -> int:
    """The credits one top-up buys, once the input is known to be sane."""
    for name, value in (
        ("threshold", data.threshold_micros),
        ("monthly cap", data.monthly_cap_micros),
        ("daily cap", data.daily_cap_micros),
    ):
        if value is None and name != "threshold":
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_MICROS:
            raise ValidationFailed(f"the {name} must be more than 0 credits")
    if isinstance(data.cooldown_s, bool) or not 0 <= data.cooldown_s <= MAX_COOLDOWN_S:
        raise ValidationFailed(f"the cool-down is 0 to {MAX_COOLDOWN_S} seconds")
    if package.manual_only or package.kind != "standard" or not package.active:
        raise ValidationFailed(f"package {package.name} cannot be bought automatically")
    if not package.min_quantity <= data.quantity <= package.max_quantity:
        raise ValidationFailed(
            f"quantity for {package.name} must be between {package.min_quantity} "
            f"and {package.max_quantity}"
        )
    credits = (package.credits_micros + package.bonus_micros) * data.quantity
    for name, cap in (("monthly", data.monthly_cap_micros), ("daily", data.daily_cap_micros)):
        if cap is not None and cap < credits:
            raise ValidationFailed(
                f"the {name} cap ({format_credits(cap)}) is below one top-up "
                f"({format_credits(credits)} credits): nothing could ever be bought"
            )
    return credits


def set_rule(session: Session, *, customer_id: str, data: RuleInput, actor: Actor) -> AutoTopupRule:
    """Create or replace the workspace's rule and turn it on (consecutive failures reset)."""
    _authorize(session, customer_id, actor)
    package = packages.find_package(session, data.package_name)
    _check(data, package)
    method = active_method(session, customer_id)
    rule = session.get(AutoTopupRule, customer_id, with_for_update=True)
    before = snapshot(rule)
    now = utcnow()
    if rule is None:
        rule = AutoTopupRule(
            customer_id=customer_id,
            threshold_micros=data.threshold_micros,
            package_id=package.id,
            created_at=now,
        )
    rule.threshold_micros = data.threshold_micros
    rule.package_id = package.id
    rule.quantity = data.quantity
    rule.monthly_cap_micros = data.monthly_cap_micros
    rule.daily_cap_micros = data.daily_cap_micros
    rule.cooldown_s = data.cooldown_s
    rule.method_id = method.id if method is not None else None
    rule.status = "active"
    rule.consecutive_failures = 0
    rule.paused_reason = ""
    rule.updated_at = now
    session.add(rule)
    session.flush()
    record(
        session,
        actor=actor,
        action="autotopup.set",
        target_type="customer",
        target_id=customer_id,
        before=before,
        after=snapshot(rule),
    )
    return rule


def _rule(session: Session, customer_id: str) -> AutoTopupRule:
    rule = session.get(AutoTopupRule, customer_id)
    if rule is None:
        raise NotFound(f"workspace {customer_id} has no auto top-up rule")
    return rule


def set_status(
    session: Session, *, customer_id: str, status: str, actor: Actor, reason: str = ""
) -> AutoTopupRule:
    """Pause, resume ("active") or disable the rule. Resuming resets the failure count and
    needs a saved card."""
    if status not in ("active", "paused", "disabled"):
        raise ValidationFailed("status is active, paused or disabled")
    _authorize(session, customer_id, actor)
    rule = _rule(session, customer_id)
    if status == "active" and active_method(session, customer_id) is None:
        raise Conflict("save a card before turning automatic top-ups on")
    before = snapshot(rule)
    values: dict[str, Any] = {"status": status, "updated_at": utcnow()}
    if status == "active":
        values.update(consecutive_failures=0, paused_reason="")
    else:
        values["paused_reason"] = (reason or f"{status} by {actor.label}")[:500]
    session.execute(update(_rules).where(_rules.c.customer_id == customer_id).values(**values))
    session.refresh(rule)
    record(
        session,
        actor=actor,
        action=f"autotopup.{ {'active': 'resume', 'paused': 'pause'}.get(status, status) }",
        target_type="customer",
        target_id=customer_id,
        before=before,
        after=snapshot(rule),
        reason=reason,
    )
    return rule


def snapshot(rule: AutoTopupRule | None) -> dict[str, Any] | None:
    if rule is None:
        return None
    return {
        "status": rule.status,
        "threshold_micros": rule.threshold_micros,
        "package_id": rule.package_id,
        "quantity": rule.quantity,
        "monthly_cap_micros": rule.monthly_cap_micros,
        "daily_cap_micros": rule.daily_cap_micros,
        "cooldown_s": rule.cooldown_s,
    }


# --------------------------------------------------------------------------- the figures


def month_start(now: datetime) -> datetime:
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def day_start(now: datetime) -> datetime:
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


def spent_since(session: Session, customer_id: str, since: datetime) -> int:
    """Credits bought (or being bought) automatically since `since`."""
    total = session.execute(
        select(func.coalesce(func.sum(col(AutoTopupAttempt.credits_micros)), 0)).where(
            col(AutoTopupAttempt.customer_id) == customer_id,
            col(AutoTopupAttempt.status).in_(SPENDING),
            col(AutoTopupAttempt.created_at) >= since,
        )
    ).scalar_one()
    return int(total)


def cap_refusal(
    session: Session, rule: AutoTopupRule, credits_micros: int, now: datetime
) -> str | None:
    """Why one more top-up of credits_micros would pass a cap, or None when it fits."""
    if rule.monthly_cap_micros is not None:
        month = spent_since(session, rule.customer_id, month_start(now))
        if month + credits_micros > rule.monthly_cap_micros:
            return "monthly cap reached"
    if rule.daily_cap_micros is not None:
        day = spent_since(session, rule.customer_id, day_start(now))
        if day + credits_micros > rule.daily_cap_micros:
            return "daily cap reached"
    return None


def cooled_down(rule: AutoTopupRule, now: datetime) -> bool:
    return rule.last_attempt_at is None or rule.last_attempt_at <= now - timedelta(
        seconds=rule.cooldown_s
    )


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def describe_method(method: SavedPaymentMethod | None) -> dict[str, Any] | None:
    if method is None:
        return None
    return {
        "method_id": method.id,
        "provider": method.provider,
        "status": method.status,
        "brand": method.brand,
        "last4": method.last4,
        "exp_month": method.exp_month,
        "exp_year": method.exp_year,
        "consent_text": method.consent_text,
        "consent_terms_version": method.consent_terms_version,
        "consent_at": _iso(method.consent_at),
        "saved_by": method.created_by_label,
        "activated_at": _iso(method.activated_at),
    }


def describe_attempt(attempt: AutoTopupAttempt) -> dict[str, Any]:
    return {
        "attempt_id": attempt.id,
        "order_id": attempt.order_id,
        "status": attempt.status,
        "trigger": attempt.trigger,
        "credits": format_credits(attempt.credits_micros),
        "credits_micros": attempt.credits_micros,
        "amount_minor": attempt.amount_minor,
        "currency": attempt.currency,
        "available_micros_at_trigger": attempt.available_micros,
        "failure_code": attempt.failure_code,
        "failure_message": attempt.failure_message,
        "created_at": _iso(attempt.created_at),
        "resolved_at": _iso(attempt.resolved_at),
    }


def history(session: Session, customer_id: str, limit: int = 50) -> list[AutoTopupAttempt]:
    return list(
        session.exec(
            select(AutoTopupAttempt)
            .where(col(AutoTopupAttempt.customer_id) == customer_id)
            .order_by(col(AutoTopupAttempt.created_at).desc(), col(AutoTopupAttempt.id))
            .limit(limit)
        )
    )


def describe(session: Session, customer_id: str, *, now: datetime | None = None) -> dict[str, Any]:
    """The workspace's auto top-up as docs/contract.md shapes it (rule may be None)."""
    get_customer(session, customer_id)
    now = now or utcnow()
    rule = session.get(AutoTopupRule, customer_id)
    package = session.get(CreditPackage, rule.package_id) if rule is not None else None
    described_rule = None
    if rule is not None and package is not None:
        described_rule = {
            "status": rule.status,
            "below": format_credits(rule.threshold_micros),
            "threshold_micros": rule.threshold_micros,
            "package": package.name,
            "quantity": rule.quantity,
            "credits_per_topup": format_credits(
                (package.credits_micros + package.bonus_micros) * rule.quantity
            ),
            "monthly_cap_micros": rule.monthly_cap_micros,
            "daily_cap_micros": rule.daily_cap_micros,
            "cooldown_s": rule.cooldown_s,
            "consecutive_failures": rule.consecutive_failures,
            "max_consecutive_failures": MAX_CONSECUTIVE_FAILURES,
            "in_flight_attempt_id": rule.in_flight_attempt_id,
            "last_attempt_at": _iso(rule.last_attempt_at),
            "paused_reason": rule.paused_reason,
        }
    return {
        "customer_id": customer_id,
        "rule": described_rule,
        "payment_method": describe_method(active_method(session, customer_id)),
        "month_spent_micros": spent_since(session, customer_id, month_start(now)),
        "day_spent_micros": spent_since(session, customer_id, day_start(now)),
        "attempts": [describe_attempt(a) for a in history(session, customer_id, limit=20)],
    }


def all_rules(session: Session) -> list[AutoTopupRule]:
    """Every workspace's rule (the admin's list and the jobs backstop)."""
    return list(session.exec(select(AutoTopupRule).order_by(col(AutoTopupRule.customer_id))))


def rule_summaries(session: Session) -> dict[str, str]:
    """Every workspace's rule in a few words, by customer id (the admin's customer list)."""
    names = {p.id: p.name for p in session.exec(select(CreditPackage))}
    return {
        rule.customer_id: (
            f"{rule.status}: below {format_credits(rule.threshold_micros)}, "
            f"{names.get(rule.package_id, '?')} x{rule.quantity}"
            + (f" ({rule.consecutive_failures} failed)" if rule.consecutive_failures else "")
        )
        for rule in all_rules(session)
    }
