"""The event pipeline against "every change reaches both clients within 100 ms, at the vendors' real pace".

    .venv/bin/python bench/bench_pipeline.py [--sections latency,storm,ack,worker,read] [--quick]
                                             [--database sqlite|postgresql|both]

Each section measures one joint against its own yardstick, taken in the same run:

- latency: a webhook's 2xx to the changed answer on a connected `GET /v1/me/entitlements/stream`, p50 and
  p99, with the Stripe stand-in answering at once and in 80 ms; against 100 ms plus one vendor read.
- storm: N paid renewals (about seven events each, shuffled, 16 connections) with the stand-in at 80 ms
  and Stripe's sandbox limits (25/s for the account and per endpoint); subscription reads per
  subscription against one, 429s against none, and time to convergence against N / 25 s, the least
  that one read per subscription at 25 reads/s allows.
- ack: `POST /webhooks/stripe` on a server that only acknowledges (`serve --no-worker`) as a ratio to a
  bare Starlette endpoint that verifies and inserts the same row (`bare_stripe_webhook_app.py`).
- worker (PostgreSQL): one `entitle worker` process draining a stored backlog of renewals, events/s
  against 1,000, with the stand-in answering at once and no limit at the stand-in.
- read: `bench_entitlements.py` (signed-in read against `GET /v1/catalog` and bare Starlette).

Servers run under uvicorn in subprocesses (one worker); the Stripe stand-in, the load generator and the
stream clients share this process. Accounts for the storm, ack and worker sections are made through
entitle's services in this process (no password, they never sign in) and their checkouts settled here
before the server starts, so seeding costs neither argon2 nor the measured server's time.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.standins.stripe import StripeStandin, sign  # noqa: E402

from bench.harness import (  # noqa: E402
    ROOT,
    LoadResult,
    admin_sql,
    entitle_env,
    http_request,
    prepare_database,
    print_table,
    run_load,
    send_all,
    uvicorn_server,
)

PASSWORD = "correct horse battery staple"
ADMIN_KEY = "bench-admin-key-" + "x" * 24
BENCH_DATABASE = "entitle_bench_pipeline"
RETRIEVE = "GET /v1/subscriptions/{id}"
PROCESSING_APP = "bench.pipeline_apps:processing_app"
ACKNOWLEDGING_APP = "bench.pipeline_apps:acknowledging_app"
BARE_APP = "bench.bare_stripe_webhook_app:create_app"


# --- setup -------------------------------------------------------------------------------------------
def stripe_env(database: str, workdir: Path, standin: StripeStandin, **extra: str) -> dict[str, str]:
    return entitle_env(
        database,
        workdir,
        name=BENCH_DATABASE,
        ENTITLE_ADMIN_API_KEY=ADMIN_KEY,
        ENTITLE_STRIPE_SECRET_KEY=standin.secret_key,
        ENTITLE_STRIPE_API_BASE=standin.base_url,
        ENTITLE_STRIPE_WEBHOOK_SECRET=standin.webhook_secret,
        **extra,
    )


def settings_for(env: dict[str, str]) -> Any:
    from entitle.settings import Settings

    return Settings(**{k.removeprefix("ENTITLE_").lower(): v for k, v in env.items()})


async def drop_database(database: str) -> None:
    if database == "postgresql":
        await admin_sql(f'DROP DATABASE IF EXISTS "{BENCH_DATABASE}" WITH (FORCE)')


@dataclass(frozen=True)
class Payer:
    account_id: str
    subscription_id: str
    token: str = ""


async def seed_in_process(
    env: dict[str, str], standin: StripeStandin, count: int, *, paced: bool = True, concurrency: int = 8
) -> list[Payer]:
    """`count` accounts paying for pro_monthly, their checkout events processed in this process.

    `paced=False` lifts this process's pacer (only for a stand-in that enforces no limit), so seeding
    hundreds of subscriptions does not take 25 requests/s."""
    from entitle.context import build_context
    from entitle.pacing import Pacer
    from entitle.providers.stripe.catalog_push import push_catalog
    from entitle.services.billing import billing_stripe
    from entitle.services.identity import accounts
    context = build_context(settings_for(env))
    provider: Any = context.providers["stripe"]
    if not paced:
        provider.gateway.pacer = Pacer(per_second=None, per_endpoint=None)
    first_event = len(standin.events.log)
    slots = asyncio.Semaphore(concurrency)

    async def one(index: int) -> Payer:
        async with slots:
            async with context.database.transaction() as db:
                account = await accounts.create_account(db, email=f"payer{index}@example.com", via="email")
                session = await billing_stripe.start_checkout(
                    db, provider, account, "pro_monthly", success_url=None, cancel_url=None
                )
                account_id = str(account.id)
            standin.complete_checkout(session["id"])
            return Payer(account_id, standin.state.get(session["id"], "checkout.session")["subscription"])

    try:
        await push_catalog(provider.gateway, context.catalog)
        payers = list(await asyncio.gather(*(one(i) for i in range(count))))
        for event in standin.events.log[first_event:]:
            body, headers = standin.signed(event)
            await context.pipeline.ingest(provider, body, {k.lower(): v for k, v in headers.items()})
        await context.pipeline.wait_idle()
        stored = await stored_period_ends(context.database)
    finally:
        await context.aclose()
    missing = [p.subscription_id for p in payers if p.subscription_id not in stored]
    if missing:
        raise RuntimeError(f"seeding left {len(missing)} subscriptions unstored, e.g. {missing[0]}")
    return payers


async def stored_period_ends(database: Any) -> dict[str, int]:
    """Every stored Stripe subscription's period end (Unix seconds), by Stripe id."""
    from sqlalchemy import select

    from entitle.core.models.entitlements import Subscription

    async with database.read_sessionmaker() as db:
        rows = (
            await db.execute(
                select(Subscription.store_subscription_id, Subscription.current_period_end).where(
                    Subscription.store == "stripe"
                )
            )
        ).all()
    return {sid: _unix(end) for sid, end in rows if end is not None}


