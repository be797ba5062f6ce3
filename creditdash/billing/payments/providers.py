"""Payment providers behind one interface: Stripe Checkout, and the built-in sandbox.

A provider creates a hosted checkout page for an order and refunds payments. It never credits
anything: credit comes only from the provider's signed webhook (billing/payments/webhooks.py).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from creditdash.billing.codes import checkout_key, refund_key
from creditdash.billing.payments.models import PaymentOrder
from creditdash.core.errors import CreditdashError
from creditdash.core.settings import Settings, get_settings

if TYPE_CHECKING:
    import stripe

SANDBOX_CHECKOUT_PATH = "/sandbox/checkout"


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


class PaymentProvider(Protocol):
    name: str

    def create_checkout(
        self, order: PaymentOrder, *, success_url: str, cancel_url: str
    ) -> CheckoutPage: ...

    def refund(self, order: PaymentOrder, *, amount_minor: int, refund_id: str) -> str:
        """Return money for a paid order; the provider's refund id. Idempotent by refund_id."""
        ...

    def webhook_secrets(self) -> list[str]: ...


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

    def webhook_secrets(self) -> list[str]:
        return webhook_secrets(self.name, self._settings)


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
