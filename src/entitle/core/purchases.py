"""The vendor-free shape of a one-time purchase, and what it is worth while it stands.

Every store that sells one-time products (Stripe payment-mode Checkout and PaymentIntents, the App Store's
non-consumables, consumables and non-renewing subscriptions) turns the vendor's object into a
`PurchaseState`, as subscriptions become a `SubscriptionState`. A purchase's worth is decided here and
nowhere else, from the stored state and the catalog:

- a `non_consumable` grants its entitlements for good, a `non_renewing` one for `duration_days` from the
  purchase; either stops the moment the store takes the money back (`revoked_at`: a full refund, a
  dispute, an App Store revocation);
- any product's `grants` credit `amount x quantity` of each currency; a refund takes back the refunded
  share of it (all of it for a full refund or a revocation, a proportional part for a partial refund).

`credits_of` is a target, not a delta: the ledger posts the difference between it and what the purchase
has already credited, so the same state applied twice, or a partial refund followed by a full one in any
order, always ends with the ledger at the purchase's current worth.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from entitle.core.catalog import Catalog, ProductType
from entitle.core.subscriptions import Environment, Store

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession


@dataclass(frozen=True)
class PurchaseState:
    """One paid one-time purchase, as its store last reported it."""

    store: Store
    # Stripe: the PaymentIntent `pi_...` (Checkout in payment mode makes one too); App Store: the
    # `transactionId` (each consumable purchase has its own).
    store_purchase_id: str
    account_id: uuid.UUID
    # Catalog product key; None when the store product is not in the catalog (it then grants nothing).
    product: str | None
    # The store's identity of the product: Stripe price id or lookup key, App Store product id.
    store_product_id: str
    # The product's type as the catalog says (or as the store says when the catalog does not know it).
    type: ProductType
    quantity: int
    purchased_at: datetime
    environment: Environment
    # The vendor's timestamp for this state; an older one never overwrites a newer one.
    vendor_updated_at: datetime
    # What was paid, in the currency's minor units; None when the store does not say.
    amount: int | None = None
    currency: str | None = None
    # Minor units given back so far (Stripe partial refunds); equal to `amount` for a full refund.
    refunded_amount: int = 0
    # Set when the purchase no longer stands: refunded in full, lost to a dispute, revoked by Apple.
    revoked_at: datetime | None = None
    # `refunded`, `disputed`, `revoked` (Family Sharing ended); None while the purchase stands.
    revocation_reason: str | None = None
    # When the store itself ends it (App Store non-renewing subscriptions carry no expiry, so this is
    # usually None and the catalog's `duration_days` decides).
    store_expires_at: datetime | None = None
    raw: dict[str, Any] = field(default_factory=dict)
    # Stripe: `cus_...`; App Store: None.
    store_customer_id: str | None = None
    # True when the purchase reached the account through Family Sharing rather than being bought by it.
    family_shared: bool = False


def purchase_expires_at(state: PurchaseState, catalog: Catalog) -> datetime | None:
    """When the purchase stops granting its entitlements by itself; None for good (or for a consumable)."""
    if state.type is not ProductType.NON_RENEWING:
        return None
    if state.store_expires_at is not None:
        return state.store_expires_at
    product = catalog.product(state.product) if state.product is not None else None
    days = product.duration_days if product is not None and product.duration_days else None
    return state.purchased_at + timedelta(days=days) if days is not None else state.purchased_at


def purchase_ends_at(state: PurchaseState, catalog: Catalog) -> datetime | None:
    """When its entitlements end: at the revocation, at its expiry, or never."""
    expires_at = purchase_expires_at(state, catalog)
    if state.revoked_at is not None and (expires_at is None or state.revoked_at < expires_at):
        return state.revoked_at
    return expires_at


def purchase_entitles(state: PurchaseState, catalog: Catalog, now: datetime) -> bool:
    """Whether the purchase grants its product's entitlements at `now`."""
    if state.type is ProductType.CONSUMABLE or state.revoked_at is not None:
        return False
    ends_at = purchase_ends_at(state, catalog)
    return state.purchased_at <= now and (ends_at is None or now < ends_at)


def credits_of(state: PurchaseState, catalog: Catalog) -> dict[str, int]:
    """What the purchase is worth in each currency now: its grants times quantity, less what was refunded."""
    product = catalog.product(state.product) if state.product is not None else None
    if product is None or not product.grants:
        return {}
    credits: dict[str, int] = {}
    for currency, amount in product.grants.items():
        full = amount * state.quantity
        if state.revoked_at is not None:
            credits[currency] = 0
        elif state.refunded_amount > 0 and state.amount:
            # The refunded share, rounded in the person's favour: a cent back never costs a whole credit.
            taken = full * min(state.refunded_amount, state.amount) // state.amount
            credits[currency] = full - taken
        else:
            credits[currency] = full
    return credits


def purchase_ref(store: Store, store_purchase_id: str) -> str:
    """How the ledger names a purchase as the source of a credit: `purchase:<store>:<id>`."""
    return f"purchase:{store.value}:{store_purchase_id}"


class PurchaseSink(Protocol):
    """Where a provider records a one-time purchase its store reported.

    Declared here so providers depend on the core alone; `services.access.purchases.StoredPurchases`
    implements it (keyed upsert guarded by `vendor_updated_at`, ledger and answer in the same transaction).
    """

    async def apply(self, db: AsyncSession, state: PurchaseState) -> bool:
        """Store `state` unless newer state is stored; True when it was applied."""
        ...

    async def stored(self, db: AsyncSession, store: Store, store_purchase_id: str) -> PurchaseState | None:
        """The state last stored for this purchase, if any."""
        ...
