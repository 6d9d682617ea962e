"""Entitlements: recompute an account's answer when its sources change, and read it back cheaply.

The decision of this module is where the work happens. `refresh_entitlements` runs the engine inside the
transaction that changed a subscription or a grant, stores one row per (account, entitlement) and logs
`entitlement.granted` / `entitlement.revoked` for what changed; `read_entitlements` serves the stored
rows. Time also changes answers (a period ends, a grant expires) and nobody writes then, so each stored
answer carries `recheck_at`, the next moment time alone can change it; a read past that moment
recomputes in memory instead of trusting the row, and `refresh_due_entitlements` lets a worker bring
such rows (and their events) up to date. No background job is needed for the answer to be right.

The catalog and public URL travel with the session (`bind_entitlement_rules`): providers call
`apply_subscription_state(db, state)` with nothing but a session, and the answer still needs both.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from entitle.core import events
from entitle.core.catalog import Catalog
from entitle.core.entitlements import (
    EntitlementAnswer,
    Grant,
    compute_entitlements,
    isoformat,
    management_url,
)
from entitle.core.models.accounts import Account
from entitle.core.models.entitlements import AccountEntitlement, PromotionalGrant, Subscription
from entitle.core.subscriptions import Environment, Store, SubscriptionState, SubscriptionStatus
from entitle.db.engine import Database
from entitle.db.types import utcnow

RULES_KEY = "entitle.entitlement_rules"


@dataclass(frozen=True)
class EntitlementRules:
    catalog: Catalog
    # Base of the `management_url` for Stripe subscriptions (the portal endpoint).
    public_url: str


def bind_entitlement_rules(database: Database, catalog: Catalog, public_url: str) -> None:
    """Make every session of `database` carry the catalog and public URL (called by build_context)."""
    database.set_session_info(RULES_KEY, EntitlementRules(catalog=catalog, public_url=public_url))


def entitlement_rules(db: AsyncSession) -> EntitlementRules:
    rules = db.info.get(RULES_KEY)
    if not isinstance(rules, EntitlementRules):
        raise RuntimeError("this session has no entitlement rules; make sessions from AppContext.database")
    return rules


@dataclass
class EntitlementsChange:
    """What a refresh did to one account."""

    answers: dict[str, EntitlementAnswer]
    granted: list[str] = field(default_factory=list)
    revoked: list[str] = field(default_factory=list)
    # Every entitlement whose stored answer changed in any way (expiry, source, renewal, ...).
    changed: list[str] = field(default_factory=list)
    duplicates_detected: list[str] = field(default_factory=list)


# Everything the engine reads; the raw vendor object can be large and the engine never looks at it.
_STATE_COLUMNS = (
    Subscription.store,
    Subscription.store_subscription_id,
    Subscription.account_id,
    Subscription.product,
    Subscription.store_product_id,
    Subscription.status,
    Subscription.current_period_end,
    Subscription.will_renew,
    Subscription.environment,
    Subscription.vendor_updated_at,
    Subscription.store_customer_id,
    Subscription.grace_period_ends_at,
    Subscription.payment_method,
)


def subscription_state(row: Any) -> SubscriptionState:
    """The core view of a stored subscription: a `Subscription` or a row of `_STATE_COLUMNS`."""
    return SubscriptionState(
        store=Store(row.store),
        store_subscription_id=row.store_subscription_id,
        account_id=row.account_id,
        product=row.product,
        store_product_id=row.store_product_id,
        status=SubscriptionStatus(row.status),
        current_period_end=row.current_period_end,
        will_renew=row.will_renew,
        environment=Environment(row.environment),
        vendor_updated_at=row.vendor_updated_at,
        store_customer_id=row.store_customer_id,
        grace_period_ends_at=row.grace_period_ends_at,
        payment_method=row.payment_method,
    )


def _grant(row: Any) -> Grant:
    return Grant(
        id=str(row.id),
        entitlement=row.entitlement,
        expires_at=row.expires_at,
        starts_at=row.starts_at,
        revoked_at=row.revoked_at,
    )


# Every provider event ends in a refresh, so its statements are built once and run on the session's
# connection (SQLAlchemy Core): plain rows, none of the ORM's bookkeeping, a fraction of its cost.
_ACCOUNTS = cast(Table, Account.__table__)
_GRANTS = cast(Table, PromotionalGrant.__table__)
_ANSWERS = cast(Table, AccountEntitlement.__table__)
_SUBSCRIPTIONS = cast(Table, Subscription.__table__)
_READ_STATES = select(*(_SUBSCRIPTIONS.c[column.key] for column in _STATE_COLUMNS)).where(
    _SUBSCRIPTIONS.c.account_id == bindparam("account_id")
)
_READ_GRANTS = select(
    _GRANTS.c.id, _GRANTS.c.entitlement, _GRANTS.c.expires_at, _GRANTS.c.starts_at, _GRANTS.c.revoked_at
).where(
    _GRANTS.c.account_id == bindparam("account_id"),
    _GRANTS.c.revoked_at.is_(None),
    _GRANTS.c.expires_at > bindparam("now"),
)
# NO KEY UPDATE, because inserting a subscription or grant already holds KEY SHARE on the account
# (foreign key) and FOR UPDATE would deadlock two such writers. SQLite serializes writers anyway.
_LOCK_ACCOUNT = (
    select(_ACCOUNTS.c.id).where(_ACCOUNTS.c.id == bindparam("account_id")).with_for_update(key_share=True)
)
_READ_STORED = select(
    _ANSWERS.c.entitlement,
    _ANSWERS.c.active,
    _ANSWERS.c.source,
    _ANSWERS.c.source_id,
    _ANSWERS.c.recheck_at,
    _ANSWERS.c.answer,
).where(_ANSWERS.c.account_id == bindparam("account_id"))
_INSERT_ANSWER = insert(_ANSWERS)
# Executed with the new column values as parameters; the key travels under names no column has.
_UPDATE_ANSWER = update(_ANSWERS).where(
    _ANSWERS.c.account_id == bindparam("key_account_id"),
    _ANSWERS.c.entitlement == bindparam("key_entitlement"),
)
_DELETE_ANSWER = delete(_ANSWERS).where(
    _ANSWERS.c.account_id == bindparam("account_id"), _ANSWERS.c.entitlement == bindparam("entitlement")
)


async def _compute(
    connection: AsyncConnection, rules: EntitlementRules, account_id: uuid.UUID, now: datetime
) -> dict[str, EntitlementAnswer]:
    subscription_rows = await connection.execute(_READ_STATES, {"account_id": account_id})
    grant_rows = await connection.execute(_READ_GRANTS, {"account_id": account_id, "now": now})
    return compute_entitlements(
        [subscription_state(row) for row in subscription_rows],
        [_grant(row) for row in grant_rows],
        rules.catalog,
        now,
        public_url=rules.public_url,
    )


async def compute_for_account(
    db: AsyncSession, account_id: uuid.UUID, *, now: datetime
) -> dict[str, EntitlementAnswer]:
    """Run the engine over the account's current sources, without storing anything."""
    rules = entitlement_rules(db)
    await db.flush()  # Core reads below do not autoflush
    return await _compute(await db.connection(), rules, account_id, now)