def _unix(moment: datetime) -> int:
    return int((moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp())


def period_end(standin: StripeStandin, subscription_id: str) -> int:
    return int(standin.subscription(subscription_id)["items"]["data"][0]["current_period_end"])


def renew_all(standin: StripeStandin, payers: list[Payer]) -> list[dict[str, Any]]:
    """Every subscription renews (paid); the events Stripe sends for that, shuffled together."""
    first = len(standin.events.log)
    for payer in payers:
        standin.renew(payer.subscription_id)
    events = list(standin.events.log[first:])
    random.shuffle(events)
    return events


def webhook_request(host: str, standin: StripeStandin, event: dict[str, Any]) -> bytes:
    body, headers = standin.signed(event)
    return http_request("POST", "/webhooks/stripe", host, body=body, headers=headers)


def fmt_ms(value: float) -> str:
    return f"{value:.1f}"


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] if ordered else float("nan")


def verdict(ok: bool) -> str:
    return "meets" if ok else "MISSES"


# --- 1. event to client ------------------------------------------------------------------------------
class AnswerStream:
    """One client on `GET /v1/me/entitlements/stream`: when each `event: entitlements` frame arrived."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.token = token
        self.first = asyncio.Event()
        self._waiters: list[tuple[Callable[[dict[str, Any]], bool], asyncio.Future[float]]] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._read())

    def expect(self, wanted: Callable[[dict[str, Any]], bool]) -> asyncio.Future[float]:
        """A future set to the arrival time (perf_counter) of the next frame whose answer is `wanted`."""
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._waiters.append((wanted, future))
        return future

    async def _read(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        async with (
            httpx.AsyncClient(base_url=self.url, timeout=httpx.Timeout(60, read=None)) as http,
            http.stream("GET", "/v1/me/entitlements/stream", headers=headers) as response,
        ):
            response.raise_for_status()
            event = None
            async for line in response.aiter_lines():
                if line.startswith("event: "):
                    event = line.removeprefix("event: ")
                elif line.startswith("data: ") and event == "entitlements":
                    arrived = time.perf_counter()
                    self._deliver(json.loads(line.removeprefix("data: ")), arrived)
                elif not line:
                    event = None

    def _deliver(self, answer: dict[str, Any], arrived: float) -> None:
        self.first.set()
        for waiter in list(self._waiters):
            wanted, future = waiter
            if not future.done() and wanted(answer):
                future.set_result(arrived)
                self._waiters.remove(waiter)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


async def sign_up_and_pay(http: httpx.AsyncClient, standin: StripeStandin, index: int) -> Payer:
    """Sign up over HTTP, pay through hosted Checkout, deliver the checkout's events, wait until active."""
    body = {"email": f"streamer{index}@example.com", "password": PASSWORD}
    session = (await http.post("/v1/auth/register", json=body)).json()
    auth = {"Authorization": f"Bearer {session['access_token']}"}
    response = await http.post("/v1/billing/stripe/checkout", json={"product": "pro_monthly"}, headers=auth)
    response.raise_for_status()
    checkout = response.json()
    first = len(standin.events.log)
    standin.complete_checkout(checkout["id"])
    for event in standin.events.log[first:]:
        content, headers = standin.signed(event)
        (await http.post("/webhooks/stripe", content=content, headers=headers)).raise_for_status()
    deadline = time.monotonic() + 30
    while not (await http.get("/v1/me/entitlements", headers=auth)).json()["entitlements"].get("pro"):
        if time.monotonic() > deadline:
            raise RuntimeError("a bench subscription never became active")
        await asyncio.sleep(0.05)
    sub_id = standin.state.get(checkout["id"], "checkout.session")["subscription"]
    return Payer(session["account"]["id"], sub_id, session["access_token"])


