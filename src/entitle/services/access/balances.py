"""Balances: the currency ledger, and the one function that writes it.

Every credit and debit is a row of `balance_transactions` with its reason and source, and `balances`
holds the sum, changed by the same transaction that wrote the row (nothing else writes either table, so
the sum never drifts from the ledger). `post` is that one writer:

- A spend is one conditional UPDATE (`amount + delta >= 0`), so two racing spends can never take a
  balance below zero, on PostgreSQL (the row lock) or SQLite (one writer at a time); a refused spend
  raises 409 `insufficient_balance` and writes nothing.
- An `idempotency_key` makes a post happen once per (account, currency, key): the key is unique in the
  ledger, a repeat answers the first row and the balance right after it (the first result, whatever
  happened since), and two racing repeats are settled by that unique index (the loser's ledger insert
  does nothing, and it takes its balance change back while it still holds the balance row).
- Credits from stores (purchases, refunds, subscription periods) may take a balance below zero
  (`allow_negative`): a refunded pack takes back what it gave even when it was spent, and a negative
  balance refuses spends until it is paid back.

The account's answer carries its balances, so every post ends with the stored answer's balance rewritten
(nothing else in it can have changed; `entitlements.refresh_balance`) and pushed on open streams, and
`balance.changed` logged (and sent to the app's backend) in the same transaction.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, cast

from sqlalchemy import Table, and_, bindparam, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from entitle.core import events
from entitle.core.catalog import Catalog
from entitle.core.entitlements import isoformat
from entitle.core.models.accounts import Account
from entitle.core.models.purchases import Balance, BalanceTransaction
from entitle.db.locks import sqlite_write_turn
from entitle.db.types import new_id, utcnow
from entitle.errors import Conflict, InvalidRequest, NotFound

BALANCE_CHANGED = events.BALANCE_CHANGED

# Reasons the ledger gives, besides the free text an operator or the app's backend writes.
PURCHASE = "purchase"
REFUND = "refund"
REFUND_REVERSED = "refund_reversed"
SUBSCRIPTION_PERIOD = "subscription_period"

_BALANCES = cast(Table, Balance.__table__)
_ACCOUNTS = cast(Table, Account.__table__)
_CHECK_ANY_ACCOUNT = select(_ACCOUNTS.c.id).where(_ACCOUNTS.c.id == bindparam("account_id"))
_CHECK_ACCOUNT = _CHECK_ANY_ACCOUNT.where(_ACCOUNTS.c.deleted_at.is_(None))
# NO KEY UPDATE, as refresh_entitlements takes it (see there).
_LOCK_ANY_ACCOUNT = _CHECK_ANY_ACCOUNT.with_for_update(key_share=True)
_LOCK_ACCOUNT = _CHECK_ACCOUNT.with_for_update(key_share=True)
_LEDGER = cast(Table, BalanceTransaction.__table__)


# One post moves at most this much: far beyond any real pack or spend, and far enough below BIGINT's
# limit that no realistic run of posts can overflow a balance.
MAX_AMOUNT = 1_000_000_000_000
# Currency keys are stored in 64 characters (Balance.currency).
MAX_CURRENCY_LENGTH = 64


class InsufficientBalance(Conflict):
    default_code = "insufficient_balance"


class UnknownCurrency(NotFound):
    default_code = "unknown_currency"


def check_amount(amount: int) -> None:
    """A post moves a non-zero whole amount within +-MAX_AMOUNT (bool is not an amount)."""
    if isinstance(amount, bool) or not isinstance(amount, int) or amount == 0 or abs(amount) > MAX_AMOUNT:
        raise InvalidRequest(
            f"amount must be a non-zero integer between -{MAX_AMOUNT} and {MAX_AMOUNT}.",
            code="invalid_amount",
        )


class LedgerEntry(Protocol):
    """What is read of a ledger row: a `BalanceTransaction`, or fastspend's plain copy of one."""

    @property
    def id(self) -> uuid.UUID: ...
    @property
    def currency(self) -> str: ...
    @property
    def amount(self) -> int: ...
    @property
    def balance_after(self) -> int: ...
    @property
    def reason(self) -> str: ...
    @property
    def source(self) -> str: ...
    @property
    def idempotency_key(self) -> str | None: ...
    @property
    def created_at(self) -> datetime: ...


