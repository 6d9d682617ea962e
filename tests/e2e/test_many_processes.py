"""Two API processes and two workers on one PostgreSQL database and Redis, `serve --workers N`, and a
kill -9 storm: nothing processed twice, nothing lost, nothing waiting for a particular process.

The processes are real `entitle serve` / `entitle worker` processes; the first API process also works on
events in-process (`serve`), the second only stores and acknowledges them (`serve --no-worker`), so
events are raced for by an API process and two workers.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from entitle.core.models.events import AccountEvent, InboxStatus, ProviderEvent
from entitle.db.engine import Database
from entitle.providers.stripe.handlers import HANDLERS
from tests.conftest import ADMIN_KEY
from tests.e2e.processes import REDIS_URL, EntitleProcess, next_stream_event, process_env
from tests.factories import bearer, eventually, register
from tests.standins.stripe import StripeStandin

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
# The storm's scenario (which subscriptions change how, the delivery order and copies, which process
# dies when) follows from this seed; the interleaving of processes does not, and need not.
STORM_SEED = int(os.environ.get("ENTITLE_STORM_SEED", "1729"))
STORM_ACCOUNTS = 16
STORM_ROUNDS = 6
# The storm's deliveries and kills stop after this; then everything is restarted and drained.
STORM_SECONDS = 30.0
DRAIN_SECONDS = 90.0


@pytest.fixture
async def standin(database_url: str) -> AsyncIterator[StripeStandin]:
    """A Stripe stand-in with the catalog pushed (PostgreSQL only: SQLite is served by one process)."""
    if not database_url.startswith("postgresql"):
        pytest.skip("several processes share PostgreSQL; SQLite is served by one process")
    from entitle.core.catalog import load_catalog
    from entitle.providers.stripe.catalog_push import push_catalog
    from entitle.providers.stripe.client import StripeGateway

    with StripeStandin() as standin:
        gateway = StripeGateway(standin.secret_key, api_base=standin.base_url)
        await push_catalog(gateway, load_catalog())
        await gateway.aclose()
        yield standin


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    """The test database, read directly to see the inbox rows and the account event log."""
    database = Database(database_url)
    try:
        yield database
    finally:
        await database.dispose()


def stripe_process_env(
    database_url: str, tmp_path: Path, standin: StripeStandin, **extra: str
) -> dict[str, str]:
    return process_env(
        database_url,
        tmp_path,
        ENTITLE_STRIPE_SECRET_KEY=standin.secret_key,
        ENTITLE_STRIPE_API_BASE=standin.base_url,
        ENTITLE_STRIPE_WEBHOOK_SECRET=standin.webhook_secret,
        ENTITLE_REDIS_URL=REDIS_URL,
        **extra,
    )


@dataclass
class Deployment:
    """Two API processes (the first also processes in-process) and two workers."""

    apis: list[EntitleProcess]
    workers: list[EntitleProcess]

    @classmethod
    def of(cls, env: dict[str, str], workdir: Path) -> Deployment:
        return cls(
            apis=[EntitleProcess.server(env, workdir), EntitleProcess.server(env, workdir, "--no-worker")],
            workers=[EntitleProcess.worker(env, workdir, "--concurrency", "4") for _ in range(2)],
        )

    @property
    def processes(self) -> list[EntitleProcess]:
        return [*self.apis, *self.workers]

    async def start(self) -> None:
        """Start (or restart) every process that is not running, at once."""
        await asyncio.gather(*(asyncio.to_thread(p.start) for p in self.processes if not p.running))

    def stop(self) -> None:
        for process in self.processes:
            process.stop()


@dataclass
class Customer:
    account_id: str
    email: str
    subscription_id: str


async def subscribe(
    http: httpx.AsyncClient, api: EntitleProcess, standin: StripeStandin, email: str
) -> Customer:
    """Sign up through `api`, open Checkout there and pay at the stand-in (no event is delivered yet)."""
    async with httpx.AsyncClient(base_url=api.url, timeout=15) as scoped:
        session = await register(scoped, email)
    checkout = await http.post(
        api.url + "/v1/billing/stripe/checkout", json={"product": "pro_monthly"}, headers=bearer(session)
    )
    assert checkout.status_code == 200, checkout.text
    paid = standin.complete_checkout(checkout.json()["id"])
    subscription = paid["subscription"]
    subscription_id = subscription if isinstance(subscription, str) else subscription["id"]
    return Customer(session["account"]["id"], email, subscription_id)


def handled(events: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events a Stripe endpoint registered by `entitle doctor` would be sent."""
    return [event for event in events if event["type"] in HANDLERS]


