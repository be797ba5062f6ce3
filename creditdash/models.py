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
from creditdash.proxy.models import Provider, PublicModel, Route

metadata = SQLModel.metadata

__all__ = [
    "ApiKey",
    "AuditEntry",
    "Customer",
    "LedgerAccount",
    "Membership",
    "Provider",
    "PublicModel",
    "Route",
    "Transfer",
    "UsageRecord",
    "User",
    "WebSession",
    "metadata",
]
