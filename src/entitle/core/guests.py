"""A purchase paid before its account existed, as the core sees it: what a store reports when a guest pays.

Declared here so a provider hands a paid guest checkout to `services.billing.guest_checkout` without
importing it (providers import no service), as `PurchaseSink` does for purchases.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from entitle.core.subscriptions import Store

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession


@dataclass(frozen=True)
class GuestPayment:
    """A guest's checkout that the store says is paid."""

    store: Store
    checkout_id: str
    # The address typed into the store's page: where the redemption link goes, never proof of anything.
    email: str | None
    product: str
    quantity: int
    store_customer_id: str | None
    store_subscription_id: str | None = None
    store_purchase_id: str | None = None


class GuestSink(Protocol):
    """Where a provider records a paid guest checkout (idempotently: the webhook and the success page do)."""

    async def paid(self, db: AsyncSession, payment: GuestPayment) -> bool:
        """Record `payment` and mail its redemption link the first time; True when this call recorded it."""
        ...
