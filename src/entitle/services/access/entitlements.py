"""Entitlements: recompute an account's answer when its sources change, and read it back cheaply.

The decision of this module is where the work happens. `refresh_entitlements` runs the engine inside the
transaction that changed a subscription or a grant, stores one row per (account, entitlement) and logs
`entitlement.granted` / `entitlement.revoked` for what changed; `read_entitlements` serves the stored
rows. Time also changes answers (a period ends, a grant expires) and nobody writes then, so each stored
answer carries `recheck_at`, the next moment time alone can change it; a read past that moment
recomputes in memory instead of trusting the row, and `refresh_due_entitlements` lets a worker bring
such rows (and their events) up to date. No background job is needed for the answer to be right.

The whole body a client reads (entitlements and subscriptions) is stored too, as the exact bytes sent
(`account_answers`), so `GET /v1/me/entitlements` is one query that checks the session and returns them;
when the body changes, listeners (open streams, in any process) are told once the transaction commits.

The catalog and public URL travel with the session (`bind_entitlement_rules`): providers call
`apply_subscription_state(db, state)` with nothing but a session, and the answer still needs both.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, delete, insert, null, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from entitle.core import events
from entitle.core.catalog import Catalog, ProductType
from entitle.core.entitlements import (
    EntitlementAnswer,
    Grant,
    compute_entitlements,
    isoformat,
    management_url,
)
from entitle.core.models.accounts import Account, RefreshTokenFamily
from entitle.core.models.entitlements import (
    AccountAnswer,
    AccountEntitlement,
    PromotionalGrant,
    Subscription,
)
from entitle.core.models.purchases import Balance, Purchase
from entitle.core.purchases import PurchaseState, purchase_expires_at
from entitle.core.subscriptions import Environment, Store, SubscriptionState, SubscriptionStatus
from entitle.db.engine import Database
from entitle.db.types import utcnow
from entitle.errors import Unauthorized
from entitle.providers.stripe.promotions import discount_summary
from entitle.services.delivery.changes import change_bus

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
# Newest first: the order the answer body lists the account's subscriptions in.
_READ_STATES = (
    select(
        *(_SUBSCRIPTIONS.c[column.key] for column in _STATE_COLUMNS),
        # Only the part of the raw object the answer shows (a Stripe subscription's discounts), read by
        # the database, so the whole vendor object is never loaded for an answer.
        _SUBSCRIPTIONS.c.raw["discounts"].label("discounts"),
    )
    .where(_SUBSCRIPTIONS.c.account_id == bindparam("account_id"))
    .order_by(
        _SUBSCRIPTIONS.c.created_at.desc(), _SUBSCRIPTIONS.c.store, _SUBSCRIPTIONS.c.store_subscription_id
    )
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
_BODIES = cast(Table, AccountAnswer.__table__)
_PURCHASES = cast(Table, Purchase.__table__)
_BALANCES = cast(Table, Balance.__table__)
# Everything the engine and the body read of a purchase; newest first, as the body lists them.
_READ_PURCHASES = (
    select(*(column for column in _PURCHASES.c if column.key != "raw"))
    .where(_PURCHASES.c.account_id == bindparam("account_id"))
    .order_by(_PURCHASES.c.purchased_at.desc(), _PURCHASES.c.store, _PURCHASES.c.store_purchase_id)
)
_READ_BALANCES = select(_BALANCES.c.currency, _BALANCES.c.amount).where(
    _BALANCES.c.account_id == bindparam("account_id")
)


def _upsert_body(insert_for: Any) -> Any:
    """Insert or replace the account's body, and only when it differs: RETURNING yields a row exactly
    when something was written, which is when listeners must hear of it."""
    statement = insert_for(_BODIES)
    return statement.on_conflict_do_update(
        index_elements=["account_id"],
        set_={
            "body": statement.excluded.body,
            "recheck_at": statement.excluded.recheck_at,
            "updated_at": statement.excluded.updated_at,
        },
        where=(_BODIES.c.body != statement.excluded.body)
        | (_BODIES.c.recheck_at.is_distinct_from(statement.excluded.recheck_at)),
    ).returning(_BODIES.c.account_id)


_UPSERT_BODY = {"postgresql": _upsert_body(postgresql.insert), "sqlite": _upsert_body(sqlite.insert)}
_DELETE_ANSWER = delete(_ANSWERS).where(
    _ANSWERS.c.account_id == bindparam("account_id"), _ANSWERS.c.entitlement == bindparam("entitlement")
)


@dataclass(frozen=True)
class _Sources:
    """What an account's answer is made of, as read in one go."""

    subscriptions: list[Any]
    purchases: list[PurchaseState]
    balances: dict[str, int]


