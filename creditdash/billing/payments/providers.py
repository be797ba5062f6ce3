"""Payment providers behind one interface: Stripe Checkout, and the built-in sandbox.

A provider creates a hosted checkout page for an order, a hosted page that saves a card for
automatic top-ups, charges a saved card off-session, and refunds payments. It never credits
anything: credit comes only from the provider's signed webhook (billing/payments/webhooks.py).
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from creditdash.billing.codes import (
    autotopup_charge_key,
    autotopup_customer_key,
    autotopup_setup_key,
    checkout_key,
    refund_key,
)
from creditdash.billing.payments.autotopup_models import SavedPaymentMethod
from creditdash.billing.payments.models import PaymentOrder
from creditdash.core.errors import CreditdashError
from creditdash.core.settings import Settings, get_settings

if TYPE_CHECKING:
    import stripe

SANDBOX_CHECKOUT_PATH = "/sandbox/checkout"
# The most checkout sessions one reconcile run reads from a provider.
MAX_LISTED_SESSIONS = 10_000
SANDBOX_SETUP_PATH = "/sandbox/setup"
# The sandbox's test cards, numbered like Stripe's: what an off-session charge of each does.
SANDBOX_TEST_CARDS: dict[str, tuple[str, str]] = {
    "4242424242424242": ("visa", "succeeds"),
    "5555555555554444": ("mastercard", "succeeds"),
    "4000000000000002": ("visa", "declined"),
    "4000002760003184": ("visa", "requires_action"),
}


class ProviderFailed(CreditdashError):
    """The payment provider refused (definite) or did not answer clearly (not definite: the
    money may have moved, so nothing may be undone on our side)."""

    code = "payment_provider_error"

    def __init__(self, message: str, *, definite: bool = True) -> None:
        super().__init__(message)
        self.definite = definite


@dataclass(frozen=True)
class CheckoutPage:
    session_id: str
    url: str


@dataclass(frozen=True)
class SetupPage:
    session_id: str
    url: str
    customer_ref: str


# How an off-session charge answered: "submitted" (the provider took it; the signed webhook
# settles the order), "declined" or "requires_action" (no money moved; the order is cancelled).
CHARGE_OUTCOMES = ("submitted", "declined", "requires_action")


@dataclass(frozen=True)
class OffSessionCharge:
    outcome: str
    payment_id: str | None = None
    code: str = ""
    message: str = ""
    # The sandbox's events about this charge, to be signed and delivered in process (Stripe
    # sends its own to the webhook endpoint).
    events: tuple[str, ...] = field(default=())


class PaymentProvider(Protocol):
    name: str

    def create_checkout(
        self, order: PaymentOrder, *, success_url: str, cancel_url: str
    ) -> CheckoutPage: ...

    def refund(self, order: PaymentOrder, *, amount_minor: int, refund_id: str) -> str:
        """Return money for a paid order; the provider's refund id. Idempotent by refund_id."""
        ...

    def webhook_secrets(self) -> list[str]: ...

    def create_setup(
        self,
        method: SavedPaymentMethod,
        *,
        email: str,
        currency: str,
        success_url: str,
        cancel_url: str,
    ) -> SetupPage:
        """A hosted page where the customer saves a card for off-session payments, with the
        consent text shown. Idempotent by the method's id."""
        ...

    def charge_off_session(
        self, order: PaymentOrder, method: SavedPaymentMethod, *, attempt_id: str
    ) -> OffSessionCharge:
        """Charge the saved card for the order without the customer present. Idempotent by
        attempt_id: a retry gets the first answer, never a second payment."""
        ...


