"""Every table, imported in one place so metadata (and alembic) sees them all."""

from sqlmodel import SQLModel

from creditdash.accounts.models import (
    ApiKey,
    AuditEntry,
    Customer,
    Membership,
    User,
    WebSession,
)
from creditdash.billing.models import LedgerAccount, Transfer, UsageRecord
from creditdash.billing.payments.models import (
    CreditPackage,
    OrderEvent,
    PaymentEvent,
    PaymentOrder,
    Refund,
)
from creditdash.proxy.models import Provider, PublicModel, Route

metadata = SQLModel.metadata

__all__ = [
    "ApiKey",
    "AuditEntry",
    "CreditPackage",
    "Customer",
    "LedgerAccount",
    "Membership",
    "OrderEvent",
    "PaymentEvent",
    "PaymentOrder",
    "Provider",
    "PublicModel",
    "Refund",
    "Route",
    "Transfer",
    "UsageRecord",
    "User",
    "WebSession",
    "metadata",
]
