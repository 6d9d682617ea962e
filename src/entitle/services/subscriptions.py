"""Store subscriptions in: the one door every provider uses to record what a store said.

Providers map a vendor object to a `SubscriptionState` and call `apply_subscription_state`. Events
arrive late, twice and out of order, so the write is keyed by (store, store_subscription_id) and
guarded by the vendor's own timestamp: a snapshot older than the stored one changes nothing, an equal
one is applied again (idempotent). The account's entitlements are recomputed in the same transaction.

Two deliveries for the same subscription may race. The row is created with INSERT ... ON CONFLICT DO
NOTHING (so two first writers cannot both insert) and otherwise read back with SELECT ... FOR UPDATE
(so the second writer waits for the first to commit and then compares against its timestamp). On
SQLite the INSERT is the transaction's first write and takes the database's single write lock, which
serializes the same way.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from entitle.core.models.entitlements import Subscription
from entitle.core.subscriptions import SubscriptionState
from entitle.db.types import json_safe, new_id, utcnow
from entitle.services.entitlements import refresh_entitlements


def _row_values(state: SubscriptionState) -> dict[str, Any]:
    return {
        "account_id": state.account_id,
        "product": state.product,
        "store_product_id": state.store_product_id,
        "status": state.status.value,
        "current_period_end": state.current_period_end,
        "grace_period_ends_at": state.grace_period_ends_at,
        "payment_method": state.payment_method,
        "will_renew": state.will_renew,
        "environment": state.environment.value,
        "store_customer_id": state.store_customer_id,
        "raw": json_safe(state.raw),
        "vendor_updated_at": state.vendor_updated_at,
    }


async def apply_subscription_state(
    db: AsyncSession, state: SubscriptionState, *, now: datetime | None = None
) -> bool:
    """Store `state` unless newer state is already stored; True when it was applied."""
    now = now or utcnow()
    values = _row_values(state)
    dialect = db.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    inserted = await db.scalar(
        insert(Subscription)
        .values(
            id=new_id(),
            store=state.store.value,
            store_subscription_id=state.store_subscription_id,
            created_at=now,
            updated_at=now,
            **values,
        )
        .on_conflict_do_nothing(index_elements=["store", "store_subscription_id"])
        .returning(Subscription.id)
    )
    if inserted is not None:
        await refresh_entitlements(db, state.account_id, now=now)
        return True

    row = await db.scalar(
        select(Subscription)
        .where(
            Subscription.store == state.store.value,
            Subscription.store_subscription_id == state.store_subscription_id,
        )
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if row is None:  # deleted between the two statements; nothing sensible to merge with
        raise RuntimeError(f"subscription {state.store}/{state.store_subscription_id} vanished during upsert")
    if row.vendor_updated_at > state.vendor_updated_at:
        return False
    previous_account = row.account_id
    for name, value in values.items():
        setattr(row, name, value)
    row.updated_at = now
    await db.flush()
    await refresh_entitlements(db, state.account_id, now=now)
    if previous_account != state.account_id:
        # The purchase moved accounts (an App Store restore under another account): the old one loses it.
        await refresh_entitlements(db, previous_account, now=now)
    return True


async def list_subscriptions(db: AsyncSession, account_id: uuid.UUID) -> list[Subscription]:
    """The account's store subscriptions, newest first."""
    rows = await db.scalars(
        select(Subscription)
        .where(Subscription.account_id == account_id)
        .order_by(Subscription.created_at.desc(), Subscription.store, Subscription.store_subscription_id)
    )
    return list(rows)


async def find_subscription(db: AsyncSession, store: str, store_subscription_id: str) -> Subscription | None:
    return await db.scalar(
        select(Subscription).where(
            Subscription.store == store, Subscription.store_subscription_id == store_subscription_id
        )
    )