async def event_to_client(database: str, samples: int, accounts: int) -> list[tuple[str, ...]]:
    from entitle.core.catalog import load_catalog
    from entitle.providers.stripe.catalog_push import push_catalog
    from entitle.providers.stripe.client import StripeGateway

    rows: list[tuple[str, ...]] = []
    with tempfile.TemporaryDirectory() as tmp, StripeStandin() as standin:
        env = stripe_env(database, Path(tmp), standin)
        await prepare_database(database, env)
        gateway = StripeGateway(standin.secret_key, api_base=standin.base_url)
        await push_catalog(gateway, load_catalog())
        await gateway.aclose()
        try:
            with uvicorn_server(PROCESSING_APP, env=env, factory=True) as url:
                async with httpx.AsyncClient(base_url=url, timeout=30) as http:
                    payers = [await sign_up_and_pay(http, standin, i) for i in range(accounts)]
                    streams = [AnswerStream(url, p.token) for p in payers]
                    for stream in streams:
                        stream.start()
                    await asyncio.wait_for(asyncio.gather(*(s.first.wait() for s in streams)), 30)
                    cancelled = dict.fromkeys(range(accounts), False)
                    try:
                        for latency in (0, 80):
                            # The same server and streams; only the vendor's answer time changes.
                            standin.limits.latency_ms = latency
                            delays = []
                            reads_before = standin.stats.requests[RETRIEVE]
                            for n in range(samples):
                                i = n % accounts
                                cancelled[i] = not cancelled[i]
                                delays.append(
                                    await one_change(http, standin, payers[i], streams[i], cancelled[i])
                                )
                                # Spaced, so a sample never queues behind the previous one's work.
                                await asyncio.sleep(0.05)
                            bound = 100 + latency
                            p99 = percentile(delays, 99)
                            # Above one read per change, some change was read twice (an SDK retry after
                            # a dropped connection, or a second batch): a suspect for a lone slow sample.
                            reads = standin.stats.requests[RETRIEVE] - reads_before
                            rows.append(
                                (
                                    database,
                                    f"{latency} ms",
                                    str(len(delays)),
                                    fmt_ms(percentile(delays, 50)),
                                    fmt_ms(p99),
                                    fmt_ms(max(delays)),
                                    f"< {bound}",
                                    verdict(p99 < bound),
                                    f"{reads / len(delays):.2f}",
                                )
                            )
                    finally:
                        for stream in streams:
                            await stream.aclose()
        finally:
            await drop_database(database)
    return rows


