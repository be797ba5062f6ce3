"""Fixtures for the browser-route tests: the payments rig (tests/billing/shop.py)."""

from tests.billing.shop import fake_stripe, payments_server, shop, stripe_shop

__all__ = ["fake_stripe", "payments_server", "shop", "stripe_shop"]
