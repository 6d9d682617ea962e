"""Store subscriptions in: the one door every provider uses to record what a store said.

Providers map a vendor object to a `SubscriptionState` and call `apply_subscription_state`. Events
arrive late, twice and out of order, so the write is keyed by (store, store_subscription_id) and
guarded by the vendor's own timestamp: a snapshot older than the stored one changes nothing, an equal
one is applied again (idempotent). The account's entitlements are recomputed in the same transaction.

Two deliveries for the same subscription may race. On PostgreSQL the row is read with SELECT ... FOR
UPDATE (so the second writer waits for the first to commit and then compares against its timestamp);
only when there is no row yet is it created with INSERT ... ON CONFLICT DO NOTHING (so two first
writers cannot both insert: the loser waits, inserts nothing and reads the winner's row). On SQLite a
read takes no lock and the driver opens the transaction only at the first write, so there the INSERT
comes first: it takes the database's single write lock before anything is read, which serializes the
same way.

Every delivery of a known subscription runs this, so it is written against the table (SQLAlchemy Core,
statements built once), not the ORM: two statements for the common case, each a fraction of the ORM's
cost. An ORM `Subscription` the session already holds is kept in step with what was written.

The lifecycle events (`subscription.started`, `.renewed`, ...) are derived here, from the stored row
and the new state, by `core.transitions.transitions`, and logged in the same transaction: both stores
come through this door, so both emit the same events from the same rules.
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import replace
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key

from entitle.core.events import record_transitions
from entitle.core.models.entitlements import Subscription
from entitle.core.subscriptions import Environment, Store, SubscriptionState, SubscriptionStatus
from entitle.core.transitions import transitions
from entitle.db.types import json_safe, new_id, utcnow
from entitle.services.access.balances import SUBSCRIPTION_PERIOD, credit_once
from entitle.services.access.entitlements import entitlement_rules, refresh_entitlements, subscription_state
from entitle.services.access.trials import record_trial

# Statuses in which the current period has been paid for (a trial has not; a failed renewal has not).
_PAID_STATUSES = frozenset({SubscriptionStatus.ACTIVE, SubscriptionStatus.CANCELED_AT_PERIOD_END})

_TABLE = cast(Table, Subscription.__table__)

# The columns a new state may change (besides the timestamps every applied state writes).
_STATE_FIELDS = (
    "account_id",
    "product",
    "store_product_id",
    "status",
    "current_period_end",
    "grace_period_ends_at",
    "payment_method",
    "will_renew",
    "environment",
    "store_customer_id",
    "raw",
)

# Built once: constructing a statement costs more than running it on this path.
_LOCK_ROW = (
    select(_TABLE.c.id, _TABLE.c.vendor_updated_at, *(_TABLE.c[name] for name in _STATE_FIELDS))
    .where(
        _TABLE.c.store == bindparam("store"),
        _TABLE.c.store_subscription_id == bindparam("store_subscription_id"),
    )
    .with_for_update()
)
_INSERT = {
    "postgresql": postgresql.insert(_TABLE)
    .on_conflict_do_nothing(index_elements=["store", "store_subscription_id"])
    .returning(_TABLE.c.id),
    "sqlite": sqlite.insert(_TABLE)
    .on_conflict_do_nothing(index_elements=["store", "store_subscription_id"])
    .returning(_TABLE.c.id),
}
# Executed with the changed columns as parameters: only they are written.
_UPDATE = update(_TABLE).where(_TABLE.c.id == bindparam("row_id"))


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
    key = {"store": state.store.value, "store_subscription_id": state.store_subscription_id}
    # Core statements bypass autoflush: whatever the caller added to the session must be written first.
    await db.flush()
    # Even from a snapshot too old to apply: the trial happened whatever the order of the news.
    await record_trial(db, state, entitlement_rules(db).catalog)
    connection = await db.connection()
    dialect = connection.dialect.name
    row = None
    if dialect == "postgresql":
        row = (await connection.execute(_LOCK_ROW, key)).first()
    if row is None:
        inserted = await connection.scalar(
            _INSERT[dialect], {"id": new_id(), **key, "created_at": now, "updated_at": now, **values}
        )
        if inserted is not None:
            await record_transitions(db, transitions(None, state))
            await _credit_period(db, state, now)
            await refresh_entitlements(db, state.account_id, now=now)
            return True
        row = (await connection.execute(_LOCK_ROW, key)).first()
    if row is None:  # deleted between the two statements; nothing sensible to merge with
        raise RuntimeError(f"subscription {state.store}/{state.store_subscription_id} vanished during upsert")
    if row.vendor_updated_at > state.vendor_updated_at:
        return False
    changes = {name: values[name] for name in _STATE_FIELDS if getattr(row, name) != values[name]}
    changes["vendor_updated_at"] = state.vendor_updated_at
    changes["updated_at"] = now
    await connection.execute(_UPDATE, {"row_id": row.id, **changes})
    _sync_loaded(db, row.id, changes)
    # Same transaction as the write: the lifecycle events and the state can never disagree.
    await record_transitions(db, transitions(_stored_state(row, state), state))
    await _credit_period(db, state, now)
    await refresh_entitlements(db, state.account_id, now=now)
    if row.account_id != state.account_id:
        # The purchase moved accounts (an App Store restore under another account): the old one loses it.
        await refresh_entitlements(db, row.account_id, now=now)
    return True


async def _credit_period(db: AsyncSession, state: SubscriptionState, now: datetime) -> None:
    """Credit the product's `grants` for the paid period `state` shows, once per period: the period is
    named by its end, which every renewal moves and nothing else does."""
    product = entitlement_rules(db).catalog.product(state.product) if state.product is not None else None
    if product is None or not product.grants or state.current_period_end is None:
        return
    if state.status not in _PAID_STATUSES or now >= state.current_period_end:
        return
    source = f"subscription:{state.store.value}:{state.store_subscription_id}"
    period = state.current_period_end.isoformat()
    await credit_once(
        db,
        state.account_id,
        dict(product.grants),
        reason=SUBSCRIPTION_PERIOD,
        source=source,
        key=f"{source}:{period}",
    )


def _stored_state(row: Any, incoming: SubscriptionState) -> SubscriptionState:
    """The state the row held before this write, in core terms (the key is the incoming one's)."""
    return replace(
        incoming,
        account_id=row.account_id,
        product=row.product,
        store_product_id=row.store_product_id,
        status=SubscriptionStatus(row.status),
        current_period_end=row.current_period_end,
        grace_period_ends_at=row.grace_period_ends_at,
        payment_method=row.payment_method,
        will_renew=row.will_renew,
        environment=Environment(row.environment),
        store_customer_id=row.store_customer_id,
        raw={},
        vendor_updated_at=row.vendor_updated_at,
    )


def _sync_loaded(db: AsyncSession, row_id: uuid.UUID, changes: dict[str, Any]) -> None:
    """Give a `Subscription` this session already loaded the values just written behind its back."""
    loaded = db.sync_session.identity_map.get(identity_key(Subscription, row_id))
    if loaded is not None:
        for name, value in changes.items():
            set_committed_value(loaded, name, value)


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


class StoredSubscriptions:
    """The core's `SubscriptionSink` over the subscriptions table: what providers are built with."""

    async def apply(self, db: AsyncSession, state: SubscriptionState, *, now: datetime) -> bool:
        return await apply_subscription_state(db, state, now=now)

    async def stored(
        self, db: AsyncSession, store: Store, store_subscription_id: str
    ) -> SubscriptionState | None:
        row = await find_subscription(db, store.value, store_subscription_id)
        if row is None:
            return None
        return dataclasses.replace(subscription_state(row), raw=dict(row.raw or {}))