class StripeProvider:
    """Stripe Checkout through the official library (its own HTTP requests, idempotency keys)."""

    name = "stripe"

    def __init__(self, settings: Settings) -> None:
        # The library is imported when Stripe is used: it adds about 27 MiB to every process,
        # and gateway workers never need it.
        import stripe

        self._settings = settings
        options: dict[str, Any] = {
            "max_network_retries": 2,
            "http_client": stripe.HTTPXClient(allow_sync_methods=True),
        }
        if settings.stripe_api_base:
            options["base_addresses"] = {"api": settings.stripe_api_base}
        self._client = stripe.StripeClient(settings.stripe_secret_key, **options)

    def create_checkout(
        self, order: PaymentOrder, *, success_url: str, cancel_url: str
    ) -> CheckoutPage:
        assert order.expires_at is not None
        params: dict[str, Any] = {
            "mode": "payment",
            "client_reference_id": order.id,
            "success_url": success_url,
            "cancel_url": cancel_url,
            "expires_at": int(order.expires_at.timestamp()),
            "metadata": {"order_id": order.id, "customer_id": order.customer_id},
            "payment_intent_data": {"metadata": {"order_id": order.id}},
            "line_items": [
                {
                    "quantity": 1,
                    "price_data": {
                        "currency": order.currency.lower(),
                        "unit_amount": order.gross_minor,
                        "product_data": {
                            "name": f"{order.package_name} credits x{order.quantity}",
                        },
                    },
                }
            ],
            "custom_text": {
                "submit": {
                    "message": (
                        f"By paying you accept the creditdash terms and refund policy "
                        f"(version {order.terms_version})."
                    )
                }
            },
        }
        import stripe

        try:
            session = self._client.v1.checkout.sessions.create(
                params=params,  # type: ignore[arg-type]
                options={"idempotency_key": checkout_key(order.id)},
            )
        except stripe.StripeError as exc:
            message = _stripe_message(exc)
            raise ProviderFailed(f"Stripe refused the checkout session: {message}") from None
        if not session.url:
            raise ProviderFailed("Stripe returned a checkout session without a URL")
        return CheckoutPage(session_id=session.id, url=session.url)

    def refund(self, order: PaymentOrder, *, amount_minor: int, refund_id: str) -> str:
        if not order.provider_payment_id:
            raise ProviderFailed(f"order {order.id} has no Stripe payment to refund")
        import stripe

        try:
            refund = self._client.v1.refunds.create(
                params={
                    "payment_intent": order.provider_payment_id,
                    "amount": amount_minor,
                    "metadata": {"order_id": order.id, "refund_id": refund_id},
                },
                options={"idempotency_key": refund_key(refund_id)},
            )
        except _definite_refusals() as exc:
            message = _stripe_message(exc)
            raise ProviderFailed(f"Stripe refused the refund: {message}") from None
        except stripe.StripeError as exc:
            # Timeouts, connection errors, 429 and 5xx: the refund may have happened.
            message = _stripe_message(exc)
            raise ProviderFailed(
                f"Stripe did not confirm the refund: {message}", definite=False
            ) from None
        if refund.status in ("failed", "canceled"):
            raise ProviderFailed(f"Stripe reports the refund as {refund.status}")
        # "pending" and "requires_action" are accepted; a later refund.failed event undoes them.
        return str(refund.id)

    def create_setup(
        self,
        method: SavedPaymentMethod,
        *,
        email: str,
        currency: str,
        success_url: str,
        cancel_url: str,
    ) -> SetupPage:
        import stripe

        try:
            customer_ref = method.customer_ref
            if not customer_ref:
                created = self._client.v1.customers.create(
                    params={"email": email, "metadata": {"customer_id": method.customer_id}},
                    options={"idempotency_key": autotopup_customer_key(method.customer_id)},
                )
                customer_ref = str(created.id)
            metadata = {"setup_id": method.id, "customer_id": method.customer_id}
            params: dict[str, Any] = {
                "mode": "setup",
                "customer": customer_ref,
                "currency": currency.lower(),
                "payment_method_types": ["card"],
                "client_reference_id": method.id,
                "success_url": success_url,
                "cancel_url": cancel_url,
                "metadata": metadata,
                "setup_intent_data": {"metadata": metadata},
                "custom_text": {"submit": {"message": method.consent_text[:1000]}},
            }
            session = self._client.v1.checkout.sessions.create(
                params=params,  # type: ignore[arg-type]
                options={"idempotency_key": autotopup_setup_key(method.id)},
            )
        except stripe.StripeError as exc:
            message = _stripe_message(exc)
            raise ProviderFailed(f"Stripe refused the card setup: {message}") from None
        if not session.url:
            raise ProviderFailed("Stripe returned a setup session without a URL")
        return SetupPage(session_id=session.id, url=session.url, customer_ref=customer_ref)

    def charge_off_session(
        self, order: PaymentOrder, method: SavedPaymentMethod, *, attempt_id: str
    ) -> OffSessionCharge:
        if not method.method_ref or not method.customer_ref:
            return OffSessionCharge("declined", code="no_payment_method", message="no saved card")
        import stripe

        params: dict[str, Any] = {
            "amount": order.gross_minor,
            "currency": order.currency.lower(),
            "customer": method.customer_ref,
            "payment_method": method.method_ref,
            "off_session": True,
            "confirm": True,
            "description": f"Automatic top-up: {order.package_name} credits x{order.quantity}",
            "metadata": {
                "order_id": order.id,
                "attempt_id": attempt_id,
                "customer_id": order.customer_id,
            },
        }
        try:
            intent = self._client.v1.payment_intents.create(
                params=params,  # type: ignore[arg-type]
                options={"idempotency_key": autotopup_charge_key(attempt_id)},
            )
        except stripe.CardError as exc:
            error = exc.error
            found = getattr(error, "payment_intent", None) if error is not None else None
            payment_id = getattr(found, "id", None) if found is not None else None
            code = str(exc.code or "card_declined")
            outcome = "requires_action" if code == "authentication_required" else "declined"
            return OffSessionCharge(outcome, payment_id, code, _stripe_message(exc))
        except _definite_refusals() as exc:
            return OffSessionCharge("declined", code="refused", message=_stripe_message(exc))
        except stripe.StripeError as exc:
            # Timeouts, connection errors, 429 and 5xx: the payment may have happened. The
            # attempt stays in flight; a retry with the same key learns the first answer.
            raise ProviderFailed(
                f"Stripe did not confirm the payment: {_stripe_message(exc)}", definite=False
            ) from None
        if intent.status in ("succeeded", "processing"):
            return OffSessionCharge("submitted", str(intent.id))
        if intent.status == "requires_action":
            return OffSessionCharge(
                "requires_action", str(intent.id), "authentication_required", "3-D Secure needed"
            )
        return OffSessionCharge("declined", str(intent.id), str(intent.status), "not confirmed")

    def webhook_secrets(self) -> list[str]:
        return webhook_secrets(self.name, self._settings)

    def list_checkout_sessions(
        self, *, created_gte: int, max_sessions: int = MAX_LISTED_SESSIONS
    ) -> list[dict[str, Any]]:
        """Checkout Sessions created at or after created_gte (epoch seconds), every page
        (the library's auto-paging), as plain dicts; at most max_sessions of them."""
        import stripe

        found: list[dict[str, Any]] = []
        try:
            page = self._client.v1.checkout.sessions.list(
                params={"created": {"gte": created_gte}, "limit": 100}
            )
            for item in page.auto_paging_iter():
                found.append(item.to_dict())
                if len(found) >= max_sessions:
                    break
        except stripe.StripeError as exc:
            raise ProviderFailed(
                f"Stripe did not list the checkout sessions: {_stripe_message(exc)}",
                definite=False,
            ) from None
        return found


