"""The app's backend's spend (`POST /v1/accounts/{id}/balances/{currency}/transactions`) on the raw driver.

Through SQLAlchemy a post costs ~7-9 ms of CPU in 8-9 statements, ten times the signed-in read it is held
to (bench/spends.py); the statements themselves cost a small part of that. Like db.hotpath for the read,
this module runs the common case straight on the driver and keeps `balances.post` as the one full
implementation: whenever the case is not the common one (no balance row yet, a racing repeat of an
idempotency key, a webhook endpoint that wants `balance.changed`, a stored answer that must be recomputed,
SQLite's write lock taken by another connection), the raw transaction is rolled back before it committed
anything and `fast_post` answers None, and the caller runs `balances.post`.

What it writes is what `balances.post` writes, in one transaction: the conditional balance change (so two
racing spends never go below zero), the ledger row with its balance_after, the `balance.changed` event,
and the stored answer's balances; then the answer's listeners are told (ChangeBus), after the commit.

- SQLite: the whole transaction runs synchronously on the event loop, under `BEGIN IMMEDIATE` (SQLite's
  write lock, taken without waiting). Nothing else in the process runs meanwhile and no other connection
  can write, so each step's read is the truth, and the transaction takes some tens of microseconds.
- PostgreSQL: five round trips on the read's asyncpg pool: BEGIN; lock the account and find the key;
  change the balance, write the ledger row and the event and read the stored answer, in one statement;
  rewrite the answer (and `NOTIFY`); COMMIT.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from entitle.core import events
from entitle.core.catalog import Catalog
from entitle.db.hotpath import HotPath
from entitle.db.types import new_id, utcnow
from entitle.errors import NotFound
from entitle.services.access.balances import InsufficientBalance, Posted, check_amount
from entitle.services.access.entitlements import balances_json, encode_body
from entitle.services.delivery.changes import ANSWERS_CHANNEL, ChangeBus
from entitle.storable_text import require_storable, storable_json

_LEDGER_COLUMNS = (
    "id, account_id, currency, amount, balance_after, reason, source, idempotency_key, created_at"
)


@dataclass(frozen=True, slots=True)
class LedgerRow:
    """A ledger row as this path wrote or found it (building an ORM entity costs more than the write)."""

    id: uuid.UUID
    account_id: uuid.UUID
    currency: str
    amount: int
    balance_after: int
    reason: str
    source: str
    idempotency_key: str | None
    created_at: datetime


class _Fallback(Exception):
    """Not the common case: roll back, and let `balances.post` do it."""


async def fast_post(
    hot: HotPath,
    catalog: Catalog,
    bus: ChangeBus | None,
    account_id: uuid.UUID,
    currency: str,
    amount: int,
    *,
    reason: str,
    source: str,
    idempotency_key: str | None,
) -> Posted | None:
    """`balances.post(..., refuse_deleted=True)` on the raw driver, or None: then call that instead."""
    if not hot.available:
        return None
    check_amount(amount)
    # What the ledger's columns refuse (CheckedString), refused the same way before anything is written.
    require_storable(currency, max_length=64)
    require_storable(reason, max_length=500)
    require_storable(source, max_length=300)
    if idempotency_key is not None:
        require_storable(idempotency_key, max_length=255)
    spend = _Spend(catalog, account_id, currency, amount, reason, source, idempotency_key)
    try:
        if hot.dialect == "postgresql":
            posted = await _post_postgresql(await hot.postgres_pool(), spend, bus)
        else:
            posted = _post_sqlite(hot.sqlite_writer(), spend)
            hot.after_sqlite_write()
    except _Fallback:
        return None
    if bus is not None and not posted.replayed and spend.answer_changed:
        bus.answers_committed({account_id})
    return posted


class _Spend:
    """One post's inputs, and what every dialect derives from them the same way."""

    def __init__(
        self,
        catalog: Catalog,
        account_id: uuid.UUID,
        currency: str,
        amount: int,
        reason: str,
        source: str,
        key: str | None,
    ) -> None:
        self.catalog = catalog
        self.account_id = account_id
        self.currency = currency
        self.amount = amount
        self.reason = reason
        self.source = source
        self.key = key
        self.now = utcnow()
        self.id = new_id()
        self.event_id = new_id()
        self.answer_changed = False

    @property
    def guarded(self) -> bool:
        """A spend may not take the balance below zero (credits have no guard)."""
        return self.amount < 0

    def event_data(self, balance: int) -> dict[str, Any]:
        data: dict[str, Any] = storable_json(
            {
                "currency": self.currency,
                "amount": self.amount,
                "balance": balance,
                "reason": self.reason,
                "source": self.source,
                "transaction_id": str(self.id),
            }
        )
        return data

    def transaction(self, balance: int, created_at: datetime) -> LedgerRow:
        return LedgerRow(
            id=self.id,
            account_id=self.account_id,
            currency=self.currency,
            amount=self.amount,
            balance_after=balance,
            reason=self.reason,
            source=self.source,
            idempotency_key=self.key,
            created_at=created_at,
        )

    def rewritten_body(self, stored: str | None, recheck_at: datetime | None, balance: int) -> str | None:
        """The stored answer with this balance, None when unchanged; `_Fallback` when the answer must be
        recomputed (none stored, time overtook it, or stored before answers carried balances), as
        `entitlements.refresh_balance` decides."""
        if stored is None or (recheck_at is not None and recheck_at <= self.now):
            raise _Fallback
        body = json.loads(stored)
        if "balances" not in body:
            raise _Fallback
        body["balances"] = balances_json(self.catalog, {**body["balances"], self.currency: balance})
        encoded = encode_body(body).decode()
        if encoded == stored:
            return None
        self.answer_changed = True
        return encoded

    def refused(self, current: int | None) -> InsufficientBalance:
        current = current or 0
        return InsufficientBalance(
            f"The {self.currency} balance is {current}; spending {-self.amount} would take it below zero.",
            details={"currency": self.currency, "balance": current, "amount": self.amount},
        )


