"""One-time purchases in: the one door every store records a purchase through.

Providers map a vendor object (a Stripe PaymentIntent, an App Store transaction) to a `PurchaseState`
and call `apply_purchase_state`. As for subscriptions, events arrive late, twice and out of order, so
the write is keyed by (store, store_purchase_id) and guarded by the vendor's own timestamp. In the same
transaction, while the purchase's row is locked:

- the ledger is brought to the purchase's current worth (`core.purchases.credits_of`): the first apply
  credits, a refund takes back, a reversed refund gives back, and a repeat posts nothing, because the
  ledger posts the difference between the worth and what this purchase has already credited;
- the account's event log gets `purchase.completed` / `purchase.refunded` and the money moves
  (`payment.succeeded` / `payment.refunded`, with amount and currency);
- the answer is recomputed (entitlements, purchases, balances) and pushed to open streams.
"""

from __future__ import annotations

import dataclasses
import uuid
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from entitle.core import events
from entitle.core.entitlements import isoformat
from entitle.core.models.purchases import Purchase
from entitle.core.purchases import PurchaseState, credits_of, purchase_expires_at, purchase_ref
from entitle.core.subscriptions import Store
from entitle.db.locks import advisory_xact_lock
from entitle.db.types import json_safe, new_id, utcnow
from entitle.services.access.balances import settle_source
from entitle.services.access.entitlements import entitlement_rules, purchase_state, refresh_entitlements

# The names live in core.events with the rest of the vocabulary; kept here for this module's callers.
PURCHASE_COMPLETED = events.PURCHASE_COMPLETED
PURCHASE_REFUNDED = events.PURCHASE_REFUNDED
PURCHASE_RESTORED = events.PURCHASE_RESTORED
PAYMENT_SUCCEEDED = events.PAYMENT_SUCCEEDED
PAYMENT_REFUNDED = events.PAYMENT_REFUNDED

_TABLE = cast(Table, Purchase.__table__)
_STATE_FIELDS = (
    "account_id",
    "product",
    "store_product_id",
    "type",
    "quantity",
    "purchased_at",
    "amount",
    "currency",
    "refunded_amount",
    "revoked_at",
    "revocation_reason",
    "store_expires_at",
    "family_shared",
    "environment",
    "store_customer_id",
    "raw",
)
_INSERT = {
    "postgresql": postgresql.insert(_TABLE).on_conflict_do_nothing(
        index_elements=["store", "store_purchase_id"]
    ),
    "sqlite": sqlite.insert(_TABLE).on_conflict_do_nothing(index_elements=["store", "store_purchase_id"]),
}


def _values(state: PurchaseState) -> dict[str, Any]:
    return {
        "account_id": state.account_id,
        "product": state.product,
        "store_product_id": state.store_product_id,
        "type": state.type.value,
        "quantity": state.quantity,
        "purchased_at": state.purchased_at,
        "amount": state.amount,
        "currency": state.currency,
        "refunded_amount": state.refunded_amount,
        "revoked_at": state.revoked_at,
        "revocation_reason": state.revocation_reason,
        "store_expires_at": state.store_expires_at,
        "family_shared": state.family_shared,
        "environment": state.environment.value,
        "store_customer_id": state.store_customer_id,
        "raw": json_safe(state.raw),
    }


async def _lock(db: AsyncSession, store: Store, store_purchase_id: str) -> Purchase | None:
    query = select(Purchase).where(
        Purchase.store == store.value, Purchase.store_purchase_id == store_purchase_id
    )
    if db.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    return cast(Purchase | None, await db.scalar(query.execution_options(populate_existing=True)))


