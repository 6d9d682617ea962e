"""One trial per account per entitlement, whichever store gave it.

A store reports that a subscription had a trial (Stripe's `trial_start`, an App Store transaction with an
introductory offer); providers put that on the core state as `trial_started_at`, and every state that
carries it records one `trials` row per entitlement its product grants, unless the account already had a
trial for that entitlement. The row is never updated or removed with the subscription's: an App Store
renewal replaces the stored transaction (which then no longer shows the offer), and the trial must stay
used. Selling on the web asks `trial_days_for` before offering the catalog's `trial_days`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from entitle.core.catalog import Catalog, Product
from entitle.core.models.entitlements import Trial
from entitle.core.subscriptions import SubscriptionState, SubscriptionStatus
from entitle.db.types import utcnow


async def record_trial(db: AsyncSession, state: SubscriptionState, catalog: Catalog) -> None:
    """Note that `state`'s account has had its trial for each entitlement of `state`'s product."""
    started = state.trial_started_at
    if started is None and state.status is SubscriptionStatus.TRIALING:
        # A store that says "in a trial" without saying since when: it began no later than now.
        started = state.vendor_updated_at
    if started is None:
        return
    rows = [
        {
            "account_id": state.account_id,
            "entitlement": entitlement,
            "store": state.store.value,
            "store_subscription_id": state.store_subscription_id,
            "product": state.product,
            "started_at": started,
            "created_at": utcnow(),
        }
        for entitlement in catalog.entitlements_of(state.product)
    ]
    if not rows:
        return
    insert = postgresql.insert if db.get_bind().dialect.name == "postgresql" else sqlite.insert
    # The first trial stays: a second one (a store that gave it anyway) does not move the record.
    await db.execute(insert(Trial).values(rows).on_conflict_do_nothing())


async def had_trial(db: AsyncSession, account_id: uuid.UUID, entitlements: Iterable[str]) -> bool:
    """Whether the account has had a trial for any of `entitlements`, in any store."""
    found = await db.scalar(
        select(Trial.entitlement)
        .where(Trial.account_id == account_id, Trial.entitlement.in_(list(entitlements)))
        .limit(1)
    )
    return found is not None


async def entitlements_trialed(db: AsyncSession, account_id: uuid.UUID) -> frozenset[str]:
    """The entitlements whose trial the account has had."""
    rows = await db.scalars(select(Trial.entitlement).where(Trial.account_id == account_id))
    return frozenset(rows.all())


async def trial_days_for(db: AsyncSession, account_id: uuid.UUID | None, product: Product) -> int | None:
    """The trial to offer `account_id` on `product` on the web: the catalog's, unless one was had.

    None for no trial. A visitor (no account) is shown the catalog's trial; it is checked again when
    they buy, signed in.
    """
    days = product.stripe.trial_days if product.stripe is not None else None
    if not days:
        return None
    if account_id is not None and await had_trial(db, account_id, product.entitlements):
        return None
    return days
