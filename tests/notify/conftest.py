"""Fixtures for notify tests: the SMTP server and the payments rig."""

from tests.billing.shop import fake_stripe, payments_server, shop
from tests.notify.smtp import smtp_inbox

__all__ = ["fake_stripe", "payments_server", "shop", "smtp_inbox"]
