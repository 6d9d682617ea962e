"""Every table, imported here so `Base.metadata` (and Alembic) sees the full schema: the core's, and each
provider package's own (a new provider with tables adds one line here)."""

from entitle.core.models import *  # noqa: F403
from entitle.providers.appstore.models import AppStoreOwnership, AppStoreOwnershipChange
from entitle.providers.stripe.models import StripeCustomer

__all__ = ["AppStoreOwnership", "AppStoreOwnershipChange", "StripeCustomer"]
