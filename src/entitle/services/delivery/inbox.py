"""The provider event inbox: store first, process idempotently, forget nothing.

This module owns the rows; `services.delivery.pipeline` decides when they are worked on. A webhook's event is
committed (unique on provider + event id, so a redelivery finds the row it already has) before anything
acts on it. Work is claimed with a short lease (`next_attempt_at` in the future): the process that
stored an event and processes it itself stores it already claimed; a process that crashed lets its lease
run out and any other process takes the row within seconds. Processing loads every unprocessed row of
one ordering key at once (`lock_batch`: the key's advisory lock and the rows' locks on PostgreSQL), so a
provider settles them together, and marks them processed in the same transaction. A failure is written
in a fresh transaction with the error, the attempt count and the next attempt time (backoff); nothing is
dropped, and a parked row waits until what it needs exists.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import BigInteger, ColumnElement, Table, bindparam, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import make_transient_to_detached

from entitle import metrics
from entitle.core.models.events import InboxStatus, ProviderEvent
from entitle.db.claims import claim_due
from entitle.db.engine import Database
from entitle.db.locks import advisory_key
from entitle.db.types import utcnow
from entitle.errors import NotFound, ProviderUnavailable
from entitle.providers.base import IncomingEvent
from entitle.services.delivery.changes import ChangeBus

log = logging.getLogger(__name__)

FIRST_RETRY = timedelta(seconds=30)
MAX_RETRY = timedelta(hours=6)
# How long a claim on a row lasts; a process that died holding one lets the row go after this.
CLAIM_LEASE = timedelta(seconds=10)
# At most this many rows of one key in one batch (a backlog after an outage is worked in slices).
BATCH_LIMIT = 500
UNPROCESSED = (InboxStatus.PENDING.value, InboxStatus.FAILED.value)

_EVENTS = cast(Table, ProviderEvent.__table__)
# Built once: every delivery runs these, and building a statement costs more than running it.
_INSERT = {
    "postgresql": pg_insert(_EVENTS)
    .on_conflict_do_nothing(index_elements=["provider", "event_id"])
    .returning(_EVENTS.c.id),
    "sqlite": sqlite_insert(_EVENTS)
    .on_conflict_do_nothing(index_elements=["provider", "event_id"])
    .returning(_EVENTS.c.id),
}
_FIND_STORED = select(ProviderEvent).where(
    ProviderEvent.provider == bindparam("provider"), ProviderEvent.event_id == bindparam("event_id")
)
_PEEK_KEY = (
    select(ProviderEvent)
    .where(
        ProviderEvent.provider == bindparam("provider"),
        ProviderEvent.ordering_key == bindparam("ordering_key"),
        ProviderEvent.status.in_(UNPROCESSED),
    )
    .order_by(ProviderEvent.occurred_at, ProviderEvent.received_at)
    .limit(BATCH_LIMIT)
)
_PEEK_ROW = select(ProviderEvent).where(
    ProviderEvent.id == bindparam("row_id"), ProviderEvent.status.in_(UNPROCESSED)
)
_ROWS = (
    select(ProviderEvent)
    .where(ProviderEvent.id.in_(bindparam("row_ids", expanding=True)), ProviderEvent.status.in_(UNPROCESSED))
    .order_by(ProviderEvent.occurred_at, ProviderEvent.received_at)
)
_LOCK_KEY = select(func.pg_advisory_xact_lock(bindparam("lock_key", type_=BigInteger)))
_MARK_PROCESSED = (
    update(_EVENTS)
    .where(_EVENTS.c.id == bindparam("row_id"))
    .values(
        status=InboxStatus.PROCESSED.value,
        outcome=bindparam("outcome"),
        attempts=bindparam("attempts"),
        processed_at=bindparam("processed_at"),
        last_error=None,
        next_attempt_at=None,
    )
)


class StorageUnavailable(ProviderUnavailable):
    """The event could not be stored; the 5xx makes the provider deliver it again later."""

    default_code = "storage_unavailable"


@dataclass(frozen=True)
class Received:
    event: ProviderEvent
    # False when the provider redelivered an event the inbox already holds.
    created: bool


@dataclass(frozen=True)
class WorkItem:
    """What one batch works on: every unprocessed row of (provider, ordering_key), or one keyless row."""

    provider: str
    ordering_key: str | None
    row_id: uuid.UUID | None = None

    @classmethod
    def of(cls, provider: str, ordering_key: str | None, row_id: uuid.UUID) -> WorkItem:
        return cls(provider, ordering_key) if ordering_key else cls(provider, None, row_id)

    def one_row(self, row_id: uuid.UUID) -> WorkItem:
        return WorkItem(self.provider, self.ordering_key, row_id)


def retry_delay(attempts: int) -> timedelta:
    delay: timedelta = FIRST_RETRY * (2 ** min(max(0, attempts - 1), 20))
    return min(delay, MAX_RETRY)


def is_due(now: datetime) -> ColumnElement[bool]:
    return ProviderEvent.status.in_(UNPROCESSED) & (
        ProviderEvent.next_attempt_at.is_(None) | (ProviderEvent.next_attempt_at <= now)
    )


class Inbox:
    def __init__(self, database: Database, bus: ChangeBus | None = None) -> None:
        self.database = database
        self.bus = bus
        # Whether the last claim took as many rows as it could (more are probably due).
        self.backlog = False

    async def receive(
        self, *, provider: str, incoming: IncomingEvent, raw_body: bytes, claim: bool
    ) -> Received:
        """Commit the event (or find the copy already stored).

        `claim`: the caller processes it at once, so it is stored under a lease; otherwise it is due now
        and every worker is woken. Raises StorageUnavailable (503) only if the database did not take it:
        every provider retries a 5xx, so the event comes back instead of being lost.
        """
        try:
            async with self.database.transaction() as db:
                received = await store_event(
                    db,
                    provider=provider,
                    event_id=incoming.event_id,
                    type=incoming.type,
                    raw_body=raw_body,
                    ordering_key=incoming.ordering_key,
                    occurred_at=incoming.occurred_at,
                    lease_until=utcnow() + CLAIM_LEASE if claim else None,
                )
                if received.created and not claim and self.bus is not None:
                    await self.bus.inbox_stored(db)
        except (SQLAlchemyError, OSError) as exc:
            log.exception("could not store %s event %s", provider, incoming.event_id)
            raise StorageUnavailable("The event could not be stored; retry later.") from exc
        metrics.PROVIDER_EVENTS_RECEIVED.labels(provider).inc(int(received.created))
        return received

    async def peek(self, item: WorkItem) -> list[ProviderEvent]:
        """The unprocessed rows of `item`, read without a transaction or locks (a preview)."""
        async with self.database.read_sessionmaker() as db:
            return await _unprocessed(db, item)

    async def lock_batch(self, db: AsyncSession, item: WorkItem) -> list[ProviderEvent]:
        """The unprocessed rows of `item`, oldest first, locked for this transaction.

        On PostgreSQL the ordering key's advisory lock comes first (another process working on the
        key finishes before this reads), then the rows themselves (a claim skips locked rows)."""
        if db.get_bind().dialect.name != "postgresql":
            return await _unprocessed(db, item)
        if item.ordering_key is not None and item.row_id is None:
            await db.execute(_LOCK_KEY, {"lock_key": advisory_key(f"{item.provider}:{item.ordering_key}")})
        return await _unprocessed(db, item, lock=True)

    async def lock_rows(self, db: AsyncSession, row_ids: Sequence[uuid.UUID]) -> list[ProviderEvent]:
        """These rows, those still unprocessed, oldest first, locked for this transaction."""
        query = _ROWS.with_for_update() if db.get_bind().dialect.name == "postgresql" else _ROWS
        return list((await db.scalars(query, {"row_ids": list(row_ids)})).all())

    async def mark_processed(
        self, db: AsyncSession, events: Sequence[ProviderEvent], outcomes: Sequence[str]
    ) -> None:
        """Record success for every row of a batch with one executemany (no ORM flush per row)."""
        now = utcnow()
        params = [
            {
                "row_id": event.id,
                "outcome": (outcome or "ok")[:300],
                "attempts": event.attempts + 1,
                "processed_at": now,
            }
            for event, outcome in zip(events, outcomes, strict=True)
        ]
        # Detach the rows: the flush at commit must not write their stale columns over these. A
        # processor that set `account_id` on a row (App Store) has been flushed by then anyway.
        await db.flush()
        for event in events:
            db.expunge(event)
        await (await db.connection()).execute(_MARK_PROCESSED, params)

    async def record_failure(
        self, row_ids: Sequence[uuid.UUID], status: InboxStatus, *, error: str, retry: bool
    ) -> None:
        """Write why the rows did not go through, in a transaction of its own (the work's rolled back)."""
        now = utcnow()
        async with self.database.transaction() as db:
            for row_id in row_ids:
                event = await db.get(ProviderEvent, row_id)
                if event is None or event.status == InboxStatus.PROCESSED:
                    continue
                event.attempts += 1
                event.status = status
                metrics.PROVIDER_EVENTS_FAILED.labels(event.provider).inc(int(status == InboxStatus.FAILED))
                event.last_error = error[:4000]
                event.next_attempt_at = now + retry_delay(event.attempts) if retry else None

    async def claim_due(self, *, limit: int = 200, now: datetime | None = None) -> list[WorkItem]:
        """Claim due rows (new ones nobody took, leases run out, failures whose retry time came)."""
        now = now or utcnow()
        async with self.database.transaction() as db:
            rows = await claim_due(
                db,
                ProviderEvent,
                is_due(now),
                order_by=ProviderEvent.received_at,
                limit=limit,
                lease_until=now + CLAIM_LEASE,
                returning=(ProviderEvent.id, ProviderEvent.provider, ProviderEvent.ordering_key),
            )
        # A full claim means a backlog: the caller claims again as soon as it has room.
        self.backlog = len(rows) >= limit
        return list(dict.fromkeys(WorkItem.of(provider, key, row_id) for row_id, provider, key in rows))

    async def make_due(self, row_id: uuid.UUID) -> ProviderEvent:
        """An operator's "retry": a failed or parked event is due now (a processed one stays as it is).

        Unless this process works on it at once, every worker is woken to claim it."""
        async with self.database.transaction() as db:
            event = await db.get(ProviderEvent, row_id, with_for_update=True)
            if event is None:
                raise NotFound("No provider event has this id.", code="provider_event_not_found")
            if event.status in (InboxStatus.FAILED, InboxStatus.PARKED):
                event.status = InboxStatus.PENDING
                event.next_attempt_at = None
                if self.bus is not None:
                    await self.bus.inbox_stored(db)
            return event

    async def unpark(self, provider: str, ordering_key: str) -> int:
        """Make the events parked for `ordering_key` due again now that what they waited for exists."""
        async with self.database.transaction() as db:
            result = await db.execute(
                update(ProviderEvent)
                .where(
                    ProviderEvent.provider == provider,
                    ProviderEvent.ordering_key == ordering_key,
                    ProviderEvent.status == InboxStatus.PARKED,
                )
                .values(status=InboxStatus.PENDING, next_attempt_at=utcnow() + CLAIM_LEASE)
            )
            return int(result.rowcount)  # type: ignore[attr-defined]


async def _unprocessed(db: AsyncSession, item: WorkItem, *, lock: bool = False) -> list[ProviderEvent]:
    if item.row_id is not None:
        query = _PEEK_ROW.with_for_update() if lock else _PEEK_ROW
        return list((await db.scalars(query, {"row_id": item.row_id})).all())
    query = _PEEK_KEY.with_for_update() if lock else _PEEK_KEY
    rows = await db.scalars(query, {"provider": item.provider, "ordering_key": item.ordering_key})
    return list(rows.all())


async def store_event(
    db: AsyncSession,
    *,
    provider: str,
    event_id: str,
    type: str,
    raw_body: bytes,
    ordering_key: str | None = None,
    occurred_at: datetime | None = None,
    lease_until: datetime | None = None,
) -> Received:
    """Insert the event unless (provider, event_id) is already stored; return the stored row."""
    values = {
        "id": uuid.uuid4(),
        "provider": provider,
        "event_id": event_id[:200],
        "type": type[:120],
        "raw_body": raw_body,
        "ordering_key": ordering_key[:200] if ordering_key else None,
        "occurred_at": occurred_at,
        "status": InboxStatus.PENDING,
        "attempts": 0,
        "received_at": utcnow(),
        "next_attempt_at": lease_until,
    }
    connection = await db.connection()
    inserted = await connection.scalar(_INSERT[connection.dialect.name], values)
    if inserted is not None:
        # The row is exactly `values`: no need to read it back. Detached, as a row loaded by a session
        # that has since closed would be.
        event = ProviderEvent(**values)
        make_transient_to_detached(event)
        return Received(event=event, created=True)
    stored = await db.scalar(_FIND_STORED, {"provider": provider, "event_id": values["event_id"]})
    assert stored is not None  # the conflict that skipped the insert was this row
    return Received(event=stored, created=False)


__all__ = [
    "CLAIM_LEASE",
    "Inbox",
    "Received",
    "StorageUnavailable",
    "WorkItem",
    "is_due",
    "retry_delay",
    "store_event",
]
