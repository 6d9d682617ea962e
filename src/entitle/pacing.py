"""Pacing this process's requests to a vendor under the vendor's rate limits.

Decisions this module owns:
- Strict spacing: each limit is a leaky bucket with a burst of one (GCRA), so requests leave evenly
  spaced, one every 1/rate seconds, and no window the vendor measures can hold more than its limit.
- Slightly under the limit: every rate is multiplied by `PACING_MARGIN`, so the drift between our clock
  and the vendor's, and the jitter of the network between, never adds up to one request too many.
- Two kinds of limit at once: one for the whole account and one per endpoint (a name such as
  `"GET /v1/subscriptions/{id}"`). A request first queues for its endpoint, then for the account, so a
  crowded endpoint never holds back requests to the others behind it.
- First come, first served: each queue is an `asyncio.Lock` (FIFO); a slot is taken only at the moment
  its request leaves, so a waiter that is cancelled leaves nothing behind.
- After a 429 the vendor is right: `back_off` holds the endpoint (or everything, when the vendor says
  the account's limit was hit) for the retry delay, and waiters already asleep wake up to re-plan, so a
  crowd of waiters does not walk into the same wall.
- Reservation: `async with pacer.reserved(endpoint):` waits for a slot and takes it; the next request to
  that endpoint made in the block, in the same task, leaves at once. The slot is taken when granted, so
  the requests behind it are spaced from the slot, not from whenever the reserved request really leaves
  (a few milliseconds later, after a query): holding the queues until then would slow the whole pace by
  that much on every reservation. A reservation left unused gives its slot back when nobody has taken a
  later one meanwhile, and wakes the waiters to re-plan.

Pacing is per process: processes sharing one vendor account share its limits, so each should be
configured with its share (for Stripe, `ENTITLE_STRIPE_MAX_REQUESTS_PER_SECOND`; `entitle serve --workers N`
gives each of its processes 1/N of Stripe's limit when that is not set).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import math
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field

# The fraction of a vendor's limit we pace at.
PACING_MARGIN = 0.95

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


@dataclass
class PacerStats:
    """What went out and what came back 429, per endpoint (benchmarks report these)."""

    requests: Counter[str] = field(default_factory=Counter)
    rate_limited: Counter[str] = field(default_factory=Counter)

    @property
    def total_requests(self) -> int:
        return sum(self.requests.values())

    @property
    def total_rate_limited(self) -> int:
        return sum(self.rate_limited.values())


def retry_delay(attempt: int, *, base: float, cap: float) -> float:
    """Seconds to wait before retry number `attempt` (from 0): doubling from `base` up to `cap`, each
    drawn from its upper half, so clients rate-limited together do not come back together."""
    ceiling: float = min(cap, base * 2.0**attempt)
    return ceiling * (0.5 + random.random() / 2)


class _Gate:
    """One limit: the earliest moment its next request may leave, and the queue waiting for that."""

    def __init__(self, per_second: float | None) -> None:
        self.interval = 1.0 / (per_second * PACING_MARGIN) if per_second else 0.0
        self.free_at = -math.inf
        self.queue = asyncio.Lock()

    def take(self, departed_at: float) -> None:
        self.free_at = max(self.free_at, departed_at + self.interval)


@dataclass
class _Reservation:
    pacer: Pacer
    endpoint: str
    task: asyncio.Task[object] | None
    open: bool = True

    def use(self) -> None:
        """The reserved request leaves now, on the slot taken when the reservation was granted."""
        self.pacer.stats.requests[self.endpoint] += 1
        self.open = False


_reservation: contextvars.ContextVar[_Reservation | None] = contextvars.ContextVar(
    "entitle_pacer_reservation", default=None
)


class Pacer:
    """Spaces requests under an account-wide rate and per-endpoint rates (requests per second).

    `per_second` limits every request; `per_endpoint` each endpoint not named in `endpoint_limits`;
    None means no limit of that kind.
    """

    def __init__(
        self,
        *,
        per_second: float | None,
        per_endpoint: float | None,
        endpoint_limits: Mapping[str, float] | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.per_second = per_second
        self.per_endpoint = per_endpoint
        self.endpoint_limits = dict(endpoint_limits or {})
        self._clock = clock
        self._sleep = sleep
        self._overall = _Gate(per_second)
        self._endpoints: dict[str, _Gate] = {}
        self._moved = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.stats = PacerStats()

    def limit_of(self, endpoint: str) -> float | None:
        """The vendor's limit for `endpoint` alone (before the margin), None when it has none."""
        return self.endpoint_limits.get(endpoint, self.per_endpoint)

    async def acquire(self, endpoint: str) -> None:
        """Wait until a request to `endpoint` may leave under every limit, and count it as gone."""
        self._bind_loop()
        held = _reservation.get()
        if held is not None and held.pacer is self and held.open and held.task is asyncio.current_task():
            if held.endpoint != endpoint:
                raise RuntimeError(f"make the reserved {held.endpoint} request before any other")
            held.use()
            return
        gate = self._gate(endpoint)
        async with gate.queue:
            # The endpoint's own spacing first, so the account-wide queue only holds ready requests.
            ready = await self._wait_for(gate)
            async with self._overall.queue:
                self._take((gate, self._overall), await self._wait_for(gate, self._overall, since=ready))
                self.stats.requests[endpoint] += 1

    @contextlib.asynccontextmanager
    async def reserved(self, endpoint: str) -> AsyncIterator[None]:
        """Wait for a slot for `endpoint` and keep it for the block's next request to `endpoint`."""
        self._bind_loop()
        held = _reservation.get()
        if held is not None and held.open and held.task is asyncio.current_task():
            raise RuntimeError("this task already holds a reservation")
        gate, overall = self._gate(endpoint), self._overall
        # Cancelled while waiting, the queues are released and no slot is taken.
        async with gate.queue:
            ready = await self._wait_for(gate)
            async with overall.queue:
                before = (gate.free_at, overall.free_at)
                self._take((gate, overall), await self._wait_for(gate, overall, since=ready))
                taken = (gate.free_at, overall.free_at)
        slot = _Reservation(self, endpoint, asyncio.current_task())
        token = _reservation.set(slot)
        try:
            yield
        finally:
            _reservation.reset(token)
            if slot.open and (gate.free_at, overall.free_at) == taken:
                # Unused, and nothing was scheduled after it: the slot goes back to whoever waits.
                gate.free_at, overall.free_at = before
                self._moved.set()
                self._moved = asyncio.Event()
            slot.open = False

    def back_off(self, endpoint: str, seconds: float, *, account_wide: bool = False) -> None:
        """The vendor answered 429: hold back `endpoint` (or every request) for `seconds`."""
        self.stats.rate_limited[endpoint] += 1
        gate = self._overall if account_wide else self._gate(endpoint)
        gate.free_at = max(gate.free_at, self._clock() + seconds)
        self._moved.set()
        self._moved = asyncio.Event()

    # --- inside ------------------------------------------------------------------------------------
    def _gate(self, endpoint: str) -> _Gate:
        gate = self._endpoints.get(endpoint)
        if gate is None:
            gate = self._endpoints[endpoint] = _Gate(self.limit_of(endpoint))
        return gate

    def _take(self, gates: tuple[_Gate, ...], at: float) -> None:
        for gate in gates:
            gate.take(at)

    async def _wait_for(self, *gates: _Gate, since: float = -math.inf) -> float:
        """Sleep until every gate is free, re-planning when a 429 moves one; the moment we may leave.

        `since`: a moment already waited for (an injected sleep need not move the clock).
        """
        while True:
            due = max(gate.free_at for gate in gates)
            now = max(self._clock(), since)
            if due <= now:
                return now
            moved = self._moved
            sleeping = asyncio.ensure_future(self._sleep(due - now))
            woken = asyncio.ensure_future(moved.wait())
            try:
                await asyncio.wait((sleeping, woken), return_when=asyncio.FIRST_COMPLETED)
            finally:
                sleeping.cancel()
                woken.cancel()
            if sleeping.done() and not sleeping.cancelled():
                sleeping.result()
                if max(gate.free_at for gate in gates) <= due:
                    # The planned moment, not the clock: an injected sleep need not move the clock.
                    return max(due, self._clock())

    def _bind_loop(self) -> None:
        # asyncio primitives belong to one event loop; a second `asyncio.run` (a CLI command, a test)
        # gets fresh queues. Nobody can be waiting in the old ones: their loop is gone.
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._loop = loop
            self._moved = asyncio.Event()
            for gate in (self._overall, *self._endpoints.values()):
                gate.queue = asyncio.Lock()