class Deliveries:
    """Stripe's side of webhooks: POST an event to some API process until one answers 2xx."""

    def __init__(self, standin: StripeStandin, apis: Sequence[EntitleProcess], rng: random.Random) -> None:
        self.standin = standin
        self.apis = apis
        self.rng = rng
        self.acknowledged: set[str] = set()
        self.sent = 0
        self.unanswered = 0

    async def deliver(
        self, http: httpx.AsyncClient, event: dict[str, Any], api: EntitleProcess | None = None
    ) -> None:
        while True:
            target = api or self.rng.choice(self.apis)
            body, headers = self.standin.signed(event)  # signed at sending time, as Stripe does
            self.sent += 1
            try:
                response = await http.post(target.url + "/webhooks/stripe", content=body, headers=headers)
                if response.is_success:
                    self.acknowledged.add(event["id"])
                    return
            except httpx.TransportError:  # the process died, or is not back yet
                pass
            self.unanswered += 1
            api = None  # Stripe retries; here sooner than Stripe would
            await asyncio.sleep(0.1)


async def inbox_rows(database: Database, event_ids: Iterable[str]) -> list[ProviderEvent]:
    async with database.read_sessionmaker() as db:
        rows = await db.scalars(
            select(ProviderEvent).where(
                ProviderEvent.provider == "stripe", ProviderEvent.event_id.in_(list(event_ids))
            )
        )
        return list(rows.all())


async def wait_drained(database: Database, event_ids: set[str], *, timeout: float) -> list[ProviderEvent]:
    """Until every one of `event_ids` is stored and none is still to be processed; returns the rows."""

    async def drained() -> list[ProviderEvent] | None:
        rows = await inbox_rows(database, event_ids)
        done = len(rows) == len(event_ids) and all(row.status != InboxStatus.PENDING for row in rows)
        return rows if done and all(row.status != InboxStatus.FAILED for row in rows) else None

    try:
        rows: list[ProviderEvent] = await eventually(drained, timeout=timeout, interval=0.25)
    except AssertionError:
        left = [
            (r.event_id, r.type, r.status, r.attempts, r.last_error)
            for r in await inbox_rows(database, event_ids)
        ]
        raise AssertionError(
            f"the inbox did not drain: {[row for row in left if row[2] != 'processed']}"
        ) from None
    return rows


def assert_processed_once(rows: Sequence[ProviderEvent], acknowledged: set[str]) -> None:
    """Every acknowledged event has one row, processed, on its first attempt: processing it again after
    it was marked would have counted another attempt, and one cut short by a kill rolled back and counted
    nothing. (Two processes at once cannot both take a row: the key's advisory lock and the row locks; the
    account event checks see to their effects.)"""
    assert {row.event_id for row in rows} == acknowledged
    wrong = [
        (row.event_id, row.type, row.status, row.attempts, row.last_error)
        for row in rows
        if row.attempts != 1
    ]
    assert not wrong, f"events not processed exactly once: {wrong}"
    assert all(row.status == InboxStatus.PROCESSED for row in rows)


async def account_events(database: Database, account_ids: Iterable[str]) -> dict[str, list[AccountEvent]]:
    async with database.read_sessionmaker() as db:
        rows = await db.scalars(
            select(AccountEvent)
            .where(AccountEvent.account_id.in_([uuid.UUID(a) for a in account_ids]))
            .order_by(AccountEvent.created_at, AccountEvent.id)
        )
        found: dict[str, list[AccountEvent]] = defaultdict(list)
        for event in rows.all():
            found[str(event.account_id)].append(event)
        return found