@dataclass(frozen=True)
class Posted:
    """A ledger row and the balance right after it; `replayed` when an idempotency key found it."""

    transaction: LedgerEntry
    balance: int
    replayed: bool = False


def transaction_json(row: LedgerEntry) -> dict[str, Any]:
    return {
        "id": str(row.id),
        "currency": row.currency,
        "amount": row.amount,
        "balance_after": row.balance_after,
        "reason": row.reason,
        "source": row.source,
        "idempotency_key": row.idempotency_key,
        "created_at": isoformat(row.created_at),
    }


async def post(
    db: AsyncSession,
    account_id: uuid.UUID,
    currency: str,
    amount: int,
    *,
    reason: str,
    source: str,
    idempotency_key: str | None = None,
    allow_negative: bool = False,
    refresh: bool = True,
    refuse_deleted: bool = False,
    now: datetime | None = None,
) -> Posted:
    """Credit (positive) or debit (negative) `amount`; see the module docstring for the guarantees.

    An unknown account is a 404 `account_not_found`; so is a deleted one with `refuse_deleted` (the app's
    backend spending; a store's refund still settles a deleted account's ledger)."""
    check_amount(amount)
    now = now or utcnow()
    if idempotency_key is not None:
        earlier = await _find_by_key(db, account_id, currency, idempotency_key)
        if earlier is not None:
            return Posted(earlier, earlier.balance_after, replayed=True)
    await db.flush()
    await sqlite_write_turn(db)
    await _hold_account(db, account_id, refuse_deleted=refuse_deleted)
    # Plain statements in the caller's transaction, no savepoint: SQLite's driver begins a transaction
    # only before a write, so a savepoint opened before any write would itself be the transaction, and
    # its release would commit the post apart from the caller's work.
    try:
        balance = await _change_balance(db, account_id, currency, amount, allow_negative, now)
    except InsufficientBalance:
        # A racing repeat of a key whose first post left too little for a second: the first result.
        earlier = (
            None if idempotency_key is None else await _find_by_key(db, account_id, currency, idempotency_key)
        )
        if earlier is None:
            raise
        return Posted(earlier, earlier.balance_after, replayed=True)
    row = BalanceTransaction(
        id=new_id(),
        account_id=account_id,
        currency=currency,
        amount=amount,
        balance_after=balance,
        reason=reason,
        source=source,
        idempotency_key=idempotency_key,
        # The clock, not `now`: two rows of one transaction keep their order in the ledger.
        created_at=utcnow(),
    )
    written = await db.scalar(
        _insert_for(db)(_LEDGER)
        .values(**{column.key: getattr(row, column.key) for column in _LEDGER.columns})
        .on_conflict_do_nothing()
        .returning(_LEDGER.c.id)
    )
    if written is None:
        # Another request with the same key committed first (it held the balance row until then): undo
        # this change, still under the row lock, and answer the first result.
        await db.execute(
            update(_BALANCES)
            .where(_BALANCES.c.account_id == account_id, _BALANCES.c.currency == currency)
            .values(amount=_BALANCES.c.amount - amount)
        )
        earlier = await _find_by_key(db, account_id, currency, idempotency_key or "")
        if earlier is None:
            raise RuntimeError(f"ledger row {row.id} was refused but no row has its idempotency key")
        return Posted(earlier, earlier.balance_after, replayed=True)
    await events.record_event(
        db,
        account_id,
        BALANCE_CHANGED,
        {
            "currency": currency,
            "amount": amount,
            "balance": balance,
            "reason": reason,
            "source": source,
            "transaction_id": str(row.id),
        },
    )
    if refresh:
        # Imported here: the answer reads balances, so entitlements imports this module's tables.
        from entitle.services.access.entitlements import refresh_balance

        await refresh_balance(db, account_id, currency, balance, now=now)
    return Posted(row, balance)