def _definite_refusals() -> tuple[type[stripe.StripeError], ...]:
    """Answers after which Stripe has certainly not moved money for this request."""
    import stripe

    return (
        stripe.InvalidRequestError,
        stripe.CardError,
        stripe.AuthenticationError,
        stripe.PermissionError,
    )


def _stripe_message(exc: stripe.StripeError) -> str:
    # user_message is Stripe's text meant for people; it never contains the API key.
    return str(exc.user_message or type(exc).__name__)


class SandboxProvider:
    """Test mode without any account: creditdash serves the hosted page itself, and its Pay
    button delivers a webhook signed exactly like Stripe's to /webhooks/sandbox."""

    name = "sandbox"

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def create_checkout(
        self, order: PaymentOrder, *, success_url: str, cancel_url: str
    ) -> CheckoutPage:
        session_id = "cs_sandbox_" + secrets.token_urlsafe(24)
        # The page lives on the backend; the public URL is where customers reach the app.
        url = f"{self._settings.resolved_public_url()}{SANDBOX_CHECKOUT_PATH}/{session_id}"
        return CheckoutPage(session_id=session_id, url=url)

    def refund(self, order: PaymentOrder, *, amount_minor: int, refund_id: str) -> str:
        # No money moved in test mode; the refund is the ledger reversal alone.
        return f"re_sandbox_{refund_id}"

    def create_setup(
        self,
        method: SavedPaymentMethod,
        *,
        email: str,
        currency: str,
        success_url: str,
        cancel_url: str,
    ) -> SetupPage:
        session_id = "seti_sandbox_" + secrets.token_urlsafe(24)
        url = f"{self._settings.resolved_public_url()}{SANDBOX_SETUP_PATH}/{session_id}"
        customer_ref = method.customer_ref or f"cus_sandbox_{method.customer_id}"
        return SetupPage(session_id=session_id, url=url, customer_ref=customer_ref)

    def charge_off_session(
        self, order: PaymentOrder, method: SavedPaymentMethod, *, attempt_id: str
    ) -> OffSessionCharge:
        """Decided by the saved test card; the answer and its event ids follow from the
        attempt id, so a retried charge repeats the same answer and the same events."""
        payment_id = f"pi_sandbox_{attempt_id}"
        behaviour = sandbox_card_behaviour(method.last4)
        if behaviour == "succeeds":
            event = payment_intent_event(order, payment_id, attempt_id, "payment_intent.succeeded")
            return OffSessionCharge("submitted", payment_id, events=(event,))
        code = "authentication_required" if behaviour == "requires_action" else "card_declined"
        event = payment_intent_event(
            order, payment_id, attempt_id, "payment_intent.payment_failed", failure_code=code
        )
        message = (
            "The card needs 3-D Secure authentication."
            if behaviour == "requires_action"
            else "Your card was declined."
        )
        return OffSessionCharge(behaviour, payment_id, code, message, events=(event,))

    def webhook_secrets(self) -> list[str]:
        return webhook_secrets(self.name, self._settings)


