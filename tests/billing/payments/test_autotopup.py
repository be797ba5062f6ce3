"""Automatic top-ups on both databases, with the sandbox and with Stripe (the real library
against the fake Stripe API): one order per crossing however many callers race, credits only
through the signed webhook and only once, caps, declines, 3-D Secure, and the pause."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import func, select

from creditdash.accounts import users
from creditdash.accounts.models import Membership
from creditdash.billing.payments import autotopup, autotopup_rules
from creditdash.billing.payments.autotopup_models import (
    AutoTopupAttempt,
    AutoTopupRule,
    SavedPaymentMethod,
)
from creditdash.billing.payments.models import PaymentOrder
from creditdash.core import db
from creditdash.core.audit import CLI, Actor
from creditdash.core.errors import Conflict, Forbidden, ValidationFailed
from creditdash.core.outbox import Event
from tests.billing.payments.fake_stripe import ACTION_CARD, DECLINE_CARD, SUCCESS_CARD
from tests.billing.payments.helpers import spend, together
from tests.billing.shop import STRIPE_SECRET, Shop

STARTER = 10_000_000  # the Starter package: 10 credits, 10.00 EUR, no bonus


def save_card(shop: Shop, card: str = SUCCESS_CARD, *, stripe: bool = False) -> SavedPaymentMethod:
    """A member consents and enters the card on the provider's page; its webhooks arrive."""
    with db.session_scope() as session:
        pending = autotopup_rules.start_setup(
            session, customer_id=shop.customer_id, actor=CLI, accept=True
        )
        session.expunge(pending)
    opened = autotopup.open_setup(pending.id)
    assert opened.setup_session_id and opened.setup_url
    if stripe:
        shop.stripe.complete_setup(opened.setup_session_id, card)
        answers = shop.stripe.deliver()
        assert all(a.status_code == 200 for a in answers)
    else:
        for body in autotopup.sandbox_setup_events(opened, card):
            assert shop.post_event(json.loads(body)).status_code == 200
    with db.session_scope(readonly=True) as session:
        method = session.get(SavedPaymentMethod, pending.id)
        assert method is not None and method.status == "active"
        session.expunge(method)
        return method


def set_rule(shop: Shop, **fields: Any) -> None:
    data = autotopup_rules.RuleInput(
        threshold_micros=fields.pop("threshold_micros", 5_000_000),
        package_name=fields.pop("package_name", "Starter"),
        cooldown_s=fields.pop("cooldown_s", 0),
        **fields,
    )
    with db.session_scope() as session:
        autotopup_rules.set_rule(session, customer_id=shop.customer_id, data=data, actor=CLI)


def rule(shop: Shop) -> AutoTopupRule:
    with db.session_scope(readonly=True) as session:
        found = session.get(AutoTopupRule, shop.customer_id)
        assert found is not None
        session.expunge(found)
        return found


def attempts(shop: Shop) -> list[AutoTopupAttempt]:
    with db.session_scope(readonly=True) as session:
        found = list(
            session.execute(
                select(AutoTopupAttempt)
                .where(AutoTopupAttempt.customer_id == shop.customer_id)  # type: ignore[arg-type]
                .order_by(AutoTopupAttempt.created_at)  # type: ignore[arg-type]
            ).scalars()
        )
        for row in found:
            session.expunge(row)
        return found


def order_count(shop: Shop) -> int:
    with db.session_scope(readonly=True) as session:
        return int(
            session.execute(
                select(func.count(PaymentOrder.id)).where(  # type: ignore[arg-type]
                    PaymentOrder.customer_id == shop.customer_id  # type: ignore[arg-type]
                )
            ).scalar_one()
        )


def events(shop: Shop, type_: str) -> list[dict[str, Any]]:
    with db.session_scope(readonly=True) as session:
        rows = session.execute(
            select(Event).where(
                Event.customer_id == shop.customer_id,  # type: ignore[arg-type]
                Event.type == type_,  # type: ignore[arg-type]
            )
        ).scalars()
        return [row.data() for row in rows]


def stripe_webhooks(shop: Shop) -> None:
    shop.stripe.webhook_url = f"{shop.base_url}/webhooks/stripe"
    shop.stripe.webhook_secret = STRIPE_SECRET


