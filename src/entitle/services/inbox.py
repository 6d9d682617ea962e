"""The provider event inbox: store first, process idempotently, forget nothing.

A webhook route verifies the vendor's signature, then `Inbox.receive` commits the raw event (unique on
provider + event id, so a redelivery finds the row it already has) before anything acts on it. Processing
runs in its own transaction; when a processor raises, that transaction rolls back and the error, the
attempt count and the next attempt time are written in a fresh transaction, so a failure is recorded but
never half-applied. Failed rows are retried with backoff by `process_due` (the worker) forever; nothing
is dropped. Work on the same `ordering_key` (a Stripe customer, an App Store original transaction) is
serialized: a PostgreSQL advisory lock across processes, an asyncio lock within one process.
"""

from __future__ import annotations

import logging
import traceback
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import BigInteger, Table, bindparam, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value

from entitle import metrics
from entitle.core.models.events import InboxStatus, ProviderEvent
from entitle.db.engine import Database
from entitle.db.locks import KeyedLocks, advisory_key
from entitle.db.types import utcnow
from entitle.errors import ProviderUnavailable

log = logging.getLogger(__name__)

# A processor acts on one stored event inside the given transaction and returns a short outcome.
EventProcessor = Callable[[AsyncSession, ProviderEvent], Awaitable[str | None]]

FIRST_RETRY = timedelta(seconds=30)
MAX_RETRY = timedelta(hours=6)
# How long a worker's claim on due rows lasts before another worker may take them.
CLAIM_LEASE = timedelta(minutes=2)
# A pending row younger than this is still being processed by the request that stored it.
PENDING_GRACE = timedelta(seconds=60)


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
_READ_ROW = select(ProviderEvent).where(ProviderEvent.id == bindparam("row_id"))
_LOCK_ROW = _READ_ROW.with_for_update()
_MARK_PROCESSED = update(_EVENTS).where(_EVENTS.c.id == bindparam("row_id"))
_LOCK_KEY_AND_ROW = _LOCK_ROW.add_columns(func.pg_advisory_xact_lock(bindparam("lock_key", type_=BigInteger)))


class StorageUnavailable(ProviderUnavailable):
    """The event could not be stored; the 5xx makes the provider deliver it again later."""

    default_code = "storage_unavailable"


class ParkEvent(Exception):  # noqa: N818  (a signal, not an error)
    """Raised by a processor when the event cannot be applied yet (its account is not known)."""


@dataclass(frozen=True)
class Received:
    event: ProviderEvent
    # False when the provider redelivered an event the inbox already holds.
    created: bool


def retry_delay(attempts: int) -> timedelta:
    delay: timedelta = FIRST_RETRY * (2 ** min(max(0, attempts - 1), 20))
    return min(delay, MAX_RETRY)


