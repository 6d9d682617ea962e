"""One-time purchases through Stripe: a PaymentIntent -> core `PurchaseState`, and the re-read that stores it.

Decisions this module owns:
- Which PaymentIntents are purchases. Only those entitle created, for a payment-mode Checkout Session or
  for the Payment Element: they carry `metadata.entitle_product` (and `entitle_quantity`). A subscription
  invoice's PaymentIntent carries neither and is left to the subscription code; so is anything made by
  hand in the dashboard.
- When a purchase counts. Only a `succeeded` PaymentIntent is a purchase: one still processing, waiting
  for 3-D Secure or declined applies nothing (the `payment_intent.succeeded` that follows does).
- Refunds and disputes. `refunded_amount` is the charge's `amount_refunded`; a full refund revokes, and
  so does a dispute unless the merchant won it (Stripe has already taken the money back while a dispute
  is open). A dispute won after a revocation restores the purchase.
- Vendor timestamp. As for subscriptions (see `mapping.py`), every handler re-reads the PaymentIntent
  from Stripe under the per-customer lock; the moment that read started is when the state was true,
  so a later read always wins and a replayed or reordered event can never bring an older state back.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from entitle.core.catalog import Catalog, ProductType
from entitle.core.purchases import PurchaseSink, PurchaseState
from entitle.core.subscriptions import Environment, Store
from entitle.db.types import utcnow
from entitle.providers.stripe.client import StripeGateway
from entitle.providers.stripe.errors import StripeObjectMissing
from entitle.providers.stripe.mapping import from_timestamp, object_id
from entitle.providers.stripe.reconcile import Reconciler

log = logging.getLogger(__name__)

# Metadata entitle writes on every PaymentIntent it creates (directly or through Checkout).
PRODUCT_KEY = "entitle_product"
QUANTITY_KEY = "entitle_quantity"
ACCOUNT_KEY = "account_id"
# Dispute statuses in which the merchant keeps the money: the purchase stands.
_MERCHANT_KEEPS = frozenset({"won", "warning_closed", "warning_needs_response", "warning_under_review"})


def is_entitle_purchase(intent: Mapping[str, Any]) -> bool:
    return bool((intent.get("metadata") or {}).get(PRODUCT_KEY))


def purchase_metadata(account_id: str, product: str, quantity: int) -> dict[str, str]:
    """What entitle writes on a one-time PaymentIntent so any later read knows what was bought."""
    return {ACCOUNT_KEY: account_id, PRODUCT_KEY: product, QUANTITY_KEY: str(quantity)}


def _quantity(metadata: Mapping[str, Any]) -> int:
    try:
        return max(1, int(metadata.get(QUANTITY_KEY) or 1))
    except (TypeError, ValueError):
        return 1


def _timestamp(value: Any) -> datetime | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return from_timestamp(value)
    return None


def purchase_state(
    intent: Mapping[str, Any],
    *,
    account_id: uuid.UUID,
    catalog: Catalog,
    read_at: datetime,
    disputes: Sequence[Mapping[str, Any]] = (),
) -> PurchaseState | None:
    """The core state of a succeeded PaymentIntent entitle created; None for anything else."""
    if not is_entitle_purchase(intent) or intent.get("status") != "succeeded":
        return None
    metadata = intent.get("metadata") or {}
    product = catalog.product(str(metadata[PRODUCT_KEY]))
    charge = intent.get("latest_charge")
    charge = charge if isinstance(charge, Mapping) else {}
    amount = intent.get("amount_received") or intent.get("amount")
    refunded = int(charge.get("amount_refunded") or 0)
    purchased_at = _timestamp(charge.get("created")) or _timestamp(intent.get("created")) or read_at
    revoked_at: datetime | None = None
    reason: str | None = None
    if charge.get("refunded") or (amount and refunded >= amount):
        refunds = (charge.get("refunds") or {}).get("data") or []
        times = [t for r in refunds if (t := _timestamp(r.get("created"))) is not None]
        revoked_at, reason = (max(times) if times else read_at), "refunded"
    lost = [d for d in disputes if d.get("status") not in _MERCHANT_KEEPS]
    if lost and revoked_at is None:
        times = [t for d in lost if (t := _timestamp(d.get("created"))) is not None]
        revoked_at, reason = (min(times) if times else read_at), "disputed"
    return PurchaseState(
        store=Store.STRIPE,
        store_purchase_id=str(intent["id"]),
        account_id=account_id,
        product=product.key if product is not None else None,
        store_product_id=product.stripe.lookup_key
        if product is not None and product.stripe is not None
        else str(metadata[PRODUCT_KEY]),
        # A product the catalog no longer knows grants nothing; a consumable grants nothing without one.
        type=product.type if product is not None else ProductType.CONSUMABLE,
        quantity=_quantity(metadata),
        purchased_at=purchased_at,
        environment=Environment.PRODUCTION if intent.get("livemode") else Environment.SANDBOX,
        vendor_updated_at=read_at,
        amount=int(amount) if amount is not None else None,
        currency=str(intent.get("currency")) if intent.get("currency") else None,
        refunded_amount=refunded,
        revoked_at=revoked_at,
        revocation_reason=reason,
        raw=dict(intent),
        store_customer_id=object_id(intent.get("customer")),
    )


@dataclass(frozen=True)
class PurchaseReconciler:
    """Re-read a PaymentIntent from Stripe and store what it says now through the purchase sink."""

    gateway: StripeGateway
    catalog: Catalog
    sink: PurchaseSink
    # Finds the account behind a customer, exactly as for subscriptions.
    accounts: Reconciler

    async def payment_intent(
        self,
        db: AsyncSession,
        intent_id: str,
        *,
        fresh: dict[str, Any] | None = None,
        read_at: datetime | None = None,
    ) -> str:
        """Re-read `intent_id` (or use `fresh`, requested at `read_at`), store it, return an outcome."""
        if fresh is None:
            read_at = utcnow()
            try:
                fresh = await self.gateway.retrieve_payment_intent(intent_id)
            except StripeObjectMissing:
                return f"ignored: {intent_id} does not exist at Stripe"
        elif read_at is None:
            raise ValueError("a payment intent read elsewhere needs the moment its request started")
        if not is_entitle_purchase(fresh):
            return f"ignored: {intent_id} is not a one-time purchase made through entitle"
        if fresh.get("status") != "succeeded":
            return f"{intent_id}: {fresh.get('status')}, nothing to apply until it succeeds"
        charge = fresh.get("latest_charge")
        disputes: list[dict[str, Any]] = []
        if isinstance(charge, Mapping) and charge.get("disputed"):
            disputes = await self.gateway.disputes_of(intent_id)
        account_id = await self.accounts.account_for(db, object_id(fresh.get("customer")), fresh)
        if account_id is None:
            return f"ignored: {intent_id} belongs to a customer entitle did not create"
        state = purchase_state(
            fresh, account_id=account_id, catalog=self.catalog, read_at=read_at, disputes=disputes
        )
        if state is None:  # pragma: no cover - both conditions were checked above
            return f"ignored: {intent_id}"
        applied = await self.sink.apply(db, state)
        summary = "revoked" if state.revoked_at else ("partly refunded" if state.refunded_amount else "paid")
        return f"{intent_id}: {state.product} x{state.quantity} {summary}" + (
            "" if applied else " (newer state kept)"
        )