# ------------------------------------------------------------------------- the card


def test_saving_a_card_needs_consent_and_records_it(shop: Shop) -> None:
    with db.session_scope() as session, pytest.raises(ValidationFailed, match="consent"):
        autotopup_rules.start_setup(session, customer_id=shop.customer_id, actor=CLI, accept=False)
    method = save_card(shop)
    assert (method.brand, method.last4, method.exp_month, method.exp_year) == (
        "visa",
        "4242",
        12,
        2034,
    )
    assert method.provider == "sandbox" and method.method_ref
    assert "charge it without asking me each time" in method.consent_text
    assert method.consent_terms_version == "2026-11-01" and method.consent_at is not None
    # A second card replaces the first; the provider's customer is reused.
    second = save_card(shop, "5555555555554444")
    assert second.customer_ref == method.customer_ref
    with db.session_scope(readonly=True) as session:
        first = session.get(SavedPaymentMethod, method.id)
        assert first is not None and first.status == "removed"
        assert autotopup_rules.active_method(session, shop.customer_id).id == second.id  # type: ignore[union-attr]


def test_removing_the_card_disables_the_rule(shop: Shop) -> None:
    save_card(shop)
    set_rule(shop)
    assert rule(shop).method_id is not None
    with db.session_scope() as session:
        assert autotopup_rules.remove_method(session, customer_id=shop.customer_id, actor=CLI)
    found = rule(shop)
    assert found.status == "disabled" and found.method_id is None
    assert autotopup.trigger(shop.customer_id) is None
    with db.session_scope() as session, pytest.raises(Conflict, match="save a card"):
        autotopup_rules.set_status(
            session, customer_id=shop.customer_id, status="active", actor=CLI
        )


def test_members_without_the_permission_cannot_change_anything(shop: Shop) -> None:
    with db.session_scope() as session:
        user = users.create_user(session, email="viewer@buyer.example.com", password=None)
        assert user.id is not None
        session.add(Membership(customer_id=shop.customer_id, user_id=user.id, role="viewer"))
        viewer = Actor.user(user.id, user.email)
    with db.session_scope() as session, pytest.raises(Forbidden):
        autotopup_rules.start_setup(
            session, customer_id=shop.customer_id, actor=viewer, accept=True
        )
    data = autotopup_rules.RuleInput(threshold_micros=1_000_000, package_name="Starter")
    with db.session_scope() as session, pytest.raises(Forbidden):
        autotopup_rules.set_rule(session, customer_id=shop.customer_id, data=data, actor=viewer)


def test_rule_input_is_checked(shop: Shop) -> None:
    save_card(shop)
    with pytest.raises(ValidationFailed, match="below one top-up"):
        set_rule(shop, monthly_cap_micros=STARTER - 1)
    with pytest.raises(ValidationFailed, match="cannot be bought automatically"):
        set_rule(shop, package_name="Custom")
    with pytest.raises(ValidationFailed, match="threshold"):
        set_rule(shop, threshold_micros=0)
    with pytest.raises(ValidationFailed, match="cool-down"):
        set_rule(shop, cooldown_s=-1)


# ---------------------------------------------------------------------- exactly once


def test_racing_triggers_open_one_order_and_credit_it_once(shop: Shop) -> None:
    save_card(shop)
    set_rule(shop, threshold_micros=5_000_000)
    results = together(*[lambda: autotopup.trigger(shop.customer_id) for _ in range(16)])
    won = [r for r in results if isinstance(r, str)]
    assert not [r for r in results if isinstance(r, Exception)]
    assert len(won) == 1
    [attempt] = attempts(shop)
    assert attempt.id == won[0] and attempt.status == "succeeded" and attempt.in_flight_key is None
    assert order_count(shop) == 1
    assert shop.available() == STARTER
    order = shop.get(attempt.order_id)
    assert order.status == "paid" and order.provider_payment_id == f"pi_sandbox_{attempt.id}"
    # Above the threshold now: nothing more is bought, by the gateway or the backstop.
    assert autotopup.trigger(shop.customer_id) is None
    assert autotopup.check_all() == 0
    assert rule(shop).in_flight_attempt_id is None
    shop.verify_ledger()