def expected_answer(truth: dict[str, Any]) -> dict[str, Any]:
    """What entitle must say about a Stripe subscription, from the stand-in's truth (active, set to
    cancel at period end, or canceled: the states the storm drives subscriptions through)."""
    if truth["status"] == "canceled":
        status = "expired"
    else:
        assert truth["status"] == "active", truth["status"]
        status = "canceled_at_period_end" if truth["cancel_at_period_end"] else "active"
    return {
        "id": truth["id"],
        "product": "pro_monthly",
        "status": status,
        "current_period_end": truth["items"]["data"][0]["current_period_end"],
        "will_renew": status == "active",
        "entitled": status != "expired",
    }


async def assert_answers_are_the_truth(
    http: httpx.AsyncClient, api: EntitleProcess, standin: StripeStandin, customers: Sequence[Customer]
) -> None:
    for customer in customers:
        want = expected_answer(standin.subscription(customer.subscription_id))
        answer = await http.get(f"{api.url}/v1/accounts/{customer.account_id}/entitlements", headers=ADMIN)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        [subscription] = [s for s in body["subscriptions"] if s["id"] == customer.subscription_id]
        got = {
            "id": subscription["id"],
            "product": subscription["product"],
            "status": subscription["status"],
            "current_period_end": int(datetime.fromisoformat(subscription["current_period_end"]).timestamp()),
            "will_renew": subscription["will_renew"],
            "entitled": body["entitlements"]["pro"]["active"],
        }
        assert got == want, customer.email


def assert_each_transition_once(events: Sequence[AccountEvent], truth: dict[str, Any]) -> None:
    """One account's log, with one subscription: every transition announced once, none twice."""
    types = [event.type for event in events]
    assert types.count("subscription.started") == 1, types
    renewed = [event.data["expires_at"] for event in events if event.type == "subscription.renewed"]
    assert len(renewed) == len(set(renewed)), f"a renewal announced twice: {renewed}"
    assert renewed == sorted(renewed), renewed
    assert types.count("subscription.expired") == int(truth["status"] == "canceled"), types
    for pair in (
        ("entitlement.granted", "entitlement.revoked"),
        ("subscription.will_not_renew", "subscription.will_renew"),
    ):
        # Each of a pair undoes the other: they must alternate, starting with the first.
        sequence = [t for t in types if t in pair]
        assert sequence == [pair[i % 2] for i in range(len(sequence))], sequence
    granted = [t for t in types if t.startswith("entitlement.")]
    assert granted[-1] == ("entitlement.revoked" if truth["status"] == "canceled" else "entitlement.granted")


async def test_serve_with_workers_runs_processes_on_one_port_and_replaces_one_killed(
    standin: StripeStandin, database_url: str, tmp_path: Path, database: Database
) -> None:
    env = stripe_process_env(database_url, tmp_path, standin)
    with EntitleProcess.server(env, tmp_path, "--workers", "2") as server:
        # Each process paces itself at its share of the test key's 25 requests/s.
        assert "2 processes, each pacing Stripe requests at 12.5/s" in server.output()
        await eventually(lambda: _async(len(server.children()) == 2), timeout=30, message="two processes")
        victim = server.children()[0]
        os.kill(victim, signal.SIGKILL)
        await eventually(
            lambda: _async(len(server.children()) == 2 and victim not in server.children()),
            timeout=60,
            message="uvicorn did not replace the killed process",
        )
        async with httpx.AsyncClient(timeout=15) as http:
            customer = await subscribe(http, server, standin, f"several-{uuid.uuid4().hex[:8]}@example.com")
            deliveries = Deliveries(standin, [server], random.Random(0))
            for event in handled(standin.events.log) * 2:  # every event twice
                await deliveries.deliver(http, event)
            rows = await wait_drained(database, deliveries.acknowledged, timeout=60)
            assert_processed_once(rows, deliveries.acknowledged)
            await assert_answers_are_the_truth(http, server, standin, [customer])
            log = (await account_events(database, [customer.account_id]))[customer.account_id]
            assert_each_transition_once(log, standin.subscription(customer.subscription_id))