async def one_change(
    http: httpx.AsyncClient, standin: StripeStandin, payer: Payer, stream: AnswerStream, cancel: bool
) -> float:
    """Cancel (or resume) at period end at Stripe, deliver the update; ms from the 2xx to the stream."""
    standin.cancel_at_period_end(payer.subscription_id, cancel)
    event = standin.events.of_type("customer.subscription.updated")[-1]
    arrived = stream.expect(lambda answer: answer["entitlements"]["pro"]["will_renew"] is (not cancel))
    body, headers = standin.signed(event)
    response = await http.post("/webhooks/stripe", content=body, headers=headers)
    acknowledged = time.perf_counter()
    response.raise_for_status()
    return (await asyncio.wait_for(arrived, 30) - acknowledged) * 1000


# --- 2. renewal storm --------------------------------------------------------------------------------
async def renewal_storm(database: str, count: int, concurrency: int) -> tuple[str, ...]:
    from entitle.db.engine import Database

    # Stripe's pace in a sandbox: 25 requests/s for the account and for each endpoint, answers in 80 ms.
    standin = StripeStandin(latency_ms=80, rate_limit_per_second=25, endpoint_rate_limit_per_second=25)
    with tempfile.TemporaryDirectory() as tmp, standin:
        env = stripe_env(database, Path(tmp), standin)
        await prepare_database(database, env)
        reader = None
        try:
            payers = await seed_in_process(env, standin, count)
            with uvicorn_server(PROCESSING_APP, env=env, factory=True) as url:
                host = url.removeprefix("http://")
                events = renew_all(standin, payers)
                truth = {p.subscription_id: period_end(standin, p.subscription_id) for p in payers}
                requests = [webhook_request(host, standin, e) for e in events]
                reader = Database(settings_for(env).database_url)
                # Seeding's requests fall out of Stripe's (the stand-in's) one-second windows first.
                await asyncio.sleep(2.0)
                requests_before = Counter(standin.stats.requests)
                limited_before = Counter(standin.stats.rate_limited)
                started = time.perf_counter()
                delivery = asyncio.create_task(send_all(url, requests, concurrency=concurrency))
                deadline = started + max(60.0, 10 * count / 25)
                # When the subscription reads went out, seen from here: (seconds since start, reads so far).
                timeline: list[tuple[float, int]] = []
                while True:
                    done = standin.stats.requests[RETRIEVE] - requests_before[RETRIEVE]
                    if not timeline or timeline[-1][1] != done:
                        timeline.append((time.perf_counter() - started, done))
                    stored = await stored_period_ends(reader)
                    behind = sum(1 for sid, end in truth.items() if stored.get(sid) != end)
                    if not behind:
                        converged = time.perf_counter() - started
                        break
                    if time.perf_counter() > deadline:
                        raise RuntimeError(f"storm: {behind} subscriptions never converged")
                    await asyncio.sleep(0.02)
                delivered: LoadResult = await delivery
                reads = standin.stats.requests[RETRIEVE] - requests_before[RETRIEVE]
                others = sum((Counter(standin.stats.requests) - requests_before).values()) - reads
                limited = sum((Counter(standin.stats.rate_limited) - limited_before).values())
        finally:
            if reader is not None:
                await reader.dispose()
            await drop_database(database)
    bound = count / 25
    per_sub = reads / count
    # The pace the reads actually kept between the first and the last (the pacer aims at 25 x 0.95).
    reading = [(t, n) for t, n in timeline if n]
    pace = (reading[-1][1] - reading[0][1]) / (reading[-1][0] - reading[0][0]) if len(reading) > 1 else 0.0
    return (
        database,
        str(count),
        f"{len(events)} ({delivered.errors} non-2xx)",
        f"{delivered.seconds:.2f}",
        f"{per_sub:.2f} (+{others} other)",
        verdict(per_sub <= 1.1),
        str(limited),
        f"{pace:.1f}",
        f"{reading[0][0] if reading else 0:.2f}",
        f"{converged:.2f}",
        f"{bound:.2f}",
        f"{converged / bound:.2f}x",
        verdict(converged / bound <= 1.2),
    )


