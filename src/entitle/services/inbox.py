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

import asyncio
import hashlib
import logging
import traceback
import uuid
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from entitle.core.models.events import InboxStatus, ProviderEvent
from entitle.db.engine import Database
from entitle.db.types import utcnow

log = logging.getLogger(__name__)

# A processor acts on one stored event inside the given transaction and returns a short outcome.
EventProcessor = Callable[[AsyncSession, ProviderEvent], Awaitable[str | None]]

FIRST_RETRY = timedelta(seconds=30)
MAX_RETRY = timedelta(hours=6)
# A pending row younger than this is still being processed by the request that stored it.
PENDING_GRACE = timedelta(seconds=60)


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
        self._local_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

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
        """Commit the event (or find the copy already stored). Raises only if the database fails."""
        async with self.database.transaction() as db:
            return await store_event(
                db,
                provider=provider,
                event_id=event_id,
                type=type,
                raw_body=raw_body,
                ordering_key=ordering_key,
                occurred_at=occurred_at,
            )

    async def process(self, row: uuid.UUID | ProviderEvent) -> InboxStatus:
        """Process one stored event unless it is already done; returns the row's resulting status.

        Pass the row `receive` returned when there is one: it saves a read of its ordering key.
        """
        if isinstance(row, ProviderEvent):
            row_id, ordering_key = row.id, row.ordering_key
        else:
            row_id, ordering_key = row, await self._ordering_key(row)
        if ordering_key:
            async with self._local_lock(ordering_key):
                return await self._process(row_id, ordering_key)
        return await self._process(row_id, ordering_key)

    async def _process(self, row_id: uuid.UUID, ordering_key: str | None) -> InboxStatus:
        try:
            async with self.database.transaction() as db:
                if ordering_key and db.get_bind().dialect.name == "postgresql":
                    await db.execute(
                        text("SELECT pg_advisory_xact_lock(:key)"), {"key": _lock_key(ordering_key)}
                    )
                event = await _lock_row(db, row_id)
                if event is None or event.status == InboxStatus.PROCESSED:
                    return InboxStatus.PROCESSED
                processor = self.processors.get(event.provider)
                if processor is None:
                    raise LookupError(f"no processor for provider {event.provider!r}")
                outcome = await processor(db, event)
                event.status = InboxStatus.PROCESSED
                event.outcome = (outcome or "ok")[:300]
                event.attempts += 1
                event.processed_at = utcnow()
                event.last_error = None
                event.next_attempt_at = None
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
            event.last_error = error[:4000]
            event.next_attempt_at = utcnow() + retry_delay(event.attempts) if retry else None

    async def process_due(self, *, limit: int = 100, now: datetime | None = None) -> int:
        """Process failed events whose retry time has come and pending ones nobody finished."""
        now = now or utcnow()
        async with self.database.transaction() as db:
            query = (
                select(ProviderEvent.id)
                .where(
                    or_(
                        (ProviderEvent.status == InboxStatus.FAILED) & (ProviderEvent.next_attempt_at <= now),
                        (ProviderEvent.status == InboxStatus.PENDING)
                        & (ProviderEvent.received_at <= now - PENDING_GRACE),
                    )
                )
                .order_by(ProviderEvent.occurred_at, ProviderEvent.received_at)
                .limit(limit)
            )
            if db.get_bind().dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True)
            ids = list((await db.scalars(query)).all())
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

    def _local_lock(self, ordering_key: str) -> asyncio.Lock:
        lock = self._local_locks.get(ordering_key)
        if lock is None:
            lock = asyncio.Lock()
            self._local_locks[ordering_key] = lock
        return lock


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
    dialect = db.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    statement = (
        insert(ProviderEvent).values(**values).on_conflict_do_nothing(index_elements=["provider", "event_id"])
    )
    result = await db.execute(statement)
    created = bool(result.rowcount)  # type: ignore[attr-defined]
    event = await db.scalar(
        select(ProviderEvent).where(
            ProviderEvent.provider == provider, ProviderEvent.event_id == values["event_id"]
        )
    )
    assert event is not None  # inserted above or already there
    return Received(event=event, created=created)


async def _lock_row(db: AsyncSession, row_id: uuid.UUID) -> ProviderEvent | None:
    query = select(ProviderEvent).where(ProviderEvent.id == row_id)
    if db.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    return await db.scalar(query)


def _lock_key(ordering_key: str) -> int:
    """A signed 64-bit advisory-lock key derived from the ordering key."""
    return int.from_bytes(hashlib.sha256(ordering_key.encode()).digest()[:8], "big", signed=True)
