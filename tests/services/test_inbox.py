"""The provider event inbox: stored before acted on, failures kept and retried, one ordering key at a time."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from entitle.context import AppContext
from entitle.core.models.events import InboxStatus, ProviderEvent
from entitle.db.engine import Database
from entitle.db.types import utcnow
from entitle.services.inbox import Inbox, ParkEvent, StorageUnavailable, store_event

Processor = Callable[[AsyncSession, ProviderEvent], Awaitable[str | None]]


def inbox_with(context: AppContext, processor: Processor) -> Inbox:
    return Inbox(context.database, {"test": processor})


async def receive(inbox: Inbox, event_id: str, ordering_key: str | None = "cus_1") -> ProviderEvent:
    received = await inbox.receive(
        provider="test",
        event_id=event_id,
        type="thing.happened",
        raw_body=b'{"n": 1}',
        ordering_key=ordering_key,
    )
    return received.event


async def stored(context: AppContext, event_id: str) -> ProviderEvent:
    async with context.database.transaction() as db:
        row = await db.scalar(select(ProviderEvent).where(ProviderEvent.event_id == event_id))
        assert row is not None
        return row


async def test_first_delivery_is_stored_and_a_redelivery_finds_the_same_row(context: AppContext) -> None:
    async with context.database.transaction() as db:
        first = await store_event(
            db, provider="test", event_id="evt_1", type="a.b", raw_body=b"{}", ordering_key="k"
        )
    async with context.database.transaction() as db:
        again = await store_event(db, provider="test", event_id="evt_1", type="a.b", raw_body=b"{}")
        count = await db.scalar(select(func.count()).select_from(ProviderEvent))

    assert first.created and not again.created
    assert again.event.id == first.event.id
    assert (first.event.status, again.event.status) == (InboxStatus.PENDING, InboxStatus.PENDING)
    assert again.event.ordering_key == first.event.ordering_key == "k"
    assert count == 1
    row = await stored(context, "evt_1")
    assert (row.id, row.raw_body, row.attempts) == (first.event.id, b"{}", 0)


async def test_processed_event_records_its_outcome_and_is_never_processed_twice(context: AppContext) -> None:
    calls: list[str] = []

    async def processor(db: AsyncSession, event: ProviderEvent) -> str:
        calls.append(event.event_id)
        return "did it"

    inbox = inbox_with(context, processor)
    event = await receive(inbox, "evt_ok")

    assert await inbox.process(event) == InboxStatus.PROCESSED
    assert await inbox.process(event.id) == InboxStatus.PROCESSED
    row = await stored(context, "evt_ok")
    assert (row.status, row.outcome, row.attempts, row.last_error) == (
        InboxStatus.PROCESSED,
        "did it",
        1,
        None,
    )
    assert calls == ["evt_ok"]


async def test_failure_is_recorded_without_its_writes_and_retried_until_it_succeeds(
    context: AppContext,
) -> None:
    fail = True

    async def processor(db: AsyncSession, event: ProviderEvent) -> str:
        event.outcome = "half done"
        await db.flush()
        if fail:
            raise RuntimeError("vendor said no")
        return "second time lucky"

    inbox = inbox_with(context, processor)
    event = await receive(inbox, "evt_fail")

    assert await inbox.process(event) == InboxStatus.FAILED
    row = await stored(context, "evt_fail")
    assert row.status == InboxStatus.FAILED and row.attempts == 1
    assert row.outcome is None  # the failed attempt's write was rolled back
    assert row.last_error is not None and "vendor said no" in row.last_error
    assert row.next_attempt_at is not None and row.next_attempt_at > utcnow()

    assert await inbox.process_due(now=utcnow()) == 0  # not yet due
    fail = False
    assert await inbox.process_due(now=row.next_attempt_at + timedelta(seconds=1)) == 1
    row = await stored(context, "evt_fail")
    assert (row.status, row.outcome, row.attempts) == (InboxStatus.PROCESSED, "second time lucky", 2)


async def test_parked_event_waits_and_is_released(context: AppContext) -> None:
    ready = False

    async def processor(db: AsyncSession, event: ProviderEvent) -> str:
        if not ready:
            raise ParkEvent("account not known yet")
        return "applied"

    inbox = inbox_with(context, processor)
    event = await receive(inbox, "evt_park", ordering_key="tx_1")

    assert await inbox.process(event) == InboxStatus.PARKED
    ready = True
    assert await inbox.release_parked("test", "tx_1") == 1
    assert (await stored(context, "evt_park")).status == InboxStatus.PROCESSED


async def test_events_without_an_ordering_key_are_processed(context: AppContext) -> None:
    async def processor(db: AsyncSession, event: ProviderEvent) -> str:
        return event.type

    inbox = inbox_with(context, processor)
    event = await receive(inbox, "evt_nokey", ordering_key=None)
    assert await inbox.process(event) == InboxStatus.PROCESSED
    assert (await stored(context, "evt_nokey")).outcome == "thing.happened"


async def test_one_ordering_key_is_processed_one_event_at_a_time_across_processes(
    context: AppContext,
) -> None:
    """Two inboxes (as in two worker processes: no shared in-process lock) on one ordering key."""
    if context.database.dialect != "postgresql":
        pytest.skip("the cross-process lock is PostgreSQL's advisory lock; SQLite serializes writers itself")
    timeline: list[str] = []
    first_inside = asyncio.Event()
    let_first_finish = asyncio.Event()

    async def slow(db: AsyncSession, event: ProviderEvent) -> str:
        timeline.append("first in")
        first_inside.set()
        await let_first_finish.wait()
        timeline.append("first out")
        return "slow"

    async def fast(db: AsyncSession, event: ProviderEvent) -> str:
        timeline.append("second in")
        return "fast"

    one, two = inbox_with(context, slow), inbox_with(context, fast)
    first, second = await receive(one, "evt_a"), await receive(two, "evt_b")

    first_task = asyncio.create_task(one.process(first))
    await first_inside.wait()
    second_task = asyncio.create_task(two.process(second))
    # Wait until the second is blocked on the advisory lock in PostgreSQL, not merely not yet scheduled.
    async with context.database.sessionmaker() as db:
        while not second_task.done() and not await db.scalar(
            text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
        ):
            await asyncio.sleep(0.01)
    assert timeline == ["first in"]
    let_first_finish.set()

    assert await asyncio.gather(first_task, second_task) == [InboxStatus.PROCESSED, InboxStatus.PROCESSED]
    assert timeline == ["first in", "first out", "second in"]


async def test_what_a_processor_sets_on_the_row_is_kept_with_the_outcome(context: AppContext) -> None:
    owner = uuid.uuid4()

    async def processor(db: AsyncSession, event: ProviderEvent) -> str:
        event.account_id = owner  # as the App Store handlers do once they know the owner
        return "owner found"

    inbox = inbox_with(context, processor)
    event = await receive(inbox, "evt_owner")
    assert await inbox.process(event) == InboxStatus.PROCESSED

    row = await stored(context, "evt_owner")
    assert (row.status, row.outcome, row.attempts, row.account_id) == (
        InboxStatus.PROCESSED,
        "owner found",
        1,
        owner,
    )


async def test_one_event_processed_by_two_processes_at_once_is_applied_once(context: AppContext) -> None:
    """The request and a worker both pick up one event: the second waits, then sees it done."""
    if context.database.dialect != "postgresql":
        pytest.skip("across processes this relies on PostgreSQL's advisory and row locks")
    calls: list[str] = []
    inside = asyncio.Event()
    release = asyncio.Event()

    async def processor(db: AsyncSession, event: ProviderEvent) -> str:
        calls.append(event.event_id)
        inside.set()
        await release.wait()
        return "once"

    one, two = inbox_with(context, processor), inbox_with(context, processor)
    event = await receive(one, "evt_twice")
    first_task = asyncio.create_task(one.process(event))
    await inside.wait()
    second_task = asyncio.create_task(two.process(event.id))
    async with context.database.sessionmaker() as db:
        while not second_task.done() and not await db.scalar(
            text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
        ):
            await asyncio.sleep(0.01)
    release.set()

    assert await asyncio.gather(first_task, second_task) == [InboxStatus.PROCESSED, InboxStatus.PROCESSED]
    assert calls == ["evt_twice"]
    assert (await stored(context, "evt_twice")).attempts == 1


async def test_two_workers_never_claim_the_same_due_events(context: AppContext) -> None:
    """Each due row goes to one worker: the claim is a lease, not only a lock held while selecting."""
    calls: list[str] = []

    async def failing(db: AsyncSession, event: ProviderEvent) -> str:
        calls.append(event.event_id)
        await asyncio.sleep(0.05)  # both workers are busy at once
        raise RuntimeError("still broken")

    first, second = inbox_with(context, failing), inbox_with(context, failing)
    for n in range(6):
        await receive(first, f"evt_due_{n}", ordering_key=f"cus_{n}")
    async with context.database.transaction() as db:
        await db.execute(
            ProviderEvent.__table__.update().values(
                status=InboxStatus.FAILED, next_attempt_at=utcnow() - timedelta(seconds=1)
            )
        )

    claimed = await asyncio.gather(first.process_due(limit=3), second.process_due(limit=3))

    assert len(calls) == len(set(calls))  # no event went to both workers
    if context.database.dialect == "postgresql":
        # SKIP LOCKED hands the second worker the next rows, so one pass covers all of them.
        assert sum(claimed) == 6
    else:
        # SQLite has no row locks to skip: a worker that lost the claim leaves the rest for its next pass.
        await first.process_due()
    assert sorted(calls) == [f"evt_due_{n}" for n in range(6)]  # each once, none twice
    assert await first.process_due() == 0


async def test_a_database_that_does_not_take_the_event_answers_503() -> None:
    """Every provider retries a 5xx; a 500 from a driver error would look like our bug instead."""
    # Nothing listens on port 1: the connection is refused at once. (A SQLite file in a missing folder
    # fails too, but aiosqlite's worker thread can outlive the test's event loop.)
    broken = Database("postgresql://postgres@127.0.0.1:1/unreachable")
    try:
        with pytest.raises(StorageUnavailable) as raised:
            await receive(Inbox(broken, {}), "evt_lost")
        assert raised.value.status_code == 503
    finally:
        await broken.dispose()