async def is_live_account(db: AsyncSession, account_id: uuid.UUID) -> bool:
    return await db.scalar(_CHECK_ACCOUNT, {"account_id": account_id}) is not None


async def _hold_account(db: AsyncSession, account_id: uuid.UUID, *, refuse_deleted: bool) -> None:
    """Check the account, and on PostgreSQL lock it until the transaction ends: the lock every change of
    the account's answer takes (`refresh_entitlements`), taken before the balance row so every writer
    takes the two in the same order, and held so the answer can be rewritten after the post."""
    if db.get_bind().dialect.name == "postgresql":
        query = _LOCK_ACCOUNT if refuse_deleted else _LOCK_ANY_ACCOUNT
    else:  # SQLite has no row locks; its writers take turns (sqlite_write_turn)
        query = _CHECK_ACCOUNT if refuse_deleted else _CHECK_ANY_ACCOUNT
    if await db.scalar(query, {"account_id": account_id}) is None:
        raise NotFound("No account has this id.", code="account_not_found")


def _insert_for(db: AsyncSession) -> Any:
    return postgresql.insert if db.get_bind().dialect.name == "postgresql" else sqlite.insert


async def _change_balance(
    db: AsyncSession, account_id: uuid.UUID, currency: str, amount: int, allow_negative: bool, now: datetime
) -> int:
    """Apply `amount` to the balance row (made at 0 on the first post) and return the new balance."""
    where = and_(_BALANCES.c.account_id == account_id, _BALANCES.c.currency == currency)
    if amount < 0 and not allow_negative:
        # The check and the change in one statement: no window between them for a second spend.
        where = and_(where, _BALANCES.c.amount + amount >= 0)
    change = (
        update(_BALANCES)
        .where(where)
        .values(amount=_BALANCES.c.amount + amount, updated_at=now)
        .returning(_BALANCES.c.amount)
    )
    changed = await db.scalar(change)
    if changed is None:
        # No row yet (the first post in this currency), or too little in it: make the row, then try again.
        await db.execute(
            _insert_for(db)(_BALANCES)
            .values(account_id=account_id, currency=currency, amount=0, updated_at=now)
            .on_conflict_do_nothing()
        )
        changed = await db.scalar(change)
    if changed is None:
        current = await balance_of(db, account_id, currency)
        raise InsufficientBalance(
            f"The {currency} balance is {current}; spending {-amount} would take it below zero.",
            details={"currency": currency, "balance": current, "amount": amount},
        )
    return int(changed)


# Built once: every keyed post runs it first. A row, not an entity: the ORM's loading costs more than the
# query on this path, and the answer needs nothing but the values.
_FIND_BY_KEY = select(*_LEDGER.columns).where(
    _LEDGER.c.account_id == bindparam("account_id"),
    _LEDGER.c.currency == bindparam("currency"),
    _LEDGER.c.idempotency_key == bindparam("key"),
)


async def _find_by_key(
    db: AsyncSession, account_id: uuid.UUID, currency: str, key: str
) -> BalanceTransaction | None:
    found = (
        await db.execute(_FIND_BY_KEY, {"account_id": account_id, "currency": currency, "key": key})
    ).first()
    # A detached copy of the stored row (never added to the session, so never written back).
    return None if found is None else BalanceTransaction(**found._mapping)


async def balance_of(db: AsyncSession, account_id: uuid.UUID, currency: str) -> int:
    value = await db.scalar(
        select(Balance.amount).where(Balance.account_id == account_id, Balance.currency == currency)
    )
    return int(value or 0)


async def balances_of(db: AsyncSession, account_id: uuid.UUID) -> dict[str, int]:
    rows = await db.execute(select(Balance.currency, Balance.amount).where(Balance.account_id == account_id))
    return {currency: int(amount) for currency, amount in rows.all()}


