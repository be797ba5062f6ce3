"""Every table, imported in one place so metadata (and alembic) sees them all."""

from sqlmodel import SQLModel

from creditdash.accounts.models import (
    ApiKey,
    Customer,
    Invite,
    Membership,
    PasswordReset,
    User,
    WebSession,
)
from creditdash.billing.budgets_models import Budget, BudgetHold, KeyHold, KeySpend
from creditdash.billing.invoicing.models import (
    BillingProfile,
    Invoice,
    InvoiceCounter,
    InvoiceLine,
    InvoiceTaxLine,
    SellerProfile,
    TaxRate,
)
from creditdash.billing.models import LedgerAccount, Transfer, UsageRecord
from creditdash.billing.payments.autotopup_models import (
    AutoTopupAttempt,
    AutoTopupRule,
    SavedPaymentMethod,
)
from creditdash.billing.payments.models import (
    CreditPackage,
    OrderEvent,
    PaymentEvent,
    PaymentOrder,
    Refund,
)
from creditdash.billing.payments.reconcile_models import (
    Dispute,
    ReconcileRun,
    SandboxPaidSession,
)
from creditdash.catalog.models import (
    PriceSchedule,
    PriceSyncReview,
    Provider,
    PublicModel,
    Route,
    RouteCostSchedule,
)
from creditdash.core.audit import AuditEntry
from creditdash.core.outbox import Event, OutboxMail
from creditdash.notify.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from creditdash.proxy.idempotency_keys import IdempotencyKey
from creditdash.proxy.stored_responses import StoredResponse
from creditdash.upstream.models import UpstreamCostSource, UpstreamDailyCost

metadata = SQLModel.metadata

__all__ = [
    "ApiKey",
    "AuditEntry",
    "AutoTopupAttempt",
    "AutoTopupRule",
    "BillingProfile",
    "Budget",
    "BudgetHold",
    "CreditPackage",
    "Customer",
    "Dispute",
    "Event",
    "IdempotencyKey",
    "Invite",
    "Invoice",
    "InvoiceCounter",
    "InvoiceLine",
    "InvoiceTaxLine",
    "KeyHold",
    "KeySpend",
    "LedgerAccount",
    "Membership",
    "OrderEvent",
    "OutboxMail",
    "PasswordReset",
    "PaymentEvent",
    "PaymentOrder",
    "PriceSchedule",
    "PriceSyncReview",
    "Provider",
    "PublicModel",
    "ReconcileRun",
    "Refund",
    "Route",
    "RouteCostSchedule",
    "SandboxPaidSession",
    "SavedPaymentMethod",
    "SellerProfile",
    "StoredResponse",
    "TaxRate",
    "Transfer",
    "UpstreamCostSource",
    "UpstreamDailyCost",
    "UsageRecord",
    "User",
    "WebSession",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookEndpoint",
    "metadata",
]
