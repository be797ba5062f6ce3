"""The ledger's vocabulary: why money moved (a transfer's code) and the idempotency keys.

Both are stored in the transfers table, and other code finds transfers again by them: verify
matches an order to its top-up by key, a refund measures what an order granted by key, a
statement names its rows by code, and the gateway's hot path writes the same rows in raw SQL
as the ledger does through SQLAlchemy. Built in one place, a key or code can only be spelled one
way. The values are the strings the database already holds: changing one would orphan the rows
written under the old spelling, so tests/billing/test_codes.py pins every one of them.

A leaf: the standard library only, so that any layer (the hot path included) can import it.
"""

from __future__ import annotations

from enum import StrEnum


class TransferCode(StrEnum):
    """Why money moved, one member per reason. A member is its str value, so it is stored,
    compared and formatted as the plain string."""

    # An operator's manual adjustment (also a new customer's opening credit).
    GRANT = "grant"
    DEBIT_ADJUSTMENT = "debit_adjustment"
    # A gateway request: its hold and the post that settles it, and the charge beyond the hold.
    USAGE = "usage"
    USAGE_OVERAGE = "usage_overage"
    # A paid order's credits and its bonus credits.
    TOPUP = "topup"
    TOPUP_BONUS = "topup_bonus"
    # A refund takes credits back; a refund the provider failed gives them back again.
    REFUND = "refund"
    REFUND_REVERSAL = "refund_reversal"
    # A disputed payment's credits: held while the dispute is open, posted when it is lost.
    DISPUTE = "dispute"
    # Usage revenue moved between its shards (migration 0023; platform accounts only).
    REVENUE_SHARD = "revenue_shard"


# Keys the ledger makes itself (hold resolutions). The ledger refuses this prefix from callers,
# so no caller's key can ever occupy a resolution's slot.
RESERVED_KEY_PREFIX = "ledger:"


def hold_key(request_id: str) -> str:
    """The hold of a gateway request; a retried reserve finds the hold it already placed."""
    return f"req:{request_id}"


def overage_key(request_id: str) -> str:
    """The charge beyond a request's hold: at most one per request."""
    return f"req:{request_id}:overage"


def resolve_key(hold_id: int) -> str:
    """The one post, void or expiry of a hold (made by the ledger, never by a caller)."""
    return f"{RESERVED_KEY_PREFIX}resolve:{hold_id}"


def order_credit_key(order_id: str) -> str:
    """A paid order's credits: a repeated webhook or approval credits the order once."""
    return f"order:{order_id}:credit"


def order_bonus_key(order_id: str) -> str:
    """A paid order's bonus credits, a transfer apart from its credits."""
    return f"order:{order_id}:bonus"


def refund_key(refund_id: str) -> str:
    """The credits a refund takes back. The payment provider's refund call carries the same
    key, so a retried refund neither takes credits twice nor pays out twice."""
    return f"refund:{refund_id}"


def refund_reversal_key(refund_id: str) -> str:
    """The credits given back when the provider failed a refund: at most once per refund."""
    return f"refund:{refund_id}:reversal"


def opening_grant_key(customer_id: str) -> str:
    """A new customer's opening credit: one per customer."""
    return f"opening-grant:{customer_id}"


def admin_adjustment_key(form_key: str) -> str:
    """An adjustment from the admin dashboard, keyed by its form's one-time key so that a
    double submit adjusts once."""
    return f"admin-adjust:{form_key}"


def checkout_key(order_id: str) -> str:
    """The payment provider's key for an order's checkout session: one session per order."""
    return f"checkout:{order_id}"


def autotopup_charge_key(attempt_id: str) -> str:
    """The provider's key for an automatic top-up's off-session payment: a retried charge of
    the same attempt (a timeout, a crash before the answer was stored) never pays twice."""
    return f"autotopup:{attempt_id}"


def autotopup_setup_key(method_id: str) -> str:
    """The provider's key for the hosted page that saves a payment method: one per setup."""
    return f"autotopup-setup:{method_id}"


def autotopup_customer_key(customer_id: str) -> str:
    """The provider's key for creating the workspace's customer record at the provider."""
    return f"autotopup-customer:{customer_id}"


def dispute_hold_key(dispute_id: str) -> str:
    """The hold that freezes a disputed payment's credits: one per dispute."""
    return f"dispute:{dispute_id}:hold"
