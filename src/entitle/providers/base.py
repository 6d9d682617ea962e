"""The one interface every provider offers the core and the services: what a store plugs into.

A provider speaks one vendor's protocol. It verifies the vendor's signed webhooks and names what each
one is about (`verify_webhook` -> `IncomingEvent`); the generic ingestion path (`services.delivery.pipeline`)
stores that event in the inbox and answers the vendor, and processing follows at once, off the request,
in this process or any worker. Processing hands the provider every unprocessed event of one ordering key
at once (`process_events`), so a provider that re-reads from its vendor settles them all with one read;
`read_slot` is where such a provider waits for its turn under the vendor's rate limit before the batch is
chosen, so the batch holds everything stored until the read may start; it yields whether the batch may
take events stored after those it was shown (True once the read is sure to start after the batch is
chosen, or when nothing is read at all).

Providers are built from explicit pieces where the app is assembled (`entitle.context`): their slice of
the settings, the catalog, their vendor client and a `SubscriptionSink` (declared by the core,
implemented by the services). They never import the services.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

from sqlalchemy.ext.asyncio import AsyncSession

from entitle.core.models.events import ProviderEvent


class ParkEvent(Exception):  # noqa: N818  (a signal, not an error)
    """Raised while processing when an event cannot be applied yet (its account is not known)."""


@dataclass(frozen=True)
class IncomingEvent:
    """A verified webhook, as the inbox stores it."""

    # The vendor's id for the event (unique per provider): a redelivery finds the row already stored.
    event_id: str
    type: str
    # Work on one key (a Stripe customer, an App Store original transaction) is serialized and batched.
    ordering_key: str | None
    # The vendor's own timestamp for the event; a batch is processed in this order.
    occurred_at: datetime | None


@runtime_checkable
class Provider(Protocol):
    """A store or identity provider whose signed events entitle receives."""

    name: str

    async def verify_webhook(self, body: bytes, headers: Mapping[str, str]) -> IncomingEvent:
        """Check the vendor's signature on the exact bytes received and say what the event is.

        Raises an EntitleError (4xx) for a forged or malformed event, ProviderUnavailable (503, naming the
        missing setting) when the provider is not configured. Nothing is stored before this returns."""
        ...

    def read_slot(self, events: Sequence[ProviderEvent]) -> AbstractAsyncContextManager[bool]:
        """Entered before a batch is chosen, with the events of its key seen so far: a provider that
        re-reads from its vendor waits here for a request slot; others return `no_slot()`. Yields True
        when the batch may also take events stored since `events` were seen."""
        ...

    async def process_events(self, db: AsyncSession, events: Sequence[ProviderEvent]) -> list[str]:
        """Apply `events` (one ordering key, oldest first) inside the caller's transaction; one short
        outcome per event. Raises ParkEvent when an event must wait, anything else to have the batch
        retried; nothing is half-applied, since the transaction rolls back."""
        ...

    async def aclose(self) -> None: ...


def no_slot() -> AbstractAsyncContextManager[bool]:
    """The read slot of a provider that reads nothing from its vendor while processing: every event
    stored so far may join the batch."""
    return contextlib.nullcontext(True)
