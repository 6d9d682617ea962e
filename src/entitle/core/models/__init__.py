"""The core's tables. Provider packages keep their own tables next to their code; `entitle.models`
imports them all, so `Base.metadata` (and Alembic) sees the full schema.
"""

from entitle.core.models.accounts import (
    Account,
    AccountToken,
    AppleSigninToken,
    Identity,
    PageLink,
    PasswordCredential,
    RefreshToken,
    RefreshTokenFamily,
)
from entitle.core.models.entitlements import (
    AccountAnswer,
    AccountEntitlement,
    PromotionalGrant,
    Subscription,
    Trial,
)
from entitle.core.models.events import (
    AccountEvent,
    AlertSent,
    DeliveryStatus,
    InboxStatus,
    ProviderEvent,
    StreamTicket,
    WebhookDelivery,
    WebhookEndpoint,
)
from entitle.core.models.guest import GuestCheckout, GuestCheckoutStatus
from entitle.core.models.mail import OutboundMail
from entitle.core.models.purchases import Balance, BalanceTransaction, Purchase
from entitle.core.models.setup import SavedSetting, SetupLink

__all__ = [
    "Account",
    "AccountAnswer",
    "AccountEntitlement",
    "AccountEvent",
    "AccountToken",
    "AppleSigninToken",
    "AlertSent",
    "Balance",
    "BalanceTransaction",
    "DeliveryStatus",
    "GuestCheckout",
    "GuestCheckoutStatus",
    "Identity",
    "InboxStatus",
    "OutboundMail",
    "PageLink",
    "PasswordCredential",
    "PromotionalGrant",
    "Purchase",
    "ProviderEvent",
    "RefreshToken",
    "RefreshTokenFamily",
    "SavedSetting",
    "SetupLink",
    "StreamTicket",
    "Subscription",
    "Trial",
    "WebhookDelivery",
    "WebhookEndpoint",
]
