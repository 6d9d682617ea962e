"""From a vendor's webhook to applied state: acknowledge, then process at once, off the request.

`ingest` is the one way in for every provider: the provider verifies the signed body and names the
event, the inbox commits it, and the webhook is answered. Processing starts immediately in this process
(`submit`) and never inside the request. Every process that runs `run()` (an `entitle worker`, or
`entitle serve` doing the worker's job) also claims what nobody is working on: events stored by a
process that does not process (`serve --no-worker`), leases left by a process that died, failures whose
retry time came. Those processes are woken at once through `services.delivery.changes` (LISTEN/NOTIFY on
PostgreSQL) and poll every few seconds besides, so a crash between store and process costs seconds.

Work is done per `WorkItem`: every unprocessed event of one provider's ordering key (a Stripe customer,
an App Store purchase) as one batch, so one vendor read settles them all, and one key at a time in this
process (the inbox's advisory lock does the same across processes). A batch that fails is retried event
by event, so one bad event cannot hold up the others of its key; when the vendor itself is unavailable
the whole batch waits for its retry instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import traceback
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import select

from entitle import metrics
from entitle.core.models.events import InboxStatus, ProviderEvent
from entitle.db.engine import Database
from entitle.errors import EntitleError, ProviderUnavailable
from entitle.providers.base import ParkEvent, Provider
from entitle.services.delivery.changes import ChangeBus
from entitle.services.delivery.inbox import Inbox, WorkItem

log = logging.getLogger(__name__)

# How often a consumer looks for due rows when nobody woke it (crash recovery, retries coming due).
POLL_SECONDS = 2.0
# How many keys this process works on at once; the rest wait their turn.
DEFAULT_CONCURRENCY = 32


@dataclass(frozen=True)
class Receipt:
    # False when the vendor redelivered an event the inbox already holds.
    created: bool
    # The stored row's status when the webhook was answered (`pending` for a new event).
    status: str


class EventPipeline:
    def __init__(
        self,
        database: Database,
        providers: Mapping[str, Provider],
        *,
        bus: ChangeBus | None = None,
        process_locally: bool = True,
        concurrency: int = DEFAULT_CONCURRENCY,
    ) -> None:
        self.database = database
        self.providers = providers
        self.bus = bus
        self.inbox = Inbox(database, bus)
        # False for an API process that leaves all processing to workers (`serve --no-worker`).
        self.process_locally = process_locally
        self.concurrency = concurrency
        self._slots = asyncio.Semaphore(concurrency)
        self._running: dict[WorkItem, asyncio.Task[None]] = {}
        self._again: set[WorkItem] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.processed = 0
        self.failed = 0

    # -- in -----------------------------------------------------------------------------------------
    async def ingest(self, provider: Provider, body: bytes, headers: Mapping[str, str]) -> Receipt:
        """Verify, store and schedule one webhook; returns once the event is safely stored."""
        incoming = await provider.verify_webhook(body, headers)
        received = await self.inbox.receive(
            provider=provider.name, incoming=incoming, raw_body=body, claim=self.process_locally
        )
        event = received.event
        if self.process_locally and event.status in (InboxStatus.PENDING, InboxStatus.FAILED):
            # A redelivery of an event that failed so far is worth trying again now, too.
            self.submit(WorkItem.of(provider.name, event.ordering_key, event.id))
        return Receipt(created=received.created, status=str(event.status))

    def submit(self, item: WorkItem) -> None:
        """Work on `item` now in this process; if it is being worked on, once more right after."""
        if item in self._running:
            self._again.add(item)
            return
        task = asyncio.get_running_loop().create_task(self._work(item))
        self._running[item] = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def retry_now(self, row_id: uuid.UUID) -> str:
        """Work on a failed or parked event again now (the dashboard's retry); returns its status after."""
        event = await self.inbox.make_due(row_id)
        if self.process_locally and event.status == InboxStatus.PENDING:
            item = WorkItem.of(event.provider, event.ordering_key, event.id)
            self.submit(item)
            task = self._running.get(item)
            if task is not None:
                await asyncio.shield(task)
        async with self.database.read_sessionmaker() as db:
            return str(await db.scalar(select(ProviderEvent.status).where(ProviderEvent.id == row_id)))

    async def release_parked(self, provider: str, ordering_key: str) -> int:
        """Process the events parked for `ordering_key` (its purchase is now known)."""
        released = await self.inbox.unpark(provider, ordering_key)
        if released:
            item = WorkItem(provider, ordering_key)
            self.submit(item)
            # The caller (the purchase route) answers with the state these events lead to.
            task = self._running.get(item)
            if task is not None:
                await asyncio.shield(task)
        return released

    # -- the consumer ---------------------------------------------------------------------------------
    async def run(self, *, once: bool = False) -> int:
        """Claim and work on due rows: at once when woken, every POLL_SECONDS otherwise."""
        woken = self.bus.inbox_woken if self.bus is not None else asyncio.Event()
        if self.bus is not None:
            self.bus.start()
        total = 0
        while True:
            woken.clear()
            try:
                items = await self.inbox.claim_due()
            except Exception:  # the database is away: try again at the next poll
                log.exception("could not claim provider events")
                items = []
            for item in items:
                self.submit(item)
            total += len(items)
            if self.inbox.backlog:
                # More are waiting (a backlog after an outage, a worker just started): claim again as
                # soon as there is room, not at the next poll; claims beyond that would only run out.
                while len(self._tasks) >= self.concurrency:
                    await asyncio.wait(list(self._tasks), return_when=asyncio.FIRST_COMPLETED)
                continue
            if once:
                await self.wait_idle()
                return total
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(woken.wait(), POLL_SECONDS)

    async def wait_idle(self) -> None:
        """Until nothing is being worked on in this process (tests, `--once`, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def aclose(self, *, grace_seconds: float = 5.0) -> None:
        """Let work in flight finish for a moment, then stop; anything cut short keeps its claim, which
        runs out, so another process (or this one, restarted) takes it within seconds."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=grace_seconds)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # -- the work -----------------------------------------------------------------------------------
    async def _work(self, item: WorkItem) -> None:
        try:
            async with self._slots:
                while True:
                    self._again.discard(item)
                    try:
                        await self._work_on(item)
                    except Exception:  # recorded on the rows where possible; never kill the task quietly
                        log.exception("working on %s failed", item)
                    if item not in self._again:
                        return
        finally:
            self._running.pop(item, None)
            self._again.discard(item)

    async def _work_on(self, item: WorkItem) -> None:
        provider = self.providers.get(item.provider)
        preview = await self.inbox.peek(item)
        if not preview:
            return
        if provider is None:
            await self.inbox.record_failure(
                [e.id for e in preview],
                InboxStatus.FAILED,
                error=f"no provider named {item.provider!r} is configured",
                retry=True,
            )
            return
        try:
            async with provider.read_slot(preview) as widen:
                await self._apply(provider, item if widen else None, preview)
        except ParkEvent as parked:
            ids = [e.id for e in preview]
            if len(ids) == 1:
                await self.inbox.record_failure(ids, InboxStatus.PARKED, error=str(parked), retry=False)
            else:
                await self._one_by_one(provider, item, ids)
        except ProviderUnavailable as exc:
            # The vendor is away or rate-limiting us: the batch waits for its retry as a whole rather
            # than asking again once per event.
            await self._failed([e.id for e in preview], exc)
        except Exception as exc:
            ids = [e.id for e in preview]
            if len(ids) == 1:
                await self._failed(ids, exc)
            else:
                await self._one_by_one(provider, item, ids)

    async def _apply(self, provider: Provider, item: WorkItem | None, preview: list[ProviderEvent]) -> int:
        """Process one batch: every unprocessed row of `item` (the provider's read starts after this
        chooses them), or, with no item, only the rows of `preview` that are still unprocessed."""
        async with self.database.transaction() as db:
            if item is not None:
                events = await self.inbox.lock_batch(db, item)
            else:
                events = await self.inbox.lock_rows(db, [event.id for event in preview])
            if not events:
                return 0
            outcomes = await provider.process_events(db, events)
            await self.inbox.mark_processed(db, events, outcomes)
        self.processed += len(events)
        metrics.PROVIDER_EVENTS_PROCESSED.labels(provider.name).inc(len(events))
        return len(events)

    async def _one_by_one(self, provider: Provider, item: WorkItem, row_ids: list[uuid.UUID]) -> None:
        for row_id in row_ids:
            single = item.one_row(row_id)
            try:
                preview = await self.inbox.peek(single)
                async with provider.read_slot(preview):
                    await self._apply(provider, single, preview)
            except ParkEvent as parked:
                await self.inbox.record_failure([row_id], InboxStatus.PARKED, error=str(parked), retry=False)
            except Exception as exc:
                await self._failed([row_id], exc)

    async def _failed(self, row_ids: list[uuid.UUID], exc: BaseException) -> None:
        self.failed += len(row_ids)
        code = exc.code if isinstance(exc, EntitleError) else exc.__class__.__name__
        log.warning("%d provider event(s) failed: %s", len(row_ids), code)
        detail = "".join(traceback.format_exception_only(exc)).strip()
        await self.inbox.record_failure(row_ids, InboxStatus.FAILED, error=detail, retry=True)