def test_stripe_off_session_payment_credits_only_through_the_webhook(stripe_shop: Shop) -> None:
    shop = stripe_shop
    stripe_webhooks(shop)
    method = save_card(shop, stripe=True)
    assert method.customer_ref in shop.stripe.customers
    assert method.method_ref in shop.stripe.methods and method.last4 == "4242"
    setup = next(c for c in shop.stripe.calls if c.path == "/v1/checkout/sessions")
    assert setup.params["mode"] == "setup" and setup.params["customer"] == method.customer_ref
    assert setup.params["setup_intent_data"]["metadata"]["setup_id"] == method.id
    set_rule(shop, threshold_micros=5_000_000)

    results = together(*[lambda: autotopup.trigger(shop.customer_id) for _ in range(12)])
    won = [r for r in results if isinstance(r, str)]
    assert len(won) == 1 and not [r for r in results if isinstance(r, Exception)]
    [call] = [c for c in shop.stripe.calls if c.path == "/v1/payment_intents"]
    assert call.idempotency_key == f"autotopup:{won[0]}"
    assert call.params["off_session"] == "true" and call.params["confirm"] == "true"
    assert call.params["metadata"]["attempt_id"] == won[0]
    # The payment went through at Stripe, but nothing is credited before its signed webhook.
    assert shop.available() == 0
    [attempt] = attempts(shop)
    assert attempt.status == "charging" and attempt.provider_payment_id
    [event] = list(shop.stripe.outbox)
    [answer] = shop.stripe.deliver()
    assert answer.json()["outcome"] == "credited"
    assert shop.available() == STARTER
    # Replayed as it was (the same event id), and as a second event about the same payment.
    assert shop.stripe.post(event).json()["outcome"] == "duplicate"
    again = shop.stripe.post({**event, "id": "evt_second_copy"}).json()
    assert again["outcome"] == "already_settled"
    # A late failure for the paid attempt changes nothing.
    failed = {**event, "id": "evt_late_failure", "type": "payment_intent.payment_failed"}
    assert shop.stripe.post(failed).json()["outcome"] == "ignored"
    assert shop.available() == STARTER
    [attempt] = attempts(shop)
    assert attempt.status == "succeeded" and rule(shop).consecutive_failures == 0
    assert shop.get(attempt.order_id).status == "paid"
    shop.verify_ledger()


def test_a_checkout_payment_intent_event_is_not_an_automatic_top_up(stripe_shop: Shop) -> None:
    shop = stripe_shop
    order = shop.order("Starter")
    event = {
        "id": "evt_pi_checkout",
        "object": "event",
        "type": "payment_intent.succeeded",
        "data": {
            "object": {
                "id": "pi_checkout",
                "object": "payment_intent",
                "amount": order.gross_minor,
                "amount_received": order.gross_minor,
                "currency": "eur",
                "metadata": {"order_id": order.id},
            }
        },
    }
    assert shop.post_event(event, provider="stripe").json()["outcome"] == "not_applicable"
    assert shop.available() == 0 and shop.get(order.id).status == "awaiting_payment"


def test_caps_and_cool_down_stop_the_next_top_up(shop: Shop) -> None:
    save_card(shop)
    set_rule(shop, monthly_cap_micros=STARTER, cooldown_s=0)
    assert autotopup.trigger(shop.customer_id) is not None
    assert shop.available() == STARTER
    spend(shop, STARTER, "spent-all")
    # Below the threshold again, but one more Starter would pass the monthly cap.
    assert autotopup.trigger(shop.customer_id) is None
    assert autotopup.check_all() == 0
    assert len(attempts(shop)) == 1 and rule(shop).in_flight_attempt_id is None
    # A daily cap of two top-ups and a long cool-down: the cool-down stops the second.
    set_rule(shop, monthly_cap_micros=None, daily_cap_micros=3 * STARTER, cooldown_s=3600)
    assert autotopup.trigger(shop.customer_id) is None  # the first attempt was just now
    set_rule(shop, monthly_cap_micros=None, daily_cap_micros=2 * STARTER, cooldown_s=0)
    assert autotopup.trigger(shop.customer_id) is not None
    spend(shop, STARTER, "spent-all-again")
    assert autotopup.trigger(shop.customer_id) is None  # the daily cap: two today
    assert shop.available() == 0 and len(attempts(shop)) == 2
    shop.verify_ledger()