async def apply_purchase_state(
    db: AsyncSession, state: PurchaseState, *, now: datetime | None = None
) -> bool:
    """Store `state` unless newer state is stored, settle its ledger and answer; True when applied."""
    now = now or utcnow()
    values = _values(state)
    await db.flush()
    # One account's purchases are applied one at a time. The inbox serializes a customer's events, but a
    # dispute event names no customer, so it is worked on beside the customer's other events: without
    # this, two purchases of one account lock the purchase, balance and answer rows in different orders
    # and PostgreSQL aborts one of them as a deadlock.
    await advisory_xact_lock(db, f"entitle-account-purchases:{state.account_id}")
    # Insert first: on SQLite it takes the single write lock before anything is read; on PostgreSQL two
    # first writers cannot both insert (the loser waits, inserts nothing and locks the winner's row).
    inserted = await db.scalar(
        _INSERT[db.get_bind().dialect.name]
        .values(
            id=new_id(),
            store=state.store.value,
            store_purchase_id=state.store_purchase_id,
            vendor_updated_at=state.vendor_updated_at,
            created_at=now,
            updated_at=now,
            **values,
        )
        .returning(_TABLE.c.id)
    )
    row = await _lock(db, state.store, state.store_purchase_id)
    if row is None:
        raise RuntimeError(f"purchase {state.store}/{state.store_purchase_id} vanished during upsert")
    before = None if inserted is not None else purchase_state(row)
    if before is not None:
        if row.vendor_updated_at > state.vendor_updated_at:
            return False
        changes = {name: values[name] for name in _STATE_FIELDS if getattr(row, name) != values[name]}
        changes["vendor_updated_at"] = state.vendor_updated_at
        changes["updated_at"] = now
        await db.execute(update(_TABLE).where(_TABLE.c.id == row.id).values(**changes))
    catalog = entitlement_rules(db).catalog
    source = purchase_ref(state.store, state.store_purchase_id)
    moved_from = before.account_id if before is not None and before.account_id != state.account_id else None
    if moved_from is not None:
        # The purchase now belongs to another account (an App Store restore): what it credited the old
        # one goes back first, so its credits are held once, by its owner.
        await settle_source(db, moved_from, source, {}, now=now)
    await settle_source(db, state.account_id, source, credits_of(state, catalog), now=now)
    await _record_changes(db, before, state)
    await refresh_entitlements(db, state.account_id, now=now)
    if moved_from is not None:
        await refresh_entitlements(db, moved_from, now=now)
    return True


async def _record_changes(db: AsyncSession, before: PurchaseState | None, after: PurchaseState) -> None:
    """Log what this apply changed: a completion, a refund, a reversal; each with the money it moved."""
    catalog = entitlement_rules(db).catalog
    data: dict[str, Any] = {
        "store": after.store.value,
        "purchase_id": after.store_purchase_id,
        "product": after.product,
        "type": after.type.value,
        "quantity": after.quantity,
        "expires_at": isoformat(purchase_expires_at(after, catalog)),
    }
    money = {"amount": after.amount, "currency": after.currency, "environment": after.environment.value}
    if before is None:
        await events.record_event(db, after.account_id, PURCHASE_COMPLETED, {**data, **money})
        # No amount, no payment: a Family Sharing member's purchase was paid by the purchaser.
        if after.amount is not None:
            await events.record_event(db, after.account_id, PAYMENT_SUCCEEDED, {**data, **money})
    refunded_before = 0 if before is None else before.refunded_amount
    if after.refunded_amount > refunded_before:
        await events.record_event(
            db,
            after.account_id,
            PAYMENT_REFUNDED,
            {**data, **money, "amount_refunded": after.refunded_amount - refunded_before},
        )
    was_revoked = before is not None and before.revoked_at is not None
    if after.revoked_at is not None and not was_revoked:
        await events.record_event(
            db,
            after.account_id,
            PURCHASE_REFUNDED,
            {**data, **money, "reason": after.revocation_reason, "refunded_at": isoformat(after.revoked_at)},
        )
    elif after.revoked_at is None and was_revoked:
        await events.record_event(db, after.account_id, PURCHASE_RESTORED, data)


async def list_purchases(db: AsyncSession, account_id: uuid.UUID) -> list[Purchase]:
    """The account's purchases, newest first."""
    rows = await db.scalars(
        select(Purchase)
        .where(Purchase.account_id == account_id)
        .order_by(Purchase.purchased_at.desc(), Purchase.store, Purchase.store_purchase_id)
    )
    return list(rows)


async def find_purchase(db: AsyncSession, store: Store, store_purchase_id: str) -> Purchase | None:
    return cast(
        Purchase | None,
        await db.scalar(
            select(Purchase).where(
                Purchase.store == store.value, Purchase.store_purchase_id == store_purchase_id
            )
        ),
    )


class StoredPurchases:
    """The core's `PurchaseSink` over the purchases table: what providers are built with."""

    async def apply(self, db: AsyncSession, state: PurchaseState) -> bool:
        return await apply_purchase_state(db, state)

    async def stored(self, db: AsyncSession, store: Store, store_purchase_id: str) -> PurchaseState | None:
        row = await find_purchase(db, store, store_purchase_id)
        if row is None:
            return None
        return dataclasses.replace(purchase_state(row), raw=dict(row.raw or {}))