async def refresh_entitlements(
    db: AsyncSession, account_id: uuid.UUID, *, now: datetime | None = None
) -> EntitlementsChange:
    """Recompute the account's entitlements from its sources, store them and log what changed."""
    now = now or utcnow()
    rules = entitlement_rules(db)
    # Core statements bypass autoflush: a source the caller just added must be written before it is read.
    await db.flush()
    connection = await db.connection()
    # Serialize refreshes of one account: a second writer waits here and then reads the first one's
    # committed sources, so two concurrent changes can never leave an answer that misses one of them.
    # The reads must be statements of their own, after this one: in READ COMMITTED a statement that
    # waited for a lock still reads the other tables as they were when it started.
    if connection.dialect.name == "postgresql":  # SQLite has no row locks; its writers take turns anyway
        await connection.execute(_LOCK_ACCOUNT, {"account_id": account_id})
    answers = await _compute(connection, rules, account_id, now)
    stored = {
        row.entitlement: row for row in await connection.execute(_READ_STORED, {"account_id": account_id})
    }
    change = EntitlementsChange(answers=answers)
    for key, answer in answers.items():
        await _store_answer(db, connection, account_id, answer, stored.get(key), change, now)
    for key in stored.keys() - answers.keys():  # removed from the catalog
        await connection.execute(_DELETE_ANSWER, {"account_id": account_id, "entitlement": key})
    return change