class ManualProvider:
    """Bank transfers: no hosted page and no webhooks; an admin approves the payment."""

    name = "manual"

    def create_checkout(
        self, order: PaymentOrder, *, success_url: str, cancel_url: str
    ) -> CheckoutPage:
        raise ProviderFailed("manual orders are paid by bank transfer, not at a checkout page")

    def refund(self, order: PaymentOrder, *, amount_minor: int, refund_id: str) -> str:
        # The money goes back by bank transfer outside creditdash; the admin records it here.
        return f"manual_{refund_id}"

    def create_setup(
        self,
        method: SavedPaymentMethod,
        *,
        email: str,
        currency: str,
        success_url: str,
        cancel_url: str,
    ) -> SetupPage:
        raise ProviderFailed("bank transfers cannot be saved for automatic top-ups")

    def charge_off_session(
        self, order: PaymentOrder, method: SavedPaymentMethod, *, attempt_id: str
    ) -> OffSessionCharge:
        raise ProviderFailed("bank transfers cannot be charged automatically")

    def webhook_secrets(self) -> list[str]:
        return []


SANDBOX_OFF = (
    "the sandbox payment provider is off outside development "
    "(set STRIPE_SECRET_KEY, or CREDITDASH_SANDBOX_PAYMENTS=true for a test deployment)"
)


def checkout_provider_name(settings: Settings) -> str:
    """Where new checkout orders are paid: Stripe when configured, else the sandbox."""
    if settings.stripe_enabled:
        return "stripe"
    if settings.sandbox_enabled:
        return "sandbox"
    raise ProviderFailed(SANDBOX_OFF)


def webhook_secrets(name: str, settings: Settings) -> list[str]:
    """The secrets that may sign events for this provider's endpoint (none: endpoint off)."""
    if name == "stripe":
        # Several secrets, comma-separated, while an endpoint secret is being rolled.
        return [s.strip() for s in settings.stripe_webhook_secret.split(",") if s.strip()]
    if name == "sandbox" and settings.sandbox_enabled:
        return [settings.resolved_sandbox_webhook_secret()]
    return []


def provider_named(name: str, settings: Settings | None = None) -> PaymentProvider:
    settings = settings or get_settings()
    if name == "stripe":
        if not settings.stripe_enabled:
            raise ProviderFailed("Stripe is not configured (STRIPE_SECRET_KEY is unset)")
        return StripeProvider(settings)
    if name == "sandbox":
        if not settings.sandbox_enabled:
            raise ProviderFailed(SANDBOX_OFF)
        return SandboxProvider(settings)
    if name == "manual":
        return ManualProvider()
    raise ProviderFailed(f"unknown payment provider {name!r}")


def sandbox_card_behaviour(last4: str) -> str:
    """What an off-session charge of a sandbox card ending in last4 does."""
    for number, (_brand, behaviour) in SANDBOX_TEST_CARDS.items():
        if number.endswith(last4):
            return behaviour
    return "declined"


def payment_intent_event(
    order: PaymentOrder,
    payment_id: str,
    attempt_id: str,
    event_type: str,
    *,
    failure_code: str = "",
) -> str:
    """A PaymentIntent event shaped like Stripe's (the fields creditdash reads), with an id
    that follows from the attempt: redelivered, it is the same event."""
    succeeded = event_type == "payment_intent.succeeded"
    intent: dict[str, Any] = {
        "id": payment_id,
        "object": "payment_intent",
        "amount": order.gross_minor,
        "amount_received": order.gross_minor if succeeded else 0,
        "currency": order.currency.lower(),
        "status": "succeeded" if succeeded else "requires_payment_method",
        "metadata": {
            "order_id": order.id,
            "attempt_id": attempt_id,
            "customer_id": order.customer_id,
        },
    }
    if failure_code:
        intent["last_payment_error"] = {"code": failure_code, "type": "card_error"}
    return json.dumps(
        {
            "id": f"evt_sandbox_{attempt_id}_{event_type.rsplit('.', 1)[-1]}",
            "object": "event",
            "type": event_type,
            "created": int(time.time()),
            "livemode": False,
            "data": {"object": intent},
        }
    )
