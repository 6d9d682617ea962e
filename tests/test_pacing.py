"""The pacer on virtual time: spacing, endpoint and account limits, FIFO, cancellation, reservation, 429s."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Awaitable
from typing import Any

import pytest

from entitle.pacing import PACING_MARGIN, Pacer


class VirtualTime:
    """A clock that moves only when every task is asleep, straight to the earliest wake-up."""

    def __init__(self) -> None:
        self.now = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + seconds, next(self._seq), future))
        await future

    async def settle(self) -> None:
        for _ in range(30):
            await asyncio.sleep(0)

    async def advance(self) -> bool:
        """Wake the earliest sleeper; False when nobody sleeps."""
        await self.settle()
        while self._sleepers:
            wake, _, future = heapq.heappop(self._sleepers)
            if future.done():
                continue
            self.now = max(self.now, wake)
            future.set_result(None)
            await self.settle()
            return True
        return False

    async def run(self, *calls: Awaitable[Any]) -> list[Any]:
        tasks = [asyncio.ensure_future(call) for call in calls]
        while not all(task.done() for task in tasks):
            if not await self.advance() and not all(task.done() for task in tasks):
                raise AssertionError("deadlock: tasks wait but nobody sleeps")
        return [task.result() for task in tasks]


def pacer(time: VirtualTime, **limits: Any) -> Pacer:
    limits.setdefault("per_second", None)
    limits.setdefault("per_endpoint", None)
    return Pacer(clock=time.clock, sleep=time.sleep, **limits)


async def leave(p: Pacer, time: VirtualTime, endpoint: str) -> float:
    await p.acquire(endpoint)
    return time.now


def interval(rate: float) -> float:
    return 1 / (rate * PACING_MARGIN)


async def test_requests_leave_evenly_spaced_slightly_under_the_limit() -> None:
    time = VirtualTime()
    p = pacer(time, per_second=25)
    left = await time.run(*(leave(p, time, "GET /v1/customers/{id}") for _ in range(100)))
    assert left[0] == 0 and all(b - a == pytest.approx(interval(25)) for a, b in itertools.pairwise(left))
    # However the vendor slides its one-second window, it never sees 25.
    assert max(sum(1 for t in left if start <= t < start + 1) for start in left) == 24
    assert p.stats.total_requests == 100 and p.stats.requests["GET /v1/customers/{id}"] == 100


async def test_an_endpoint_at_its_limit_does_not_hold_back_the_others() -> None:
    time = VirtualTime()
    p = pacer(time, per_second=100, endpoint_limits={"GET /v1/subscriptions/{id}": 5})
    reads = [leave(p, time, "GET /v1/subscriptions/{id}") for _ in range(4)]
    others = [leave(p, time, "POST /v1/customers") for _ in range(4)]
    times = await time.run(*reads, *others)
    read_times, customer_times = times[:4], times[4:]
    assert all(b - a == pytest.approx(interval(5)) for a, b in itertools.pairwise(read_times))
    # The customers went while the reads waited, only the account-wide spacing apart.
    assert max(customer_times) < read_times[1]
    assert all(b - a >= interval(100) - 1e-9 for a, b in itertools.pairwise(sorted(times)))
    assert p.stats.requests == {"GET /v1/subscriptions/{id}": 4, "POST /v1/customers": 4}


async def test_every_departure_respects_both_limits() -> None:
    time = VirtualTime()
    p = pacer(time, per_second=40, per_endpoint=25)
    endpoints = ["A", "B", "C"]
    order = [endpoints[i % 3] for i in range(60)]
    times = await time.run(*(leave(p, time, e) for e in order))
    overall = sorted(times)
    assert all(b - a >= interval(40) - 1e-9 for a, b in itertools.pairwise(overall))
    for endpoint in endpoints:
        mine = sorted(t for t, e in zip(times, order, strict=True) if e == endpoint)
        assert all(b - a >= interval(25) - 1e-9 for a, b in itertools.pairwise(mine))


async def test_waiters_are_served_first_come_first_served() -> None:
    time = VirtualTime()
    p = pacer(time, per_second=10)
    served: list[int] = []

    async def request(n: int) -> None:
        await p.acquire("A" if n % 2 else "B")
        served.append(n)

    await time.run(*(request(n) for n in range(12)))
    assert served == list(range(12))


async def test_a_cancelled_waiter_leaves_its_slot_to_the_next() -> None:
    time = VirtualTime()
    p = pacer(time, per_second=10)
    first = asyncio.ensure_future(leave(p, time, "A"))
    second = asyncio.ensure_future(leave(p, time, "A"))
    third = asyncio.ensure_future(leave(p, time, "A"))
    await time.settle()
    assert first.done() and not second.done()
    second.cancel()
    (left,) = await time.run(third)
    assert left == pytest.approx(interval(10))  # the second's slot, not the one after it
    assert p.stats.total_requests == 2


async def test_a_reserved_slot_is_kept_for_the_next_request_in_the_block() -> None:
    time = VirtualTime()
    p = pacer(time, per_second=10)
    await p.acquire("GET /v1/subscriptions/{id}")  # the endpoint is now busy for one interval
    events: list[tuple[str, float]] = []

    async def reserver() -> None:
        async with p.reserved("GET /v1/subscriptions/{id}"):
            events.append(("reserved", time.now))
            await time.sleep(0.01)  # selecting the rows this read will settle
            await p.acquire("GET /v1/subscriptions/{id}")
            events.append(("read", time.now))

    async def other() -> None:
        await time.settle()  # queues behind the reservation
        await p.acquire("GET /v1/subscriptions/{id}")
        events.append(("other", time.now))

    await time.run(reserver(), other())
    assert [name for name, _ in events] == ["reserved", "read", "other"]
    reserved_at, read_at, other_at = (at for _, at in events)
    assert reserved_at == pytest.approx(interval(10))
    assert read_at == pytest.approx(reserved_at + 0.01)  # no second wait
    # Spaced from the reserved slot: the queries before the read do not slow the pace for everyone.
    assert other_at == pytest.approx(reserved_at + interval(10))
    assert p.stats.total_requests == 3


async def test_an_unused_reservation_gives_its_slot_back() -> None:
    time = VirtualTime()
    p = pacer(time, per_second=10)

    async def reserver() -> None:
        async with p.reserved("A"):
            await time.sleep(0.01)

    async def other() -> float:
        await time.settle()
        return await leave(p, time, "A")

    _, other_at = await time.run(reserver(), other())
    assert other_at == pytest.approx(0.01) and p.stats.total_requests == 1


async def test_a_reservation_is_for_its_own_task_and_endpoint() -> None:
    time = VirtualTime()
    p = pacer(time, per_second=10)
    async with p.reserved("A"):
        with pytest.raises(RuntimeError):
            await p.acquire("B")
        with pytest.raises(RuntimeError):
            async with p.reserved("A"):
                pass
        await p.acquire("A")
    # A reservation cancelled while it waits releases its queues and takes no slot.
    waiting = asyncio.ensure_future(_reserve_and_hold(p))
    await time.settle()
    waiting.cancel()
    await time.settle()
    assert await time.run(leave(p, time, "A")) == [pytest.approx(interval(10))]
    assert p.stats.total_requests == 2


async def _reserve_and_hold(p: Pacer) -> None:
    async with p.reserved("A"):
        await asyncio.Event().wait()


async def test_a_429_holds_back_the_endpoint_and_wakes_its_waiters_to_re_plan() -> None:
    time = VirtualTime()
    p = pacer(time, per_second=100, per_endpoint=10)
    await p.acquire("A")
    waiting = asyncio.ensure_future(leave(p, time, "A"))  # asleep until one interval from now
    await time.settle()
    p.back_off("A", 2.0)
    held, other = await time.run(waiting, leave(p, time, "B"))
    assert held == pytest.approx(2.0) and other < 0.1
    assert p.stats.rate_limited == {"A": 1}


async def test_an_account_wide_429_holds_back_every_endpoint() -> None:
    time = VirtualTime()
    p = pacer(time, per_second=100, per_endpoint=25)
    p.back_off("A", 1.5, account_wide=True)
    times = await time.run(leave(p, time, "A"), leave(p, time, "B"))
    assert min(times) == pytest.approx(1.5)


async def test_no_limits_means_no_waiting_and_an_unknown_endpoint_gets_the_default() -> None:
    time = VirtualTime()
    p = pacer(time, per_endpoint=None, endpoint_limits={"slow": 1.0})
    assert await time.run(*(leave(p, time, "fast") for _ in range(5))) == [0.0] * 5
    assert p.limit_of("slow") == 1.0 and p.limit_of("fast") is None
