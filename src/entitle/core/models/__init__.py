"""Every table, imported here so `Base.metadata` (and Alembic) sees them all.

Provider packages keep their own tables next to their code and are listed here too; this is the one
place that knows the full schema.
"""

from entitle.core.models.accounts import (
    Account,
    Identity,
    PasswordCredential,
    RefreshToken,
    RefreshTokenFamily,
)
from entitle.core.models.entitlements import AccountEntitlement, PromotionalGrant, Subscription
from entitle.core.models.events import (
    AccountEvent,
    AlertSent,
    DeliveryStatus,
    InboxStatus,
    ProviderEvent,
    WebhookDelivery,
    WebhookEndpoint,
)
from entitle.providers.appstore.models import AppStoreOwnership, AppStoreOwnershipChange  # noqa: F401
from entitle.providers.stripe.models import StripeCustomer  # noqa: F401  (issue 4: Stripe customers)

__all__ = [
    "Account",
    "AccountEntitlement",
    "AccountEvent",
    "AlertSent",
    "DeliveryStatus",
    "Identity",
    "InboxStatus",
    "PasswordCredential",
    "PromotionalGrant",
    "ProviderEvent",
    "RefreshToken",
    "RefreshTokenFamily",
    "Subscription",
    "WebhookDelivery",
    "WebhookEndpoint",
]