# ------------------------------------------------------------------------- failures


def test_a_decline_then_a_success(shop: Shop) -> None:
    save_card(shop, DECLINE_CARD)
    set_rule(shop)
    attempt_id = autotopup.trigger(shop.customer_id)
    assert attempt_id is not None
    [attempt] = attempts(shop)
    assert attempt.status == "failed" and attempt.failure_code == "card_declined"
    order = shop.get(attempt.order_id)
    assert order.status == "cancelled" and shop.available() == 0
    assert rule(shop).consecutive_failures == 1 and rule(shop).status == "active"
    [failed] = events(shop, "autotopup.failed")
    assert failed["attempt_id"] == attempt_id and failed["paused"] is False
    assert failed["pay_path"] == f"/billing/autotopup?pay={order.id}"
    # The sandbox's payment_failed webhook arrived too; the failure was counted once.
    assert shop.event_count() == 3  # two setup events and the failure

    save_card(shop, SUCCESS_CARD)
    assert autotopup.trigger(shop.customer_id) is not None
    assert shop.available() == STARTER
    assert rule(shop).consecutive_failures == 0
    assert [a.status for a in attempts(shop)] == ["failed", "succeeded"]
    shop.verify_ledger()


def test_requires_action_cancels_and_asks_to_pay_on_session(stripe_shop: Shop) -> None:
    shop = stripe_shop
    stripe_webhooks(shop)
    save_card(shop, ACTION_CARD, stripe=True)
    set_rule(shop)
    assert autotopup.trigger(shop.customer_id) is not None
    [attempt] = attempts(shop)
    assert attempt.status == "requires_action"
    assert attempt.failure_code == "authentication_required"
    assert shop.get(attempt.order_id).status == "cancelled"
    # Stripe's own payment_failed event for the same intent finds the attempt resolved.
    [answer] = shop.stripe.deliver()
    assert answer.json()["outcome"] == "ignored"
    [failed] = events(shop, "autotopup.failed")
    assert failed["requires_action"] is True and "3-D Secure" in failed["reason"]
    assert shop.available() == 0 and rule(shop).consecutive_failures == 1
    shop.verify_ledger()


def test_three_declines_pause_the_rule_and_tell_the_members_once(
    stripe_shop: Shop,
) -> None:
    shop = stripe_shop
    stripe_webhooks(shop)
    save_card(shop, DECLINE_CARD, stripe=True)
    set_rule(shop)
    for _ in range(3):
        assert autotopup.trigger(shop.customer_id) is not None
        shop.stripe.deliver()  # the payment_failed events: already counted
    found = rule(shop)
    assert found.status == "paused" and found.consecutive_failures == 3
    assert "3 automatic top-ups in a row failed" in found.paused_reason
    # Paused: neither the gateway's trigger nor the backstop buys anything.
    assert autotopup.trigger(shop.customer_id) is None and autotopup.check_all() == 0
    assert [a.status for a in attempts(shop)] == ["failed"] * 3
    assert len(events(shop, "autotopup.failed")) == 3
    [paused] = events(shop, "autotopup.paused")
    assert paused["pay_path"].startswith("/billing/autotopup?pay=")
    assert shop.available() == 0
    shop.verify_ledger()
    with db.session_scope() as session:
        autotopup_rules.set_status(
            session, customer_id=shop.customer_id, status="active", actor=CLI
        )
    assert rule(shop).consecutive_failures == 0 and rule(shop).status == "active"


def test_a_lost_charge_answer_is_retried_with_the_same_key(stripe_shop: Shop) -> None:
    shop = stripe_shop
    stripe_webhooks(shop)
    save_card(shop, stripe=True)
    set_rule(shop)
    with db.session_scope() as session:
        claimed = autotopup.claim(session, customer_id=shop.customer_id, source="test")
    assert claimed is not None
    # The process died before it charged: the backstop charges it (once), and again after a
    # lost answer the provider's idempotency key returns the first payment.
    assert autotopup.charge(claimed.attempt_id) == "submitted"
    with db.session_scope() as session:
        session.execute(
            AutoTopupAttempt.__table__.update()  # type: ignore[attr-defined]
            .where(AutoTopupAttempt.__table__.c.id == claimed.attempt_id)  # type: ignore[attr-defined]
            .values(provider_payment_id=None)
        )
    assert autotopup.charge(claimed.attempt_id) == "submitted"
    calls = [c for c in shop.stripe.calls if c.path == "/v1/payment_intents"]
    assert {c.idempotency_key for c in calls} == {f"autotopup:{claimed.attempt_id}"}
    assert len(shop.stripe.intents) == 1
    shop.stripe.deliver()
    assert shop.available() == STARTER
    shop.verify_ledger()