def purchase_state(row: Any) -> PurchaseState:
    """The core view of a stored purchase: a `Purchase` or a row of `_READ_PURCHASES`."""
    return PurchaseState(
        store=Store(row.store),
        store_purchase_id=row.store_purchase_id,
        account_id=row.account_id,
        product=row.product,
        store_product_id=row.store_product_id,
        type=ProductType(row.type),
        quantity=row.quantity,
        purchased_at=row.purchased_at,
        environment=Environment(row.environment),
        vendor_updated_at=row.vendor_updated_at,
        amount=row.amount,
        currency=row.currency,
        refunded_amount=row.refunded_amount,
        revoked_at=row.revoked_at,
        revocation_reason=row.revocation_reason,
        store_expires_at=row.store_expires_at,
        store_customer_id=row.store_customer_id,
        family_shared=row.family_shared,
    )


async def _compute(
    connection: AsyncConnection, rules: EntitlementRules, account_id: uuid.UUID, now: datetime
) -> tuple[dict[str, EntitlementAnswer], _Sources]:
    """The engine's answers and the sources they came from (subscriptions and purchases newest first)."""
    params = {"account_id": account_id}
    subscription_rows = list((await connection.execute(_READ_STATES, params)).all())
    grant_rows = await connection.execute(_READ_GRANTS, {"account_id": account_id, "now": now})
    purchases = [purchase_state(row) for row in await connection.execute(_READ_PURCHASES, params)]
    balances = {row.currency: int(row.amount) for row in await connection.execute(_READ_BALANCES, params)}
    answers = compute_entitlements(
        [subscription_state(row) for row in subscription_rows],
        [_grant(row) for row in grant_rows],
        rules.catalog,
        now,
        public_url=rules.public_url,
        purchases=purchases,
    )
    return answers, _Sources(subscription_rows, purchases, balances)


def _answer_body(
    rules: EntitlementRules, answers: dict[str, EntitlementAnswer], sources: _Sources
) -> dict[str, Any]:
    catalog = rules.catalog
    return {
        "entitlements": {
            key: answers.get(key, EntitlementAnswer(entitlement=key, active=False)).to_json()
            for key in catalog.entitlements
        },
        "subscriptions": [_subscription_json(row, rules.public_url) for row in sources.subscriptions],
        "purchases": [_purchase_json(p, purchase_expires_at(p, catalog)) for p in sources.purchases],
        "balances": balances_json(catalog, sources.balances),
    }


def balances_json(catalog: Catalog, held: dict[str, int]) -> dict[str, int]:
    """Every currency of the catalog, at 0 until something credits it; and any other with a balance."""
    return {**{currency: 0 for currency in catalog.currencies}, **dict(sorted(held.items()))}


def _purchase_json(purchase: PurchaseState, expires_at: datetime | None) -> dict[str, Any]:
    return {
        "store": purchase.store.value,
        "id": purchase.store_purchase_id,
        "product": purchase.product,
        "type": purchase.type.value,
        "quantity": purchase.quantity,
        "purchased_at": isoformat(purchase.purchased_at),
        "expires_at": isoformat(expires_at),
        "refunded_at": isoformat(purchase.revoked_at),
    }