async def _store_answer(
    db: AsyncSession,
    connection: AsyncConnection,
    account_id: uuid.UUID,
    answer: EntitlementAnswer,
    row: Any,
    change: EntitlementsChange,
    now: datetime,
) -> None:
    """Write one answer unless the stored row already says exactly this; log what changed."""
    key = answer.entitlement
    document = answer.to_json()
    if (
        row is not None
        and row.answer == document
        and row.recheck_at == answer.recheck_at
        and row.source_id == answer.source_id
    ):
        return
    columns = {
        "active": answer.active,
        "source": answer.store.value if answer.store is not None else None,
        "source_id": answer.source_id,
        "expires_at": answer.expires_at,
        "recheck_at": answer.recheck_at,
        "answer": document,
        "updated_at": now,
    }
    if row is None:
        await connection.execute(_INSERT_ANSWER, {"account_id": account_id, "entitlement": key, **columns})
        was_active, previous_source, previous_source_id = False, None, None
        previous_duplicates: set[tuple[str, str]] = set()
    else:
        await connection.execute(
            _UPDATE_ANSWER, {"key_account_id": account_id, "key_entitlement": key, **columns}
        )
        was_active, previous_source, previous_source_id = row.active, row.source, row.source_id
        previous_duplicates = {
            (d["store"], d["id"]) for d in (row.answer or {}).get("duplicate_subscriptions", [])
        }
    change.changed.append(key)

    if answer.active and not was_active:
        change.granted.append(key)
        await events.record_event(
            db,
            account_id,
            events.ENTITLEMENT_GRANTED,
            {
                "entitlement": key,
                "store": document["store"],
                "product": answer.product,
                "source_id": answer.source_id,
                "expires_at": document["expires_at"],
            },
        )
    elif was_active and not answer.active:
        change.revoked.append(key)
        await events.record_event(
            db,
            account_id,
            events.ENTITLEMENT_REVOKED,
            {"entitlement": key, "store": previous_source, "source_id": previous_source_id},
        )
    duplicates = {(ref.store.value, ref.store_subscription_id) for ref in answer.duplicate_subscriptions}
    if duplicates - previous_duplicates:
        change.duplicates_detected.append(key)
        await events.record_event(
            db,
            account_id,
            events.DUPLICATE_SUBSCRIPTION,
            {"entitlement": key, "subscriptions": document["duplicate_subscriptions"]},
        )


async def refresh_due_entitlements(db: AsyncSession, *, now: datetime | None = None, limit: int = 100) -> int:
    """Refresh accounts whose stored answers time has overtaken, so their events get written; for a worker."""
    now = now or utcnow()
    account_ids = (
        await db.scalars(
            select(AccountEntitlement.account_id)
            .where(AccountEntitlement.recheck_at <= now)
            .distinct()
            .limit(limit)
        )
    ).all()
    for account_id in account_ids:
        await refresh_entitlements(db, account_id, now=now)
    return len(account_ids)


_SUBSCRIPTION_COLUMNS = (
    Subscription.store,
    Subscription.store_subscription_id,
    Subscription.product,
    Subscription.status,
    Subscription.environment,
    Subscription.current_period_end,
    Subscription.grace_period_ends_at,
    Subscription.will_renew,
    Subscription.payment_method,
)


# Built once: constructing a statement costs more than running it on the hot read path.
_READ_ANSWERS = (
    select(AccountEntitlement.entitlement, AccountEntitlement.answer, AccountEntitlement.recheck_at)
    .add_columns(*_SUBSCRIPTION_COLUMNS)
    .outerjoin(Subscription, Subscription.account_id == AccountEntitlement.account_id)
    .where(AccountEntitlement.account_id == bindparam("account_id"))
    .order_by(Subscription.created_at.desc(), Subscription.store, Subscription.store_subscription_id)
)


async def read_entitlements(
    db: AsyncSession, account_id: uuid.UUID, *, now: datetime | None = None
) -> dict[str, Any]:
    """The `GET /v1/me/entitlements` body from the stored answers: one indexed read, no recomputation."""
    now = now or utcnow()
    rules = entitlement_rules(db)
    # One round trip: each stored answer joined with each of the account's subscriptions (a handful of
    # each). Every change to a source rewrites the answers, so an account with subscriptions has rows.
    # Core execution on the session's connection: plain rows, none of the ORM's bookkeeping.
    connection = await db.connection()
    rows = (await connection.execute(_READ_ANSWERS, {"account_id": account_id})).all()
    stored: dict[str, Any] = {}
    subscriptions: dict[tuple[str, str], dict[str, Any]] = {}
    overtaken = False
    for row in rows:
        stored[row.entitlement] = row.answer
        overtaken = overtaken or (row.recheck_at is not None and row.recheck_at <= now)
        if (
            row.store_subscription_id is not None
            and (row.store, row.store_subscription_id) not in subscriptions
        ):
            subscriptions[(row.store, row.store_subscription_id)] = _subscription_json(row, rules.public_url)
    entitlements: dict[str, Any]
    if overtaken:
        # Time has overtaken a stored answer (something expired or a grant started): the stored row
        # may be wrong, so answer from the sources. A write (or the worker) stores it later.
        answers = await compute_for_account(db, account_id, now=now)
        entitlements = {key: answer.to_json() for key, answer in answers.items()}
    else:
        entitlements = {
            key: stored.get(key) or EntitlementAnswer(entitlement=key, active=False).to_json()
            for key in rules.catalog.entitlements
        }
    return {"entitlements": entitlements, "subscriptions": list(subscriptions.values())}


def _subscription_json(row: Any, public_url: str) -> dict[str, Any]:
    store = Store(row.store)
    return {
        "store": store.value,
        "id": row.store_subscription_id,
        "product": row.product,
        "status": row.status,
        "environment": row.environment,
        "current_period_end": isoformat(row.current_period_end),
        "grace_period_ends_at": isoformat(row.grace_period_ends_at),
        "will_renew": row.will_renew,
        "management_url": management_url(store, public_url),
        "payment_method": row.payment_method,
    }