class Inbox:
    def __init__(self, database: Database, processors: dict[str, EventProcessor]) -> None:
        self.database = database
        self.processors = processors
        self._local_locks = KeyedLocks()

    async def receive(
        self,
        *,
        provider: str,
        event_id: str,
        type: str,
        raw_body: bytes,
        ordering_key: str | None = None,
        occurred_at: datetime | None = None,
    ) -> Received:
        """Commit the event (or find the copy already stored).

        Raises StorageUnavailable (503) only if the database did not take it: every provider retries
        a 5xx, so the event comes back instead of being lost.
        """
        try:
            async with self.database.transaction() as db:
                received = await store_event(
                    db,
                    provider=provider,
                    event_id=event_id,
                    type=type,
                    raw_body=raw_body,
                    ordering_key=ordering_key,
                    occurred_at=occurred_at,
                )
        except (SQLAlchemyError, OSError) as exc:
            log.exception("could not store %s event %s", provider, event_id)
            raise StorageUnavailable("The event could not be stored; retry later.") from exc
        metrics.PROVIDER_EVENTS_RECEIVED.labels(provider).inc(int(received.created))
        return received

    async def process(self, row: uuid.UUID | ProviderEvent) -> InboxStatus:
        """Process one stored event unless it is already done; returns the row's resulting status.

        Pass the row `receive` returned when there is one: it saves a read of its ordering key.
        """
        if isinstance(row, ProviderEvent):
            row_id, ordering_key = row.id, row.ordering_key
        else:
            row_id, ordering_key = row, await self._ordering_key(row)
        if ordering_key:
            async with self._local_locks(ordering_key):
                return await self._process(row_id, ordering_key)
        return await self._process(row_id, ordering_key)

    async def _process(self, row_id: uuid.UUID, ordering_key: str | None) -> InboxStatus:
        try:
            async with self.database.transaction() as db:
                event = await _lock_row(db, row_id, ordering_key)
                if event is None or event.status == InboxStatus.PROCESSED:
                    return InboxStatus.PROCESSED
                processor = self.processors.get(event.provider)
                if processor is None:
                    raise LookupError(f"no processor for provider {event.provider!r}")
                outcome = await processor(db, event)
                await _mark_processed(db, event, outcome)
            metrics.PROVIDER_EVENTS_PROCESSED.labels(event.provider).inc()
            return InboxStatus.PROCESSED
        except ParkEvent as parked:
            await self._record(row_id, InboxStatus.PARKED, error=str(parked), retry=False)
            return InboxStatus.PARKED
        except Exception as exc:  # any failure: keep the event, record why, retry later
            log.warning("provider event %s failed: %s", row_id, exc.__class__.__name__)
            detail = "".join(traceback.format_exception_only(exc)).strip()
            await self._record(row_id, InboxStatus.FAILED, error=detail, retry=True)
            return InboxStatus.FAILED

    async def _record(self, row_id: uuid.UUID, status: InboxStatus, *, error: str, retry: bool) -> None:
        async with self.database.transaction() as db:
            event = await db.get(ProviderEvent, row_id)
            if event is None or event.status == InboxStatus.PROCESSED:
                return
            event.attempts += 1
            event.status = status
            metrics.PROVIDER_EVENTS_FAILED.labels(event.provider).inc(int(status == InboxStatus.FAILED))
            event.last_error = error[:4000]
            event.next_attempt_at = utcnow() + retry_delay(event.attempts) if retry else None

    async def process_due(self, *, limit: int = 100, now: datetime | None = None) -> int:
        """Process failed events whose retry time has come and pending ones nobody finished."""
        now = now or utcnow()
        due = or_(
            (ProviderEvent.status == InboxStatus.FAILED) & (ProviderEvent.next_attempt_at <= now),
            (ProviderEvent.status == InboxStatus.PENDING)
            & (ProviderEvent.received_at <= now - PENDING_GRACE)
            & (ProviderEvent.next_attempt_at.is_(None) | (ProviderEvent.next_attempt_at <= now)),
        )
        async with self.database.transaction() as db:
            query = (
                select(ProviderEvent.id)
                .where(due)
                .order_by(ProviderEvent.occurred_at, ProviderEvent.received_at)
                .limit(limit)
            )
            if db.get_bind().dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True)
            candidates = list((await db.scalars(query)).all())
            # Claim them with a lease, and only those still due at the moment of the claim: the row
            # locks end with this transaction (and SQLite has none), so a second worker that read the
            # same rows finds them claimed. A crashed worker's lease runs out and the rows come back.
            claimed = (
                await db.scalars(
                    update(ProviderEvent)
                    .where(ProviderEvent.id.in_(candidates), due)
                    .values(next_attempt_at=now + CLAIM_LEASE)
                    .returning(ProviderEvent.id)
                )
                if candidates
                else None
            )
            ids = list(claimed.all()) if claimed is not None else []
        for row_id in ids:
            await self.process(row_id)
        return len(ids)

    async def release_parked(self, provider: str, ordering_key: str) -> int:
        """Process events parked for `ordering_key` now that what they waited for exists."""
        async with self.database.transaction() as db:
            ids = list(
                (
                    await db.scalars(
                        select(ProviderEvent.id)
                        .where(
                            ProviderEvent.provider == provider,
                            ProviderEvent.ordering_key == ordering_key,
                            ProviderEvent.status == InboxStatus.PARKED,
                        )
                        .order_by(ProviderEvent.occurred_at)
                    )
                ).all()
            )
            if ids:
                await db.execute(
                    update(ProviderEvent).where(ProviderEvent.id.in_(ids)).values(status=InboxStatus.PENDING)
                )
        for row_id in ids:
            await self.process(row_id)
        return len(ids)

    async def _ordering_key(self, row_id: uuid.UUID) -> str | None:
        async with self.database.sessionmaker() as db:
            return await db.scalar(select(ProviderEvent.ordering_key).where(ProviderEvent.id == row_id))


async def store_event(
    db: AsyncSession,
    *,
    provider: str,
    event_id: str,
    type: str,
    raw_body: bytes,
    ordering_key: str | None = None,
    occurred_at: datetime | None = None,
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


async def _lock_row(db: AsyncSession, row_id: uuid.UUID, ordering_key: str | None) -> ProviderEvent | None:
    """The row, locked; on PostgreSQL first the ordering key's advisory lock, in the same round trip."""
    if db.get_bind().dialect.name != "postgresql":
        return await db.scalar(_READ_ROW, {"row_id": row_id})
    if ordering_key is None:
        return await db.scalar(_LOCK_ROW, {"row_id": row_id})
    # The lock function is evaluated in the scan below the row lock (EXPLAIN VERBOSE shows it), so the
    # advisory lock is always taken first, as before; the row returned is the newest version, read
    # once both locks are held.
    return await db.scalar(_LOCK_KEY_AND_ROW, {"row_id": row_id, "lock_key": advisory_key(ordering_key)})


async def _mark_processed(db: AsyncSession, event: ProviderEvent, outcome: str | None) -> None:
    """Record success with one Core UPDATE (cheaper than the ORM's flush on every delivery).

    The loaded row is told the same values as committed, so the flush at commit writes only what the
    processor itself changed on it (an App Store handler sets `account_id`), if anything.
    """
    values = {
        "status": InboxStatus.PROCESSED,
        "outcome": (outcome or "ok")[:300],
        "attempts": event.attempts + 1,
        "processed_at": utcnow(),
        "last_error": None,
        "next_attempt_at": None,
    }
    await (await db.connection()).execute(_MARK_PROCESSED, {"row_id": event.id, **values})
    for name, value in values.items():
        set_committed_value(event, name, value)