# --- 3. acknowledgement ------------------------------------------------------------------------------
def fresh_events(
    host: str, secret: str, templates: list[dict[str, Any]], prefix: str
) -> Callable[[int], bytes]:
    """Each request a template with a new event id, signed now: every delivery is a new row."""
    counter = itertools.count()

    def make(_: int) -> bytes:
        n = next(counter)
        body = json.dumps({**templates[n % len(templates)], "id": f"evt_{prefix}_{n}"}).encode()
        headers = {"Content-Type": "application/json", "Stripe-Signature": sign(body, secret)}
        return http_request("POST", "/webhooks/stripe", host, body=body, headers=headers)

    return make


async def acknowledgement(database: str, seconds: float, concurrency: int) -> list[tuple[str, ...]]:
    with tempfile.TemporaryDirectory() as tmp, StripeStandin() as standin:
        env = stripe_env(database, Path(tmp), standin)
        await prepare_database(database, env)
        try:
            payers = await seed_in_process(env, standin, 8)
            templates = renew_all(standin, payers)
            results: dict[str, list[LoadResult]] = {"bare": [], "real": []}
            with (
                uvicorn_server(BARE_APP, env=env, factory=True) as bare_url,
                uvicorn_server(ACKNOWLEDGING_APP, env=env, factory=True) as real_url,
            ):
                urls = {"bare": bare_url, "real": real_url}
                makers = {
                    name: fresh_events(url.removeprefix("http://"), standin.webhook_secret, templates, name)
                    for name, url in urls.items()
                }
                for name, url in urls.items():  # warm-up
                    await run_load(url, makers[name], concurrency=concurrency, seconds=1.0)
                # Interleaved slices, so a neighbour's burst on this shared machine hits both alike.
                rounds = 3
                for _ in range(rounds):
                    for name, url in urls.items():
                        results[name].append(
                            await run_load(
                                url,
                                makers[name],
                                concurrency=concurrency,
                                seconds=seconds / rounds,
                                ok=lambda s: s == 200,
                            )
                        )
        finally:
            await drop_database(database)
    merged = {name: merge(parts) for name, parts in results.items()}
    bare = merged["bare"].throughput
    rows = []
    for name, label in (("bare", "bare: verify and insert"), ("real", "POST /webhooks/stripe (--no-worker)")):
        r = merged[name]
        ratio = r.throughput / bare
        rows.append(
            (
                database,
                label,
                f"{r.throughput:,.0f}",
                f"{ratio:.0%}",
                ">= 80%" if name == "real" else "-",
                verdict(ratio >= 0.8) if name == "real" else "-",
                fmt_ms(r.median_ms),
                fmt_ms(r.percentile(99)),
                str(r.errors),
            )
        )
    return rows


def merge(parts: list[LoadResult]) -> LoadResult:
    return LoadResult(
        sum(p.requests for p in parts),
        sum(p.errors for p in parts),
        sum(p.seconds for p in parts),
        [latency for p in parts for latency in p.latencies_ms],
    )


# --- 4. one worker, end to end -----------------------------------------------------------------------
WORKERS = {
    # What a deployment runs: paced under Stripe's limits (25 reads/s per endpoint, whatever the setting).
    "entitle worker": ["-m", "entitle", "worker"],
    # The same loop with the pacer lifted: entitle's own cost per event (bench/unpaced_worker.py).
    "entitle worker, pacer lifted": ["-m", "bench.unpaced_worker"],
}


