"""The vendor-free shape of a store subscription.

Every provider package (Stripe, App Store, later Google Play) turns the vendor's object into a
`SubscriptionState`; the core and the services never look at vendor objects except to keep them
(`raw`). `vendor_updated_at` is the vendor's own timestamp for the state the snapshot reflects: the
service that stores it refuses to let an older snapshot overwrite a newer one, which is what makes
late, duplicated and reordered provider events harmless.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession


class Store(StrEnum):
    STRIPE = "stripe"
    APP_STORE = "app_store"
    # Not a store a person pays in: a grant given by the app's team or support staff.
    PROMOTIONAL = "promotional"


class Environment(StrEnum):
    PRODUCTION = "production"
    # Stripe test mode, App Store Sandbox (which includes TestFlight and App Review) and Xcode.
    SANDBOX = "sandbox"


class SubscriptionStatus(StrEnum):
    # Paid up and renewing (or renewal not yet decided) within the current period.
    ACTIVE = "active"
    # In a free or introductory trial period; entitles like ACTIVE.
    TRIALING = "trialing"
    # Renewal payment failed but the store still grants access for a grace period
    # (App Store billing grace period, or Stripe past_due within the configured grace days).
    IN_GRACE_PERIOD = "in_grace_period"
    # The store keeps retrying a failed renewal and access has lapsed (App Store billing retry
    # without grace); does not entitle.
    IN_BILLING_RETRY = "in_billing_retry"
    # Stripe past_due beyond the configured grace window; does not entitle.
    PAST_DUE = "past_due"
    # Collection paused by the merchant or the person (Stripe pause); does not entitle.
    PAUSED = "paused"
    # Paid for the current period but set not to renew; entitles until the period ends.
    CANCELED_AT_PERIOD_END = "canceled_at_period_end"
    # Ended normally: canceled, not renewed, or unpaid after all retries.
    EXPIRED = "expired"
    # Taken back by the store: refunded, revoked (Family Sharing ended), or charged back.
    REVOKED = "revoked"
    # Created but the first payment has not succeeded yet (Stripe incomplete); never entitles.
    INCOMPLETE = "incomplete"


# Statuses under which a subscription grants its entitlements, provided the period has not ended.
ENTITLING_STATUSES = frozenset(
    {
        SubscriptionStatus.ACTIVE,
        SubscriptionStatus.TRIALING,
        SubscriptionStatus.IN_GRACE_PERIOD,
        SubscriptionStatus.CANCELED_AT_PERIOD_END,
    }
)


@dataclass(frozen=True)
class SubscriptionState:
    """One store subscription as the store last reported it, in core terms."""

    store: Store
    # Stripe: the subscription id `sub_...`; App Store: the `originalTransactionId`.
    store_subscription_id: str
    account_id: uuid.UUID
    # Catalog product key (e.g. "pro_monthly"); None when the store product is not in the catalog.
    product: str | None
    # The store's own product identity: Stripe price id, App Store product id.
    store_product_id: str
    status: SubscriptionStatus
    current_period_end: datetime | None
    will_renew: bool
    environment: Environment
    # The vendor's timestamp for this state; an older one never overwrites a newer one.
    vendor_updated_at: datetime
    raw: dict[str, Any] = field(default_factory=dict)
    # Stripe: the customer id `cus_...`; App Store: None.
    store_customer_id: str | None = None
    # End of a store grace period when status is IN_GRACE_PERIOD; access ends then at the latest.
    grace_period_ends_at: datetime | None = None
    # What to show the person about how they pay, e.g. {"type": "card", "brand": "visa", "last4": "4242"};
    # None when the store does not say (the App Store never does).
    payment_method: dict[str, str] | None = None
    # When this subscription's trial began: a Stripe trial, or an App Store introductory offer (free or
    # paid, either uses up the person's one introductory period). None when this snapshot shows none; a
    # later snapshot (an App Store renewal) may no longer show it, which is why it is kept apart
    # (`services.access.trials`) rather than read back from the stored row.
    trial_started_at: datetime | None = None


class SubscriptionSink(Protocol):
    """Where a provider records what its store said, and reads back what it recorded before.

    Declared here so providers depend on the core alone; `services.access.subscriptions.StoredSubscriptions`
    implements it (keyed upsert guarded by `vendor_updated_at`, answers recomputed in the same transaction).
    """

    async def apply(self, db: AsyncSession, state: SubscriptionState, *, now: datetime) -> bool:
        """Store `state` unless newer state is stored; True when it was applied."""
        ...

    async def stored(
        self, db: AsyncSession, store: Store, store_subscription_id: str
    ) -> SubscriptionState | None:
        """The state last stored for this subscription (with its raw vendor object), if any."""
        ...