async def require_currency(db: AsyncSession, catalog: Catalog, account_id: uuid.UUID, currency: str) -> None:
    """A currency of the catalog, or one this account has a ledger in (a currency since removed from
    the catalog keeps its history readable); anything else is most likely a typo."""
    if currency in catalog.currencies:
        return
    held = len(currency) <= MAX_CURRENCY_LENGTH and await db.scalar(
        select(Balance.currency).where(Balance.account_id == account_id, Balance.currency == currency)
    )
    if not held:
        known = ", ".join(sorted(catalog.currencies)) or "none"
        raise UnknownCurrency(
            f"The catalog has no currency {currency!r} (it has: {known}).", details={"currency": currency}
        )


async def credited_by(db: AsyncSession, account_id: uuid.UUID, source: str) -> dict[str, int]:
    """What one source (a purchase, a subscription) has credited so far, per currency."""
    rows = await db.execute(
        select(BalanceTransaction.currency, func.sum(BalanceTransaction.amount))
        .where(BalanceTransaction.account_id == account_id, BalanceTransaction.source == source)
        .group_by(BalanceTransaction.currency)
    )
    return {currency: int(total or 0) for currency, total in rows.all()}


async def settle_source(
    db: AsyncSession,
    account_id: uuid.UUID,
    source: str,
    worth: dict[str, int],
    *,
    now: datetime | None = None,
) -> list[Posted]:
    """Post whatever brings `source`'s credits to `worth` in each currency (a purchase's current worth).

    The caller holds the source's row lock, so two settlements of one source never interleave."""
    posted = []
    already = await credited_by(db, account_id, source)
    for currency in sorted(worth.keys() | already.keys()):
        difference = worth.get(currency, 0) - already.get(currency, 0)
        if difference == 0:
            continue
        if difference > 0:
            reason = PURCHASE if already.get(currency, 0) == 0 else REFUND_REVERSED
        else:
            reason = REFUND
        posted.append(
            await post(
                db,
                account_id,
                currency,
                difference,
                reason=reason,
                source=source,
                allow_negative=True,
                refresh=False,
                now=now,
            )
        )
    return posted


async def credit_once(
    db: AsyncSession,
    account_id: uuid.UUID,
    grants: dict[str, int],
    *,
    reason: str,
    source: str,
    key: str,
    now: datetime | None = None,
) -> list[Posted]:
    """Credit `grants` once for `key` (a subscription's paid period): a repeat finds the first rows."""
    return [
        await post(
            db,
            account_id,
            currency,
            amount,
            reason=reason,
            source=source,
            idempotency_key=key,
            allow_negative=True,
            refresh=False,
            now=now,
        )
        for currency, amount in sorted(grants.items())
    ]


async def ledger(
    db: AsyncSession, account_id: uuid.UUID, currency: str, *, limit: int = 50, after: uuid.UUID | None = None
) -> tuple[list[BalanceTransaction], uuid.UUID | None]:
    """The ledger newest first, `limit` rows after the row `after`; and the cursor of the next page."""
    query = select(BalanceTransaction).where(
        BalanceTransaction.account_id == account_id, BalanceTransaction.currency == currency
    )
    if after is not None:
        anchor = await db.get(BalanceTransaction, after)
        if anchor is None or anchor.account_id != account_id or anchor.currency != currency:
            # A cursor is only ever a row of this ledger: anything else is a client's mistake, not an
            # empty page it would take for the end.
            raise InvalidRequest("`after` is not a transaction of this ledger.", code="invalid_cursor")
        query = query.where(
            (BalanceTransaction.created_at < anchor.created_at)
            | ((BalanceTransaction.created_at == anchor.created_at) & (BalanceTransaction.id < anchor.id))
        )
    rows = list(
        (
            await db.scalars(
                query.order_by(BalanceTransaction.created_at.desc(), BalanceTransaction.id.desc()).limit(
                    limit + 1
                )
            )
        ).all()
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1].id if more and rows else None)