def encode_body(body: dict[str, Any]) -> bytes:
    """Compact JSON, byte for byte what the API sends (the same separators as Starlette's JSONResponse)."""
    return json.dumps(body, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


def etag_of(body: bytes) -> str:
    return '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'


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
    answers, sources = await _compute(connection, rules, account_id, now)
    stored = {
        row.entitlement: row for row in await connection.execute(_READ_STORED, {"account_id": account_id})
    }
    change = EntitlementsChange(answers=answers)
    for key, answer in answers.items():
        await _store_answer(db, connection, account_id, answer, stored.get(key), change, now)
    for key in stored.keys() - answers.keys():  # removed from the catalog
        await connection.execute(_DELETE_ANSWER, {"account_id": account_id, "entitlement": key})
    body = encode_body(_answer_body(rules, answers, sources)).decode()
    recheck = _next_recheck(answers)
    written = await connection.scalar(
        _UPSERT_BODY[connection.dialect.name],
        {"account_id": account_id, "body": body, "recheck_at": recheck, "updated_at": now},
    )
    if written is not None:
        bus = change_bus(db)
        if bus is not None:
            await bus.account_changed(db, account_id)
    return change


async def refresh_balance(
    db: AsyncSession, account_id: uuid.UUID, currency: str, balance: int, *, now: datetime | None = None
) -> None:
    """After a ledger post: the stored body's `currency` balance set to `balance`, pushed to listeners.

    Nothing else in the answer depends on a balance, so the sources are not read again: the caller holds
    the account's lock (the one `refresh_entitlements` takes, so the two never interleave), and the stored
    body is read, its balance rewritten and stored. Without a stored body, or one time has overtaken or
    written before bodies had balances, the whole answer is recomputed instead."""
    now = now or utcnow()
    await db.flush()
    connection = await db.connection()
    row = (await connection.execute(_READ_BODY, {"account_id": account_id})).first()
    stored = row.body if row is not None and not _overtaken(row.recheck_at, now) else None
    body = json.loads(stored) if stored is not None else None
    # A body stored before answers carried balances lacks the rest of that release's keys too.
    if body is None or "balances" not in body:
        await refresh_entitlements(db, account_id, now=now)
        return
    held = {**body["balances"], currency: balance}
    body["balances"] = balances_json(entitlement_rules(db).catalog, held)
    encoded = encode_body(body).decode()
    if encoded == stored:
        return
    await connection.execute(
        update(_BODIES).where(_BODIES.c.account_id == account_id).values(body=encoded, updated_at=now)
    )
    bus = change_bus(db)
    if bus is not None:
        await bus.account_changed(db, account_id)


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
    due = select(AccountEntitlement.account_id).where(AccountEntitlement.recheck_at <= now)
    query = select(_ACCOUNTS.c.id).where(_ACCOUNTS.c.id.in_(due)).limit(limit)
    if db.get_bind().dialect.name == "postgresql":
        # Several workers run this at once: each takes the accounts' locks now (the ones
        # `refresh_entitlements` takes), skipping accounts another worker or a webhook holds, so no
        # account is refreshed twice over and no two workers wait on each other's lists.
        query = query.with_for_update(key_share=True, skip_locked=True)
    account_ids = (await db.scalars(query)).all()
    for account_id in account_ids:
        await refresh_entitlements(db, account_id, now=now)
    return len(account_ids)


_READ_BODY = select(_BODIES.c.body, _BODIES.c.recheck_at).where(
    _BODIES.c.account_id == bindparam("account_id")
)


async def read_entitlements(
    db: AsyncSession, account_id: uuid.UUID, *, now: datetime | None = None
) -> dict[str, Any]:
    """The `GET /v1/me/entitlements` body: the stored one, or recomputed when time has overtaken it."""
    now = now or utcnow()
    await db.flush()
    row = (await (await db.connection()).execute(_READ_BODY, {"account_id": account_id})).first()
    if row is not None and not _overtaken(row.recheck_at, now):
        stored: dict[str, Any] = json.loads(row.body)
        return stored
    body, _recheck = await compute_body(db, account_id, now=now)
    return body


async def compute_body(
    db: AsyncSession, account_id: uuid.UUID, *, now: datetime
) -> tuple[dict[str, Any], datetime | None]:
    """The body from the account's sources and when time next changes it, without storing anything
    (time overtook the stored body, or none was ever stored: an account whose sources never changed)."""
    rules = entitlement_rules(db)
    answers, sources = await _compute(await db.connection(), rules, account_id, now)
    return _answer_body(rules, answers, sources), _next_recheck(answers)


def _next_recheck(answers: dict[str, EntitlementAnswer]) -> datetime | None:
    return min((a.recheck_at for a in answers.values() if a.recheck_at is not None), default=None)


def _overtaken(recheck_at: datetime | None, now: datetime) -> bool:
    return recheck_at is not None and recheck_at <= now


@dataclass(frozen=True)
class SessionAnswer:
    """The answer a signed-in session reads, as the bytes to send."""

    body: bytes
    etag: str
    # The earliest moment time alone changes it (a stream re-reads then); None when nothing is due.
    recheck_at: datetime | None


# Session check and stored body in one round trip: the signed-in read of every client.
_READ_FOR_SESSION = (
    select(_ACCOUNTS.c.deleted_at, RefreshTokenFamily.revoked_at, _BODIES.c.body, _BODIES.c.recheck_at)
    .select_from(RefreshTokenFamily)
    .join(_ACCOUNTS, _ACCOUNTS.c.id == RefreshTokenFamily.account_id)
    .outerjoin(_BODIES, _BODIES.c.account_id == RefreshTokenFamily.account_id)
    .where(
        RefreshTokenFamily.id == bindparam("session_id"),
        RefreshTokenFamily.account_id == bindparam("account_id"),
    )
)


_READ_FOR_ACCOUNT = (
    select(_ACCOUNTS.c.deleted_at, null().label("revoked_at"), _BODIES.c.body, _BODIES.c.recheck_at)
    .select_from(_ACCOUNTS)
    .outerjoin(_BODIES, _BODIES.c.account_id == _ACCOUNTS.c.id)
    .where(_ACCOUNTS.c.id == bindparam("account_id"))
)


async def read_answer_for_session(
    database: Database, account_id: uuid.UUID, session_id: uuid.UUID | None, *, now: datetime | None = None
) -> SessionAnswer:
    """The stored answer of a live session's account (Unauthorized when the session or account ended).

    `session_id` None: a token from the app's own identity provider, which has no entitle session."""
    now = now or utcnow()
    row: Any
    if database.hot.available:
        row = await database.hot.session_answer(account_id, session_id)
    else:
        async with database.read_engine.connect() as connection:
            if session_id is None:
                row = (await connection.execute(_READ_FOR_ACCOUNT, {"account_id": account_id})).first()
            else:
                params = {"account_id": account_id, "session_id": session_id}
                row = (await connection.execute(_READ_FOR_SESSION, params)).first()
    if row is None or row.deleted_at is not None:
        raise Unauthorized("The account for this token no longer exists.", code="invalid_token")
    if row.revoked_at is not None:
        raise Unauthorized("This session has ended; sign in again.", code="session_revoked")
    if row.body is not None and not _overtaken(row.recheck_at, now):
        body = row.body.encode()
        return SessionAnswer(body=body, etag=etag_of(body), recheck_at=row.recheck_at)
    async with database.read_sessionmaker() as db:
        body_json, recheck = await compute_body(db, account_id, now=now)
        computed = encode_body(body_json)
        return SessionAnswer(body=computed, etag=etag_of(computed), recheck_at=recheck)


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
        "discount": discount_summary(row.discounts) if store is Store.STRIPE else None,
    }