def test_setup_events_out_of_order_still_save_the_card(shop: Shop) -> None:
    with db.session_scope() as session:
        pending = autotopup_rules.start_setup(
            session, customer_id=shop.customer_id, actor=CLI, accept=True
        )
        session.expunge(pending)
    opened = autotopup.open_setup(pending.id)
    attached, succeeded = autotopup.sandbox_setup_events(opened, SUCCESS_CARD)
    assert shop.post_event(json.loads(succeeded)).json()["outcome"] == "card_saved"
    assert shop.post_event(json.loads(attached)).json()["outcome"] == "card_details"
    assert shop.post_event(json.loads(succeeded)).json()["outcome"] == "duplicate"
    with db.session_scope(readonly=True) as session:
        method = session.get(SavedPaymentMethod, pending.id)
        assert method is not None and method.status == "active" and method.last4 == "4242"


# ---------------------------------------------------------------------------- the CLI


def _cli(*args: str) -> Any:
    from click.testing import CliRunner

    from creditdash.cli import main

    return CliRunner().invoke(main, ["autotopup", *args])


def test_cli_set_show_pause_resume(shop: Shop) -> None:
    refused = _cli("set", "--customer", shop.customer_id, "--below", "5", "--package", "Nope")
    assert refused.exit_code == 1 and "no credit package" in refused.output
    save_card(shop)
    done = _cli(
        "set", "--customer", shop.customer_id, "--below", "5", "--package", "starter",
        "--monthly-cap", "30", "--daily-cap", "20", "--cooldown-s", "0", "--json",
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    shown = json.loads(done.output)
    assert shown["rule"]["status"] == "active" and shown["rule"]["threshold_micros"] == 5_000_000
    assert shown["rule"]["package"] == "Starter" and shown["rule"]["cooldown_s"] == 0
    assert shown["rule"]["monthly_cap_micros"] == 30_000_000
    assert shown["payment_method"]["last4"] == "4242"
    assert "without asking me each time" in shown["payment_method"]["consent_text"]
    assert autotopup.trigger(shop.customer_id, source="cli") is not None
    text = _cli("show", shop.customer_id)
    assert text.exit_code == 0 and "succeeded" in text.output and "visa ending 4242" in text.output
    paused = json.loads(_cli("pause", shop.customer_id, "--reason", "audit", "--json").output)
    assert paused["rule"]["status"] == "paused" and paused["rule"]["paused_reason"] == "audit"
    spend(shop, STARTER, "cli-spend")
    assert autotopup.trigger(shop.customer_id) is None
    resumed = json.loads(_cli("resume", shop.customer_id, "--json").output)
    assert resumed["rule"]["status"] == "active"
    assert len(resumed["attempts"]) == 1 and resumed["month_spent_micros"] == STARTER
    missing = _cli("show", "cus_nope")
    assert missing.exit_code == 1 and "error:" in missing.output


def test_the_sandbox_setup_page_saves_a_test_card(shop: Shop) -> None:
    import httpx

    with db.session_scope() as session:
        pending = autotopup_rules.start_setup(
            session, customer_id=shop.customer_id, actor=CLI, accept=True
        )
        session.expunge(pending)
    opened = autotopup.open_setup(pending.id)
    assert opened.setup_url and "/sandbox/setup/" in opened.setup_url
    page = httpx.get(opened.setup_url)
    assert page.status_code == 200 and "4000000000000002" in page.text
    assert "charge it without asking me each time" in page.text
    save = f"{opened.setup_url}/save"
    refused = httpx.post(save, data={"card_number": SUCCESS_CARD})
    assert refused.status_code == 400 and "consent" in refused.text
    wrong = httpx.post(save, data={"card_number": "4111111111111111", "consent": "yes"})
    assert wrong.status_code == 400
    done = httpx.post(save, data={"card_number": DECLINE_CARD, "consent": "yes"})
    assert done.status_code == 303
    assert done.headers["location"] == f"/billing/autotopup?setup=done&method={pending.id}"
    with db.session_scope(readonly=True) as session:
        method = autotopup_rules.active_method(session, shop.customer_id)
        assert method is not None and method.id == pending.id and method.last4 == "0002"
    again = httpx.post(save, data={"card_number": SUCCESS_CARD, "consent": "yes"})
    assert again.status_code == 409


def test_cli_sandbox_card(shop: Shop) -> None:
    saved = _cli("sandbox-card", "--customer", shop.customer_id, "--decline", "--json")
    assert saved.exit_code == 0, saved.output
    shown = json.loads(saved.output)
    assert shown["last4"] == "0002" and shown["status"] == "active"
    set_rule(shop)
    assert autotopup.trigger(shop.customer_id) is not None
    assert [a.status for a in attempts(shop)] == ["failed"]
    text = _cli("sandbox-card", "--customer", shop.customer_id)
    assert text.exit_code == 0 and "ending 4242" in text.output
    assert autotopup.trigger(shop.customer_id) is not None
    assert shop.available() == STARTER


def test_cli_sandbox_card_is_refused_with_stripe(stripe_shop: Shop) -> None:
    refused = _cli("sandbox-card", "--customer", stripe_shop.customer_id)
    assert refused.exit_code == 1 and "use the dashboard" in refused.output


def test_the_database_refuses_a_second_attempt_in_flight(shop: Shop) -> None:
    from sqlalchemy.exc import IntegrityError

    save_card(shop, DECLINE_CARD)
    set_rule(shop)
    with db.session_scope() as session:
        claimed = autotopup.claim(session, customer_id=shop.customer_id, source="test")
    assert claimed is not None
    # Even a path that skipped the rule's conditional claim cannot write a second attempt.
    with db.session_scope() as session:
        first = session.get(AutoTopupAttempt, claimed.attempt_id)
        assert first is not None and first.in_flight_key == shop.customer_id
        order_id, method_id = first.order_id, first.method_id
    other = shop.order("Starter")
    with pytest.raises(IntegrityError), db.session_scope() as session:
        session.add(
            AutoTopupAttempt(
                id="att_second",
                customer_id=shop.customer_id,
                in_flight_key=shop.customer_id,
                order_id=other.id,
                method_id=method_id,
                provider="sandbox",
                trigger="test",
                available_micros=0,
                credits_micros=STARTER,
                amount_minor=1000,
                currency="EUR",
            )
        )
    with db.session_scope() as session:
        assert autotopup.claim(session, customer_id=shop.customer_id, source="test") is None
    # Once the first resolves (declined), the slot is free again.
    assert autotopup.charge(claimed.attempt_id) == "declined"
    assert shop.get(order_id).status == "cancelled"
    with db.session_scope() as session:
        assert autotopup.claim(session, customer_id=shop.customer_id, source="test") is not None


def test_after_a_decline_the_member_pays_the_same_package_on_session(shop: Shop) -> None:
    from creditdash.core.errors import NotFound
    from tests.factories import funded_customer

    save_card(shop, DECLINE_CARD)
    set_rule(shop)
    assert autotopup.trigger(shop.customer_id) is not None
    [attempt] = attempts(shop)
    placed = autotopup.pay_on_session(
        customer_id=shop.customer_id, order_id=attempt.order_id, actor=CLI
    )
    assert placed.order_id != attempt.order_id and placed.method == "checkout"
    assert placed.checkout_url and "/sandbox/checkout/" in placed.checkout_url
    fresh = shop.get(placed.order_id)
    assert fresh.package_name == "Starter" and fresh.status == "awaiting_payment"
    # Only the workspace's own automatic orders: another's, or a plain order, is not found.
    stranger = funded_customer(shop.engine, credits_micros=0, name="Stranger")
    with pytest.raises(NotFound):
        autotopup.pay_on_session(
            customer_id=stranger.customer_id, order_id=attempt.order_id, actor=CLI
        )
    with pytest.raises(NotFound):
        autotopup.pay_on_session(customer_id=shop.customer_id, order_id=fresh.id, actor=CLI)