def _announced(event_types: list[list[str] | None]) -> None:
    """An endpoint that wants `balance.changed` needs a queued delivery: `balances.post` writes those."""
    if any(events.wants(wanted, events.BALANCE_CHANGED) for wanted in event_types):
        raise _Fallback


# -- SQLite ----------------------------------------------------------------------------------------


def _sqlite_time(value: datetime) -> str:
    """As SQLAlchemy stores a UTCDateTime on SQLite (naive UTC, microseconds always), so text order is
    time order across rows written by either path."""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _from_sqlite_time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value).replace(tzinfo=UTC)


def _post_sqlite(connection: sqlite3.Connection, spend: _Spend) -> Posted:
    try:
        connection.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:  # another connection is writing: queue up behind it instead
        raise _Fallback from exc
    committed = False
    try:
        posted = _sqlite_statements(connection, spend)
        connection.execute("COMMIT")
        committed = True
        return posted
    finally:
        if not committed:
            connection.execute("ROLLBACK")


def _sqlite_statements(connection: sqlite3.Connection, spend: _Spend) -> Posted:
    account = spend.account_id.hex
    if spend.key is not None:
        earlier = connection.execute(
            f"SELECT {_LEDGER_COLUMNS} FROM balance_transactions "
            "WHERE account_id = ? AND currency = ? AND idempotency_key = ?",
            (account, spend.currency, spend.key),
        ).fetchone()
        if earlier is not None:
            row = _ledger_row(earlier, uuid.UUID)
            return Posted(row, row.balance_after, replayed=True)
    live = connection.execute(
        "SELECT 1 FROM accounts WHERE id = ? AND deleted_at IS NULL", (account,)
    ).fetchone()
    if live is None:
        raise NotFound("No account has this id.", code="account_not_found")
    guard = " AND amount + ? >= 0" if spend.guarded else ""
    changed = connection.execute(
        f"UPDATE balances SET amount = amount + ?, updated_at = ? "
        f"WHERE account_id = ? AND currency = ?{guard} RETURNING amount",
        (spend.amount, _sqlite_time(spend.now), account, spend.currency)
        + ((spend.amount,) if spend.guarded else ()),
    ).fetchone()
    if changed is None:
        current = connection.execute(
            "SELECT amount FROM balances WHERE account_id = ? AND currency = ?", (account, spend.currency)
        ).fetchone()
        if current is None or not spend.guarded:  # the first post in this currency makes the row
            raise _Fallback
        raise spend.refused(current[0])
    balance = int(changed[0])
    endpoints = connection.execute("SELECT event_types FROM webhook_endpoints WHERE disabled_at IS NULL")
    _announced([json.loads(types) if types is not None else None for (types,) in endpoints])
    # The clock, not `now`, as `balances.post`: rows of one account keep their order in the ledger.
    created_at = utcnow()
    connection.execute(
        f"INSERT INTO balance_transactions ({_LEDGER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            spend.id.hex,
            account,
            spend.currency,
            spend.amount,
            balance,
            spend.reason,
            spend.source,
            spend.key,
            _sqlite_time(created_at),
        ),
    )
    connection.execute(
        "INSERT INTO account_events (id, account_id, type, data, created_at) VALUES (?, ?, ?, ?, ?)",
        (
            spend.event_id.hex,
            account,
            events.BALANCE_CHANGED,
            json.dumps(spend.event_data(balance)),
            _sqlite_time(utcnow()),
        ),
    )
    stored = connection.execute(
        "SELECT body, recheck_at FROM account_answers WHERE account_id = ?", (account,)
    ).fetchone()
    body = spend.rewritten_body(
        None if stored is None else stored[0],
        None if stored is None else _from_sqlite_time(stored[1]),
        balance,
    )
    if body is not None:
        connection.execute(
            "UPDATE account_answers SET body = ?, updated_at = ? WHERE account_id = ?",
            (body, _sqlite_time(spend.now), account),
        )
    return Posted(spend.transaction(balance, created_at), balance)