async def _async(value: bool) -> bool:
    return value


async def test_two_api_processes_and_two_workers_share_events_streams_and_limits(
    standin: StripeStandin, database_url: str, tmp_path: Path, database: Database
) -> None:
    env = stripe_process_env(database_url, tmp_path, standin, ENTITLE_RATE_LIMIT_PER_ADDRESS="4/minute")
    deployment = Deployment.of(env, tmp_path)
    one, two = deployment.apis
    try:
        await deployment.start()
        async with httpx.AsyncClient(timeout=15) as http:
            # Sign-in limits are one budget across processes (Redis): 4 guesses in all, not 4 each.
            guessed = f"guess-{uuid.uuid4().hex[:12]}@example.com"
            statuses = [
                (
                    await http.post(
                        api.url + "/v1/auth/login", json={"email": guessed, "password": "not the password 1"}
                    )
                ).status_code
                for api in (one, two) * 3
            ]
            assert 429 not in statuses[:4] and statuses[4:] == [429, 429], statuses

            # A stream held by API process 1 hears a purchase whose events only API process 2 received
            # (which leaves processing to the workers and process 1's consumer).
            deliveries = Deliveries(standin, deployment.apis, random.Random(1))
            watcher = await subscribe(http, two, standin, f"watch-{uuid.uuid4().hex[:8]}@example.com")
            login = await http.post(
                one.url + "/v1/auth/login",
                json={"email": watcher.email, "password": "correct horse battery staple"},
            )
            async with http.stream(
                "GET", one.url + "/v1/me/entitlements/stream", headers=bearer(login.json()), timeout=30
            ) as stream:
                lines = stream.aiter_lines()
                assert (await asyncio.wait_for(next_stream_event(lines), 15))["entitlements"]["pro"][
                    "active"
                ] is False
                for event in handled(standin.events.log):
                    await deliveries.deliver(http, event, two)
                pushed = await asyncio.wait_for(next_stream_event(lines), 30)
                assert pushed["entitlements"]["pro"]["active"] is True

            # Events delivered alternately to both API processes, each twice, in shuffled order: each is
            # processed once, whichever of the four processes got to it.
            seen = len(standin.events.log)
            customers = [
                await subscribe(
                    http, (one, two)[i % 2], standin, f"both-{i}-{uuid.uuid4().hex[:8]}@example.com"
                )
                for i in range(6)
            ]
            for customer in customers[:3]:
                standin.renew(customer.subscription_id)
            standin.cancel_at_period_end(customers[3].subscription_id)
            batch = handled(standin.events.log[seen:]) * 2
            random.Random(2).shuffle(batch)
            await asyncio.gather(
                *(deliveries.deliver(http, event, deployment.apis[i % 2]) for i, event in enumerate(batch))
            )
            rows = await wait_drained(database, deliveries.acknowledged, timeout=60)
            assert_processed_once(rows, deliveries.acknowledged)
            customers.append(watcher)
            await assert_answers_are_the_truth(http, two, standin, customers)
            logs = await account_events(database, [c.account_id for c in customers])
            for customer in customers:
                assert_each_transition_once(
                    logs[customer.account_id], standin.subscription(customer.subscription_id)
                )
    finally:
        deployment.stop()


@dataclass
class Chaos:
    """kill -9 a random process at random moments and start it again; one process down at a time, and
    never both API processes (Stripe would get no answer at all, and retry later: the same, only slower)."""

    deployment: Deployment
    rng: random.Random
    kills: list[str] = field(default_factory=list)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await asyncio.sleep(self.rng.uniform(0.2, 1.5))
            victim = self.rng.choice(self.deployment.processes)
            victim.kill()
            self.kills.append(" ".join(victim.command[:2]))
            await asyncio.sleep(self.rng.uniform(0.0, 1.0))
            await asyncio.to_thread(victim.start)


