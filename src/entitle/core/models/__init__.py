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
from entitle.core.models.events import (
    AccountEvent,
    InboxStatus,
    ProviderEvent,
    WebhookDelivery,
    WebhookEndpoint,
)

__all__ = [
    "Account",
    "AccountEvent",
    "Identity",
    "InboxStatus",
    "PasswordCredential",
    "ProviderEvent",
    "RefreshToken",
    "RefreshTokenFamily",
    "WebhookDelivery",
    "WebhookEndpoint",
]