def _ledger_row(values: Any, as_uuid: Any) -> LedgerRow:
    id_, account_id, currency, amount, balance_after, reason, source, key, created_at = values
    if isinstance(created_at, str):
        created_at = _from_sqlite_time(created_at)
    return LedgerRow(
        id=as_uuid(id_) if not isinstance(id_, uuid.UUID) else id_,
        account_id=as_uuid(account_id) if not isinstance(account_id, uuid.UUID) else account_id,
        currency=currency,
        amount=int(amount),
        balance_after=int(balance_after),
        reason=reason,
        source=source,
        idempotency_key=key,
        created_at=created_at,
    )


# -- PostgreSQL ------------------------------------------------------------------------------------

# The account's lock first (FOR NO KEY UPDATE, as balances.post and refresh_entitlements take it, in the
# same order: account, then balance row), and an earlier post with the key, in one round trip.
_PG_HOLD = f"""
SELECT t.{", t.".join(_LEDGER_COLUMNS.split(", "))}
FROM accounts AS a
LEFT JOIN balance_transactions AS t
  ON t.account_id = a.id AND t.currency = $2 AND t.idempotency_key = $3
WHERE a.id = $1 AND a.deleted_at IS NULL
FOR NO KEY UPDATE OF a
"""
# The conditional change, the ledger row (only if the change happened) and the event (only if the row was
# written: a racing repeat of the key conflicts, and then the whole transaction is rolled back), with
# what the rest needs: the balance now, the stored answer and the endpoints' subscriptions.
_PG_POST = """
WITH changed AS (
  UPDATE balances SET amount = amount + $4, updated_at = $5
  WHERE account_id = $1 AND currency = $2 AND ($6 OR amount + $4 >= 0)
  RETURNING amount
), written AS (
  INSERT INTO balance_transactions (id, account_id, currency, amount, balance_after, reason, source,
                                    idempotency_key, created_at)
  SELECT $7, $1, $2, $4, changed.amount, $8, $9, $3, clock_timestamp() FROM changed
  ON CONFLICT DO NOTHING
  RETURNING balance_after, created_at
), logged AS (
  INSERT INTO account_events (id, account_id, type, data, created_at)
  SELECT $10, $1, $11, jsonb_set($12::jsonb, '{balance}', to_jsonb(written.balance_after)),
         clock_timestamp()
  FROM written
  RETURNING id
)
SELECT (SELECT amount FROM changed) AS changed,
       (SELECT balance_after FROM written) AS balance_after,
       (SELECT created_at FROM written) AS created_at,
              (SELECT amount FROM balances WHERE account_id = $1 AND currency = $2) AS current,
       b.body, b.recheck_at,
       (SELECT coalesce(json_agg(event_types), '[]') FROM webhook_endpoints WHERE disabled_at IS NULL)
         AS endpoints
FROM (SELECT 1) AS one
LEFT JOIN account_answers AS b ON b.account_id = $1
"""
_PG_BODY = "UPDATE account_answers SET body = $2, updated_at = $3 WHERE account_id = $1"
_PG_BODY_NOTIFY = f"""
WITH stored AS (UPDATE account_answers SET body = $2, updated_at = $3 WHERE account_id = $1)
SELECT pg_notify('{ANSWERS_CHANNEL}', $1::text)
"""


async def _post_postgresql(pool: Any, spend: _Spend, bus: ChangeBus | None) -> Posted:
    async with pool.acquire() as connection, connection.transaction():
        held = await connection.fetchrow(_PG_HOLD, spend.account_id, spend.currency, spend.key)
        if held is None:
            # Unknown or deleted: `balances.post` says which (a deleted account still replays its keys).
            raise _Fallback
        if held[0] is not None:
            row = _ledger_row(tuple(held), uuid.UUID)
            return Posted(row, row.balance_after, replayed=True)
        result = await connection.fetchrow(
            _PG_POST,
            spend.account_id,
            spend.currency,
            spend.key,
            spend.amount,
            spend.now,
            not spend.guarded,
            spend.id,
            spend.reason,
            spend.source,
            spend.event_id,
            events.BALANCE_CHANGED,
            json.dumps(spend.event_data(0)),
        )
        if result["changed"] is None:
            if result["current"] is None or not spend.guarded:  # the first post in this currency
                raise _Fallback
            raise spend.refused(result["current"])
        if result["balance_after"] is None:  # a racing repeat of the key committed first
            raise _Fallback
        _announced(json.loads(result["endpoints"]))
        balance = int(result["balance_after"])
        body = spend.rewritten_body(result["body"], result["recheck_at"], balance)
        if body is not None:
            notify = bus is not None and bus.answers_by_notify
            await connection.execute(
                _PG_BODY_NOTIFY if notify else _PG_BODY, spend.account_id, body, spend.now
            )
        return Posted(spend.transaction(balance, result["created_at"]), balance)