def step(standin: StripeStandin, rng: random.Random, customer: Customer) -> None:
    """One thing that happens at Stripe to a live subscription: a renewal (which ends it when it was set
    to cancel), cancel at period end or undo it, or cancel now."""
    truth = standin.subscription(customer.subscription_id)
    if truth["status"] == "canceled":
        return
    roll = rng.random()
    if roll < 0.5:
        standin.renew(customer.subscription_id)
    elif roll < 0.9:
        standin.cancel_at_period_end(customer.subscription_id, not truth["cancel_at_period_end"])
    else:
        standin.cancel_now(customer.subscription_id)


async def test_kill_9_storm_applies_every_acknowledged_event_once_and_ends_at_the_truth(
    standin: StripeStandin, database_url: str, tmp_path: Path, database: Database
) -> None:
    print(f"kill -9 storm: seed {STORM_SEED} (ENTITLE_STORM_SEED)")
    rng = random.Random(STORM_SEED)
    env = stripe_process_env(database_url, tmp_path, standin)
    deployment = Deployment.of(env, tmp_path)
    try:
        await deployment.start()
        async with httpx.AsyncClient(timeout=10) as http:
            customers = [
                await subscribe(
                    http, deployment.apis[i % 2], standin, f"storm-{i}-{uuid.uuid4().hex[:8]}@example.com"
                )
                for i in range(STORM_ACCOUNTS)
            ]
            deliveries = Deliveries(standin, deployment.apis, rng)
            queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
            stop = asyncio.Event()
            chaos = Chaos(deployment, random.Random(rng.random()))
            chaos_task = asyncio.create_task(chaos.run(stop))

            async def send() -> None:
                while True:
                    event = await queue.get()
                    try:
                        await deliveries.deliver(http, event)
                    finally:
                        queue.task_done()

            senders = [asyncio.create_task(send()) for _ in range(6)]
            started = time.monotonic()
            seen, held_back = 0, []
            for round_ in range(STORM_ROUNDS + 1):
                if round_:
                    for customer in customers:
                        if rng.random() < 0.6:
                            step(standin, rng, customer)
                fresh = handled(standin.events.log[seen:])
                seen = len(standin.events.log)
                batch, held_back = [*held_back, *fresh], []
                outgoing = []
                for event in batch:
                    if round_ < STORM_ROUNDS and rng.random() < 0.2:
                        held_back.append(event)  # arrives a round late, after newer events
                        continue
                    outgoing += [event] * rng.choice((1, 1, 2, 3))
                rng.shuffle(outgoing)
                for event in outgoing:
                    queue.put_nowait(event)
                await asyncio.sleep(STORM_SECONDS / (STORM_ROUNDS + 2))
            await asyncio.wait_for(queue.join(), max(5.0, STORM_SECONDS - (time.monotonic() - started)) + 30)
            stop.set()
            await chaos_task
            for sender in senders:
                sender.cancel()
            await deployment.start()  # anything chaos left down
            print(
                f"storm: {len(deliveries.acknowledged)} events, {deliveries.sent} deliveries "
                f"({deliveries.unanswered} unanswered), {len(chaos.kills)} kills: {chaos.kills}"
            )
            assert chaos.kills

            rows = await wait_drained(database, deliveries.acknowledged, timeout=DRAIN_SECONDS)
            assert_processed_once(rows, deliveries.acknowledged)
            assert deliveries.acknowledged == {event["id"] for event in handled(standin.events.log)}
            await assert_answers_are_the_truth(http, deployment.apis[0], standin, customers)
            logs = await account_events(database, [c.account_id for c in customers])
            for customer in customers:
                assert_each_transition_once(
                    logs[customer.account_id], standin.subscription(customer.subscription_id)
                )
    finally:
        deployment.stop()