async def worker_throughput(count: int, concurrency: int) -> list[tuple[str, ...]]:
    from entitle.db.engine import Database

    database = "postgresql"
    rows: list[tuple[str, ...]] = []
    with tempfile.TemporaryDirectory() as tmp, StripeStandin() as standin:
        env = stripe_env(database, Path(tmp), standin, ENTITLE_STRIPE_MAX_REQUESTS_PER_SECOND="100000")
        await prepare_database(database, env)
        reader = Database(settings_for(env).database_url)
        try:
            payers = await seed_in_process(env, standin, count, paced=False, concurrency=16)
            with uvicorn_server(ACKNOWLEDGING_APP, env=env, factory=True) as url:
                for label, command in WORKERS.items():
                    # A fresh month of renewals for each worker: the same subscriptions, a new backlog.
                    events = renew_all(standin, payers)
                    rows += await drain_backlog(
                        label, command, url, env, Path(tmp), reader, standin, events, count, concurrency
                    )
        finally:
            await reader.dispose()
            await drop_database(database)
    return rows


async def drain_backlog(
    label: str,
    command: list[str],
    url: str,
    env: dict[str, str],
    workdir: Path,
    reader: Any,
    standin: StripeStandin,
    events: list[dict[str, Any]],
    count: int,
    concurrency: int,
) -> list[tuple[str, ...]]:
    """Store `events` through the acknowledging server, then time one worker process until none is left."""
    from sqlalchemy import func, select

    from entitle.core.models.events import InboxStatus, ProviderEvent
    from entitle.db.types import utcnow

    host = url.removeprefix("http://")
    stored = await send_all(url, [webhook_request(host, standin, e) for e in events], concurrency=concurrency)
    unprocessed = select(func.count()).where(ProviderEvent.status != InboxStatus.PROCESSED)
    async with reader.read_sessionmaker() as db:
        backlog = int(await db.scalar(unprocessed) or 0)
    if stored.errors or backlog != len(events):
        raise RuntimeError(f"worker: {stored.errors} deliveries failed, {backlog} rows stored")
    reads_before = standin.stats.requests[RETRIEVE]
    cutoff = utcnow()
    started = time.perf_counter()
    worker = subprocess.Popen(
        [sys.executable, *command],
        # The repository on the path, for `bench.unpaced_worker`; the working directory is the bench's own.
        env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        first_done = 0.0
        deadline = started + max(120.0, count / 5)
        while True:
            async with reader.read_sessionmaker() as db:
                left = int(await db.scalar(unprocessed) or 0)
            if left < backlog and not first_done:
                first_done = time.perf_counter() - started
            if not left:
                wall = time.perf_counter() - started
                break
            if worker.poll() is not None or time.perf_counter() > deadline:
                worker.terminate()
                error = worker.stderr.read().decode(errors="replace") if worker.stderr else ""
                raise RuntimeError(f"worker: {left} rows left unprocessed\n{error[-2000:]}")
            await asyncio.sleep(0.05)
    finally:
        if worker.poll() is None:
            worker.terminate()
            worker.wait(timeout=20)
    processed_at = ProviderEvent.processed_at
    async with reader.read_sessionmaker() as db:
        first_at, last_at = (
            await db.execute(
                select(func.min(processed_at), func.max(processed_at)).where(processed_at >= cutoff)
            )
        ).one()
    reads = standin.stats.requests[RETRIEVE] - reads_before
    active = (last_at - first_at).total_seconds()
    rows = []
    for timed, seconds in (("start to last row", wall), ("first to last row", active)):
        rate = len(events) / seconds if seconds else float("nan")
        rows.append(
            (
                label,
                timed,
                f"{len(events)} / {count}",
                f"{seconds:.2f}",
                f"{rate:,.0f}",
                f"{count / seconds:,.0f}" if seconds else "-",
                ">= 1,000",
                verdict(rate >= 1000),
                f"{reads / count:.2f}",
                f"{first_done:.2f}",
            )
        )
    return rows


# --- main --------------------------------------------------------------------------------------------
SECTIONS = ("latency", "storm", "ack", "worker", "read")


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sections", default=",".join(SECTIONS), help=f"comma-separated, of {', '.join(SECTIONS)}"
    )
    parser.add_argument("--database", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--quick", action="store_true", help="fewer samples, subscriptions and seconds")
    parser.add_argument("--samples", type=int, help="latency: changes per vendor latency (default 60)")
    parser.add_argument("--storm", type=int, help="storm: subscriptions renewing (default 80)")
    parser.add_argument("--backlog", type=int, help="worker: subscriptions in the backlog (default 300)")
    parser.add_argument("--seconds", type=float, help="ack and read: seconds per measured run (default 6)")
    parser.add_argument("--concurrency", type=int, default=16, help="connections delivering webhooks")
    args = parser.parse_args()
    quick = args.quick
    samples = args.samples or (20 if quick else 60)
    storm = args.storm or (40 if quick else 80)
    backlog = args.backlog or (100 if quick else 300)
    seconds = args.seconds or (3.0 if quick else 6.0)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")
    databases = ["sqlite", "postgresql"] if args.database == "both" else [args.database]
    began = time.monotonic()
    random.seed(8)

    if "latency" in sections:
        rows = []
        for database in databases:
            rows += await event_to_client(database, samples, accounts=8)
        print_table(
            "1. Event to client: webhook 2xx -> changed answer on an open SSE stream (8 accounts, "
            "processing in the server; goal p99 < 100 ms + one vendor read)",
            rows,
            (
                "database",
                "stand-in latency",
                "samples",
                "p50 ms",
                "p99 ms",
                "max ms",
                "goal ms",
                "",
                "reads/change",
            ),
        )
    if "storm" in sections:
        rows = [await renewal_storm(database, storm, args.concurrency) for database in databases]
        print_table(
            f"2. Renewal storm: {storm} paid renewals, events shuffled, {args.concurrency} connections; "
            "stand-in 80 ms, 25 req/s account and per endpoint",
            rows,
            (
                "database",
                "subs",
                "events",
                "delivered s",
                "sub reads/sub",
                "<= 1.1",
                "429s",
                "reads/s",
                "first read s",
                "converged s",
                "N/25 s",
                "ratio",
                "<= 1.2x",
            ),
        )
    if "ack" in sections:
        rows = []
        for database in databases:
            rows += await acknowledgement(database, seconds, args.concurrency)
        print_table(
            f"3. Acknowledgement: fresh signed renewal events, {args.concurrency} connections, "
            "interleaved slices; ratio = events/s / bare verify+insert",
            rows,
            ("database", "endpoint", "events/s", "ratio", "goal", "", "p50 ms", "p99 ms", "errors"),
        )
    if "worker" in sections:
        if "postgresql" not in databases:
            print("\n4. One worker: PostgreSQL only, skipped")
        else:
            print_table(
                "4. One `entitle worker` draining a stored backlog of renewals (PostgreSQL; stand-in 0 ms, "
                "no limit at the stand-in, ENTITLE_STRIPE_MAX_REQUESTS_PER_SECOND=100000)",
                await worker_throughput(backlog, args.concurrency),
                (
                    "worker",
                    "timed",
                    "events / subs",
                    "seconds",
                    "events/s",
                    "subs/s",
                    "goal",
                    "",
                    "reads/sub",
                    "first row s",
                ),
            )
    if "read" in sections:
        from bench.bench_entitlements import run as run_read

        await run_read(seconds=seconds * 2 / 3, databases=databases, breakdown=True, title="5. ")
    print(f"\n{time.monotonic() - began:.0f} s in all")


if __name__ == "__main__":
    asyncio.run(main())
