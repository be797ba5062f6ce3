"""Automatic top-ups: when a workspace's available credits fall below its rule's threshold, buy
the rule's package off-session with the saved card.

    trigger(customer)  ->  claim (one transaction)  ->  charge (the provider, no transaction)
                                                    ->  the signed webhook settles the order

The rails:
- One in flight: the claim is one conditional UPDATE of the rule (`in_flight_attempt_id IS
  NULL` and the cool-down passed), checked by its row count, and the attempt row carries the
  workspace id in a UNIQUE column until it resolves. A burst of requests crossing the
  threshold together makes one attempt and one order; the others' UPDATE matches no row.
- Caps and cool-down: checked in the claim's transaction, after the slot is won, so no two
  claims can both fit under a cap.
- Credits arrive only through the signed webhook, by the same settle path as every order
  (autotopup_results.py); the provider call carries the idempotency key
  `autotopup:<attempt id>`, so a retried charge never pays twice.
- Pause: three failures in a row pause the rule and tell the members (autotopup_results).

The gateway calls trigger() on a detached task after a settlement that charged a workspace with
a rule (proxy/settlement.py); the jobs loop calls check_all() as the backstop, which also
retries the charge of attempts whose provider answer was lost.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import update
from sqlmodel import Session, col, select

from creditdash.accounts.customers import get_customer
from creditdash.billing import ledger
from creditdash.billing.payments import autotopup_results, autotopup_rules, orders, placing
from creditdash.billing.payments.autotopup_models import (
    AutoTopupAttempt,
    AutoTopupRule,
    SavedPaymentMethod,
)
from creditdash.billing.payments.models import CreditPackage, PaymentOrder
from creditdash.billing.payments.providers import (
    SANDBOX_TEST_CARDS,
    OffSessionCharge,
    ProviderFailed,
    provider_named,
    webhook_secrets,
)
from creditdash.billing.payments.webhooks import apply_event, verify_event
from creditdash.core import db
from creditdash.core.audit import Actor
from creditdash.core.errors import NotFound, ValidationFailed
from creditdash.core.ids import new_id
from creditdash.core.settings import Settings, get_settings
from creditdash.core.timeutil import utcnow
from creditdash.routes import AUTOTOPUP_PATH

log = logging.getLogger(__name__)

AUTOTOPUP_ACTOR = Actor(label="autotopup")
# An attempt whose charge answer never reached us (a crash, a timeout) is charged again, with
# the same idempotency key, after this long.
RETRY_CHARGE_AFTER_S = 120
_rules = AutoTopupRule.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Claimed:
    attempt_id: str
    order_id: str


# ---------------------------------------------------------------------------- the trigger


def trigger(customer_id: str, *, source: str = "gateway") -> str | None:
    """Buy credits for the workspace if its rule says so now; the attempt's id, or None when
    nothing was due (or another caller is already buying)."""
    try:
        with db.session_scope() as session:
            claimed = claim(session, customer_id=customer_id, source=source)
    except ProviderFailed as exc:
        log.warning("auto top-up of %s not opened: %s", customer_id, exc.message)
        return None
    if claimed is None:
        return None
    charge(claimed.attempt_id)
    return claimed.attempt_id


def claim(
    session: Session, *, customer_id: str, source: str, now: datetime | None = None
) -> Claimed | None:
    """Open one automatic order if the rule is due and the workspace has none in flight."""
    now = now or utcnow()
    rule = session.get(AutoTopupRule, customer_id)
    if rule is None or rule.status != "active" or rule.method_id is None:
        return None
    if rule.in_flight_attempt_id is not None or not autotopup_rules.cooled_down(rule, now):
        return None
    available = ledger.get_balance(
        session, ledger.customer_account_id(session, customer_id)
    ).available_micros
    if available >= rule.threshold_micros:
        return None
    package = session.get(CreditPackage, rule.package_id)
    method = session.get(SavedPaymentMethod, rule.method_id)
    if package is None or method is None or method.status != "active":
        return None
    credits = (package.credits_micros + package.bonus_micros) * rule.quantity
    if autotopup_rules.cap_refusal(session, rule, credits, now) is not None:
        return None  # read-only: a capped workspace's settlements write nothing here
    attempt_id = new_id("att")
    won = session.execute(
        update(_rules)
        .where(
            _rules.c.customer_id == customer_id,
            _rules.c.status == "active",
            _rules.c.method_id == method.id,
            _rules.c.in_flight_attempt_id.is_(None),
            (_rules.c.last_attempt_at.is_(None))
            | (_rules.c.last_attempt_at <= now - timedelta(seconds=rule.cooldown_s)),
        )
        .values(in_flight_attempt_id=attempt_id, last_attempt_at=now, updated_at=now)
    )
    if db.rowcount(won) != 1:
        return None
    # Again now that no other attempt of the workspace can be in flight: the check above may
    # have read the sums before a racing attempt was written.
    refusal = autotopup_rules.cap_refusal(session, rule, credits, now)
    if refusal is not None:
        # Give the slot back (and the cool-down): nothing was bought.
        session.execute(
            update(_rules)
            .where(_rules.c.customer_id == customer_id)
            .values(in_flight_attempt_id=None, last_attempt_at=rule.last_attempt_at)
        )
        log.info("auto top-up of %s skipped: %s", customer_id, refusal)
        return None
    order = orders.create_order(
        session,
        customer_id=customer_id,
        package=package,
        quantity=rule.quantity,
        actor=AUTOTOPUP_ACTOR,
        accept_terms=True,  # the consent stored with the card covers these orders
    )
    # Paid where the card was saved, whatever the checkout provider is today.
    order.provider = method.provider
    session.add(order)
    session.add(
        AutoTopupAttempt(
            id=attempt_id,
            customer_id=customer_id,
            in_flight_key=customer_id,
            order_id=order.id,
            method_id=method.id,
            provider=method.provider,
            trigger=source[:16],
            available_micros=available,
            credits_micros=order.credits_micros + order.bonus_micros,
            amount_minor=order.gross_minor,
            currency=order.currency,
            created_at=now,
        )
    )
    session.flush()  # the UNIQUE in-flight key refuses a second attempt here, whatever the race
    orders.note(session, order, AUTOTOPUP_ACTOR.label, f"automatic top-up {attempt_id}")
    return Claimed(attempt_id, order.id)


# ----------------------------------------------------------------------------- the charge


def charge(attempt_id: str, *, settings: Settings | None = None) -> str:
    """Charge the attempt's card off-session, outside any transaction; what happened:
    submitted (the webhook settles), declined, requires_action, unclear, or not_charging."""
    settings = settings or get_settings()
    with db.session_scope(readonly=True) as session:
        attempt = session.get(AutoTopupAttempt, attempt_id)
        if attempt is None or attempt.status != "charging":
            return "not_charging"
        order = session.get(PaymentOrder, attempt.order_id)
        method = session.get(SavedPaymentMethod, attempt.method_id)
        assert order is not None and method is not None
        for row in (attempt, order, method):
            session.expunge(row)
    try:
        provider = provider_named(attempt.provider, settings)
        answer = provider.charge_off_session(order, method, attempt_id=attempt.id)
    except ProviderFailed as exc:
        if not exc.definite:
            # The money may have moved: the attempt stays in flight and the jobs loop asks
            # again with the same idempotency key.
            log.warning("auto top-up %s unclear: %s", attempt.id, exc.message)
            return "unclear"
        answer = OffSessionCharge("declined", code="provider_refused", message=exc.message)
    _record_answer(attempt, answer)
    for body in answer.events:
        deliver_sandbox_event(body, settings)
    return answer.outcome


def _record_answer(attempt: AutoTopupAttempt, answer: OffSessionCharge) -> None:
    with db.session_scope() as session:
        if answer.payment_id:
            session.execute(
                update(AutoTopupAttempt)
                .where(
                    col(AutoTopupAttempt.id) == attempt.id,
                    col(AutoTopupAttempt.provider_payment_id).is_(None),
                )
                .values(provider_payment_id=answer.payment_id)
            )
        if answer.outcome in ("declined", "requires_action"):
            autotopup_results.fail_attempt(
                session,
                attempt.id,
                requires_action=answer.outcome == "requires_action",
                code=answer.code or "card_declined",
                message=answer.message,
                actor_label=f"{attempt.provider}:charge",
            )


def deliver_sandbox_event(body: str, settings: Settings) -> None:
    """The sandbox's webhook, signed like Stripe's and taken through the same verification
    and handlers as /webhooks/sandbox, in its own transaction."""
    import stripe  # on first use, like everywhere else

    secrets_ = webhook_secrets("sandbox", settings)
    header = stripe.WebhookSignature.generate_signature_header(body, secrets_[0])
    event = verify_event(body.encode(), header, secrets_)
    with db.session_scope() as session:
        apply_event(session, provider="sandbox", event=event)


# ------------------------------------------------------------------------------- the card


def open_setup(
    method_id: str, *, customer_id: str | None = None, settings: Settings | None = None
) -> SavedPaymentMethod:
    """After the commit of start_setup: the hosted page that takes the card (or the one the
    setup already has)."""
    settings = settings or get_settings()
    with db.session_scope(readonly=True) as session:
        method = session.get(SavedPaymentMethod, method_id)
        if method is None or (customer_id is not None and method.customer_id != customer_id):
            raise NotFound(f"no card setup {method_id!r}")
        email = get_customer(session, method.customer_id).email
        rule = session.get(AutoTopupRule, method.customer_id)
        package = session.get(CreditPackage, rule.package_id) if rule is not None else None
        session.expunge(method)
    if method.status != "pending":
        raise ValidationFailed(f"card setup {method.id} is {method.status}")
    if method.setup_url:
        return method
    base = settings.resolved_public_url()
    page = provider_named(method.provider, settings).create_setup(
        method,
        email=email,
        currency=package.currency if package is not None else "EUR",
        success_url=f"{base}{AUTOTOPUP_PATH}?setup=done&method={method.id}",
        cancel_url=f"{base}{AUTOTOPUP_PATH}?setup=cancelled&method={method.id}",
    )
    with db.session_scope() as session:
        session.execute(
            update(SavedPaymentMethod)
            .where(
                col(SavedPaymentMethod.id) == method.id,
                col(SavedPaymentMethod.setup_session_id).is_(None),
            )
            .values(
                setup_session_id=page.session_id,
                setup_url=page.url,
                customer_ref=page.customer_ref,
            )
        )
        stored = session.get(SavedPaymentMethod, method.id)
        assert stored is not None
        session.expunge(stored)
    return stored


def sandbox_setup_method(session_id: str) -> SavedPaymentMethod | None:
    with db.session_scope(readonly=True) as session:
        method = session.exec(
            select(SavedPaymentMethod).where(
                col(SavedPaymentMethod.provider) == "sandbox",
                col(SavedPaymentMethod.setup_session_id) == session_id,
            )
        ).first()
        if method is not None:
            session.expunge(method)
        return method


def sandbox_setup_events(method: SavedPaymentMethod, card_number: str) -> list[str]:
    """What Stripe would send after a setup-mode checkout: the card attached to the customer,
    then the setup intent succeeded. ValidationFailed for a number that is no test card."""
    number = "".join(card_number.split())
    if number not in SANDBOX_TEST_CARDS:
        raise ValidationFailed("use one of the listed test cards")
    brand, _behaviour = SANDBOX_TEST_CARDS[number]
    method_ref = "pm_sandbox_" + secrets.token_urlsafe(12)
    now = int(time.time())
    attached = {
        "id": method_ref,
        "object": "payment_method",
        "type": "card",
        "customer": method.customer_ref,
        "card": {"brand": brand, "last4": number[-4:], "exp_month": 12, "exp_year": 2034},
    }
    intent = {
        "id": "seti_" + secrets.token_urlsafe(12),
        "object": "setup_intent",
        "status": "succeeded",
        "customer": method.customer_ref,
        "payment_method": method_ref,
        "usage": "off_session",
        "metadata": {"setup_id": method.id, "customer_id": method.customer_id},
    }
    return [
        _event("payment_method.attached", attached, now),
        _event("setup_intent.succeeded", intent, now),
    ]


def _event(event_type: str, obj: dict[str, Any], created: int) -> str:
    return json.dumps(
        {
            "id": "evt_sandbox_" + secrets.token_urlsafe(18),
            "object": "event",
            "type": event_type,
            "created": created,
            "livemode": False,
            "data": {"object": obj},
        }
    )


# --------------------------------------------------------------------------- the backstop


def customers_with_rules() -> list[str]:
    with db.session_scope(readonly=True) as session:
        return list(
            session.exec(
                select(AutoTopupRule.customer_id).where(col(AutoTopupRule.status) == "active")
            ).all()
        )


def stale_attempts(now: datetime | None = None) -> list[str]:
    """Attempts still charging with no answer stored after RETRY_CHARGE_AFTER_S."""
    cutoff = (now or utcnow()) - timedelta(seconds=RETRY_CHARGE_AFTER_S)
    with db.session_scope(readonly=True) as session:
        return list(
            session.exec(
                select(AutoTopupAttempt.id).where(
                    col(AutoTopupAttempt.status) == "charging",
                    col(AutoTopupAttempt.provider_payment_id).is_(None),
                    col(AutoTopupAttempt.created_at) < cutoff,
                )
            ).all()
        )


def check_all() -> int:
    """The jobs loop's pass: retry charges whose answer was lost, then trigger every active
    rule (the same claim: idempotent with the gateway's). How many attempts it started."""
    for attempt_id in stale_attempts():
        try:
            charge(attempt_id)
        except Exception:
            log.exception("retrying auto top-up %s failed", attempt_id)
    started = 0
    for customer_id in customers_with_rules():
        try:
            started += trigger(customer_id, source="jobs") is not None
        except Exception:
            log.exception("auto top-up check for %s failed", customer_id)
    return started


def has_active_rule(session: Session, customer_id: str) -> bool:
    """Whether settlements of this workspace should ask for the trigger (the key cache)."""
    status = session.exec(
        select(AutoTopupRule.status).where(col(AutoTopupRule.customer_id) == customer_id)
    ).first()
    return status == "active"


def pay_on_session(*, customer_id: str, order_id: str, actor: Actor) -> placing.Placement:
    """After an automatic top-up failed: a normal checkout for the same package, paid by the
    member now (3-D Secure and all). Only for the workspace's own automatic orders."""
    with db.session_scope(readonly=True) as session:
        order = orders.get_order(session, order_id, customer_id=customer_id)
        attempt = session.exec(
            select(AutoTopupAttempt).where(col(AutoTopupAttempt.order_id) == order.id)
        ).first()
        if attempt is None:
            raise NotFound(f"no automatic order {order_id!r}")
        package_name, quantity = order.package_name, order.quantity
    return placing.place(
        customer_id=customer_id, package_name=package_name, quantity=quantity, actor=actor
    )


def save_sandbox_card(
    *, customer_id: str, card_number: str, actor: Actor, settings: Settings | None = None
) -> SavedPaymentMethod:
    """A sandbox test card saved for the workspace without the hosted page (test deployments
    and scripts): the same consent row, setup and signed events as the page makes. Refused
    when new cards go to Stripe."""
    settings = settings or get_settings()
    with db.session_scope() as session:
        pending = autotopup_rules.start_setup(
            session, customer_id=customer_id, actor=actor, accept=True
        )
        if pending.provider != "sandbox":
            raise ValidationFailed("cards are saved at Stripe here; use the dashboard")
        method_id = pending.id
    opened = open_setup(method_id, customer_id=customer_id, settings=settings)
    for body in sandbox_setup_events(opened, card_number):
        deliver_sandbox_event(body, settings)
    with db.session_scope(readonly=True) as session:
        saved = session.get(SavedPaymentMethod, method_id)
        assert saved is not None
        session.expunge(saved)
    return saved
