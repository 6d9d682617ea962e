"""The provider event inbox and the pipeline over it: stored before acted on, processed off the request,
failures kept and retried, one ordering key at a time and in batches."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from entitle.context import AppContext
from entitle.core.models.events import InboxStatus, ProviderEvent
from entitle.db.engine import Database
from entitle.db.types import utcnow
from entitle.errors import ProviderUnavailable
from entitle.providers.base import IncomingEvent, ParkEvent, Provider
from entitle.services.delivery.inbox import CLAIM_LEASE, Inbox, StorageUnavailable, WorkItem, store_event
from entitle.services.delivery.pipeline import EventPipeline

Processor = Callable[[AsyncSession, ProviderEvent], Awaitable[str]]


class FakeProvider:
    """A provider whose webhook body is `event_id|ordering_key` and whose processing is `processor`."""

    name = "test"

    def __init__(self, processor: Processor) -> None:
        self.processor = processor
        self.batches: list[list[str]] = []
        self.slots = 0

    async def verify_webhook(self, body: bytes, headers: Mapping[str, str]) -> IncomingEvent:
        event_id, _, key = body.decode().partition("|")
        return IncomingEvent(
            event_id=event_id, type="thing.happened", ordering_key=key or None, occurred_at=None
        )

    @contextlib.asynccontextmanager
    async def read_slot(self, events: Sequence[ProviderEvent]) -> AsyncIterator[bool]:
        self.slots += 1
        yield True

    async def process_events(self, db: AsyncSession, events: Sequence[ProviderEvent]) -> list[str]:
        self.batches.append([event.event_id for event in events])
        return [await self.processor(db, event) for event in events]

    async def aclose(self) -> None:
        return None


def pipeline_with(
    context: AppContext, processor: Processor, **options: Any
) -> tuple[EventPipeline, FakeProvider]:
    provider = FakeProvider(processor)
    assert isinstance(provider, Provider)
    return EventPipeline(context.database, {"test": provider}, bus=context.bus, **options), provider


async def deliver(pipeline: EventPipeline, event_id: str, ordering_key: str | None = "cus_1") -> None:
    await pipeline.ingest(pipeline.providers["test"], f"{event_id}|{ordering_key or ''}".encode(), {})


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


async def test_the_webhook_is_answered_before_processing_which_follows_at_once(context: AppContext) -> None:
    started, release = asyncio.Event(), asyncio.Event()

    async def slow(db: AsyncSession, event: ProviderEvent) -> str:
        started.set()
        await release.wait()
        return "done"

    pipeline, _ = pipeline_with(context, slow)
    await deliver(pipeline, "evt_ack")  # returns while processing is held
    await asyncio.wait_for(started.wait(), 5)  # processing began without anyone polling
    assert (await stored(context, "evt_ack")).status == InboxStatus.PENDING
    release.set()
    await pipeline.wait_idle()
    assert (await stored(context, "evt_ack")).status == InboxStatus.PROCESSED


async def test_processed_event_records_its_outcome_and_is_never_processed_twice(context: AppContext) -> None:
    calls: list[str] = []

    async def processor(db: AsyncSession, event: ProviderEvent) -> str:
        calls.append(event.event_id)
        return "did it"

    pipeline, _ = pipeline_with(context, processor)
    await deliver(pipeline, "evt_ok")
    await pipeline.wait_idle()
    await deliver(pipeline, "evt_ok")  # the vendor redelivers it
    await pipeline.wait_idle()
    row = await stored(context, "evt_ok")
    assert (row.status, row.outcome, row.attempts, row.last_error) == (
        InboxStatus.PROCESSED,
        "did it",
        1,
        None,
    )
    assert calls == ["evt_ok"]


async def test_events_of_one_key_stored_while_it_waits_are_processed_as_one_batch(
    context: AppContext,
) -> None:
    inside, release = asyncio.Event(), asyncio.Event()

    async def processor(db: AsyncSession, event: ProviderEvent) -> str:
        if event.event_id == "evt_b1":
            inside.set()
            await release.wait()
        return "ok"

    pipeline, provider = pipeline_with(context, processor)
    await deliver(pipeline, "evt_b1")
    await inside.wait()
    for n in (2, 3, 4):  # arrive while the key is busy
        await deliver(pipeline, f"evt_b{n}")
    release.set()
    await pipeline.wait_idle()
    assert provider.batches == [["evt_b1"], ["evt_b2", "evt_b3", "evt_b4"]]


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

    pipeline, _ = pipeline_with(context, processor)
    await deliver(pipeline, "evt_fail")
    await pipeline.wait_idle()
    row = await stored(context, "evt_fail")
    assert row.status == InboxStatus.FAILED and row.attempts == 1
    assert row.outcome is None  # the failed attempt's write was rolled back
    assert row.last_error is not None and "vendor said no" in row.last_error
    assert row.next_attempt_at is not None and row.next_attempt_at > utcnow()

    assert await pipeline.inbox.claim_due(now=utcnow()) == []  # not yet due
    fail = False
    assert await pipeline.inbox.claim_due(now=row.next_attempt_at + timedelta(seconds=1)) == [
        WorkItem("test", "cus_1")
    ]
    pipeline.submit(WorkItem("test", "cus_1"))
    await pipeline.wait_idle()
    row = await stored(context, "evt_fail")
    assert (row.status, row.outcome, row.attempts) == (InboxStatus.PROCESSED, "second time lucky", 2)


async def test_one_bad_event_does_not_hold_up_the_rest_of_its_batch(context: AppContext) -> None:
    inside, release = asyncio.Event(), asyncio.Event()

    async def processor(db: AsyncSession, event: ProviderEvent) -> str:
        if event.event_id == "evt_first":
            inside.set()
            await release.wait()
        if event.event_id == "evt_poison":
            raise ValueError("cannot read this one")
        return "ok"

    pipeline, _ = pipeline_with(context, processor)
    await deliver(pipeline, "evt_first")
    await inside.wait()
    for event_id in ("evt_good_1", "evt_poison", "evt_good_2"):
        await deliver(pipeline, event_id)
    release.set()
    await pipeline.wait_idle()
    statuses = {e: (await stored(context, e)).status for e in ("evt_good_1", "evt_poison", "evt_good_2")}
    assert statuses == {
        "evt_good_1": InboxStatus.PROCESSED,
        "evt_poison": InboxStatus.FAILED,
        "evt_good_2": InboxStatus.PROCESSED,
    }


async def test_a_vendor_outage_fails_the_batch_as_a_whole(context: AppContext) -> None:
    calls: list[str] = []
    inside, release = asyncio.Event(), asyncio.Event()

    async def processor(db: AsyncSession, event: ProviderEvent) -> str:
        calls.append(event.event_id)
        if event.event_id == "evt_o0":
            inside.set()
            await release.wait()
            return "ok"
        raise ProviderUnavailable("Stripe did not answer.", code="stripe_unavailable")

    pipeline, _ = pipeline_with(context, processor)
    await deliver(pipeline, "evt_o0")
    await inside.wait()
    for n in (1, 2, 3):
        await deliver(pipeline, f"evt_o{n}")
    release.set()
    await pipeline.wait_idle()
    # The vendor was asked once for the batch, not once more per event.
    assert calls == ["evt_o0", "evt_o1"]
    assert {(await stored(context, f"evt_o{n}")).status for n in (1, 2, 3)} == {InboxStatus.FAILED}


async def test_parked_event_waits_and_is_released(context: AppContext) -> None:
    ready = False

    async def processor(db: AsyncSession, event: ProviderEvent) -> str:
        if not ready:
            raise ParkEvent("account not known yet")
        return "applied"

    pipeline, _ = pipeline_with(context, processor)
    await deliver(pipeline, "evt_park", ordering_key="tx_1")
    await pipeline.wait_idle()
    assert (await stored(context, "evt_park")).status == InboxStatus.PARKED
    assert await pipeline.inbox.claim_due(now=utcnow() + timedelta(days=1)) == []  # parked is not due
    ready = True
    assert await pipeline.release_parked("test", "tx_1") == 1
    assert (await stored(context, "evt_park")).status == InboxStatus.PROCESSED


async def test_events_without_an_ordering_key_are_processed(context: AppContext) -> None:
    async def processor(db: AsyncSession, event: ProviderEvent) -> str:
        return event.type

    pipeline, _ = pipeline_with(context, processor)
    await deliver(pipeline, "evt_nokey", ordering_key=None)
    await pipeline.wait_idle()
    assert (await stored(context, "evt_nokey")).outcome == "thing.happened"


async def test_what_a_processor_sets_on_the_row_is_kept_with_the_outcome(context: AppContext) -> None:
    owner = uuid.uuid4()

    async def processor(db: AsyncSession, event: ProviderEvent) -> str:
        event.account_id = owner  # as the App Store handlers do once they know the owner
        return "owner found"

    pipeline, _ = pipeline_with(context, processor)
    await deliver(pipeline, "evt_owner")
    await pipeline.wait_idle()
    row = await stored(context, "evt_owner")
    assert (row.status, row.outcome, row.attempts, row.account_id) == (
        InboxStatus.PROCESSED,
        "owner found",
        1,
        owner,
    )


async def test_an_api_process_that_does_not_process_leaves_events_to_a_worker(context: AppContext) -> None:
    async def processor(db: AsyncSession, event: ProviderEvent) -> str:
        return "by the worker"

    api, _ = pipeline_with(context, processor, process_locally=False)
    await deliver(api, "evt_w1")
    await api.wait_idle()
    assert (await stored(context, "evt_w1")).status == InboxStatus.PENDING  # stored, due, unclaimed
    worker, _ = pipeline_with(context, processor)
    assert await worker.run(once=True) == 1
    assert (await stored(context, "evt_w1")).outcome == "by the worker"


async def test_a_claim_left_by_a_process_that_died_runs_out_within_seconds(context: AppContext) -> None:
    async def processor(db: AsyncSession, event: ProviderEvent) -> str:
        return "recovered"

    # Stored and claimed by a process that then died before processing it.
    async with context.database.transaction() as db:
        await store_event(
            db,
            provider="test",
            event_id="evt_orphan",
            type="t",
            raw_body=b"{}",
            ordering_key="cus_9",
            lease_until=utcnow() + CLAIM_LEASE,
        )
    survivor, _ = pipeline_with(context, processor)
    assert await survivor.inbox.claim_due() == []  # the lease still holds
    assert CLAIM_LEASE <= timedelta(seconds=10)
    assert await survivor.inbox.claim_due(now=utcnow() + CLAIM_LEASE) == [WorkItem("test", "cus_9")]


async def test_one_ordering_key_is_processed_one_batch_at_a_time_across_processes(
    context: AppContext,
) -> None:
    """Two pipelines (as in two processes: no shared in-process state) on one ordering key."""
    if context.database.dialect != "postgresql":
        pytest.skip("the cross-process lock is PostgreSQL's advisory lock; SQLite serializes writers itself")
    timeline: list[str] = []
    first_inside, let_first_finish = asyncio.Event(), asyncio.Event()

    async def slow(db: AsyncSession, event: ProviderEvent) -> str:
        timeline.append("first in")
        first_inside.set()
        await let_first_finish.wait()
        timeline.append("first out")
        return "slow"

    async def fast(db: AsyncSession, event: ProviderEvent) -> str:
        timeline.append(f"second sees {event.event_id}")
        return "fast"

    one, _ = pipeline_with(context, slow)
    two, _ = pipeline_with(context, fast)
    await deliver(one, "evt_a")
    await first_inside.wait()
    await deliver(two, "evt_b")
    # Wait until the second is blocked on the advisory lock in PostgreSQL, not merely not yet scheduled.
    async with context.database.sessionmaker() as db:
        while not await db.scalar(
            text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
        ):
            await asyncio.sleep(0.01)
    assert timeline == ["first in"]
    let_first_finish.set()
    await asyncio.gather(one.wait_idle(), two.wait_idle())
    # The second process waited, then worked only on what was left: evt_a once, by the first.
    assert timeline == ["first in", "first out", "second sees evt_b"]
    assert (await stored(context, "evt_a")).attempts == 1


async def test_two_workers_never_claim_the_same_due_events(context: AppContext) -> None:
    """Each due row goes to one worker: the claim is a lease, not only a lock held while selecting."""
    calls: list[str] = []

    async def failing(db: AsyncSession, event: ProviderEvent) -> str:
        calls.append(event.event_id)
        await asyncio.sleep(0.05)  # both workers are busy at once
        raise RuntimeError("still broken")

    first, _ = pipeline_with(context, failing, process_locally=False)
    second, _ = pipeline_with(context, failing, process_locally=False)
    for n in range(6):
        await deliver(first, f"evt_due_{n}", ordering_key=f"cus_{n}")

    claimed = await asyncio.gather(first.run(once=True), second.run(once=True))

    assert len(calls) == len(set(calls))  # no event went to both workers
    if context.database.dialect != "postgresql":
        # SQLite has no row locks to skip: a worker that lost the claim leaves the rest for its next pass.
        claimed.append(await first.run(once=True))
    assert sum(claimed) == 6
    assert sorted(calls) == [f"evt_due_{n}" for n in range(6)]  # each once, none twice
    assert await first.run(once=True) == 0  # failed rows wait for their retry time


async def test_a_database_that_does_not_take_the_event_answers_503() -> None:
    """Every provider retries a 5xx; a 500 from a driver error would look like our bug instead."""
    # Nothing listens on port 1: the connection is refused at once. (A SQLite file in a missing folder
    # fails too, but aiosqlite's worker thread can outlive the test's event loop.)
    broken = Database("postgresql://postgres@127.0.0.1:1/unreachable")
    try:
        with pytest.raises(StorageUnavailable) as raised:
            await Inbox(broken).receive(
                provider="test",
                incoming=IncomingEvent(event_id="evt_lost", type="t", ordering_key=None, occurred_at=None),
                raw_body=b"{}",
                claim=True,
            )
        assert raised.value.status_code == 503
    finally:
        await broken.dispose()
