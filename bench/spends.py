"""Racing spends over real HTTP: `POST /v1/accounts/{id}/balances/{currency}/transactions` from the app's
backend, 1,000 spends of random size against 50 accounts, on SQLite and PostgreSQL.

    .venv/bin/python bench/spends.py [--spends 1000] [--accounts 50] [--seconds 4] [--database both]

Printed per database: spends/s and p99 with 32 keep-alive connections (the same load shape as the
signed-in read it is held to), the ratio to the signed-in `GET /v1/me/entitlements` measured on the same
server in the same run (goal >= 0.5), and the same 1,000 spends again as one burst on 1,000 connections
at once. After each round every account is checked: its balance equals its ledger's sum, never went below
zero, and every answered spend (201) is in the ledger while every refused one (409) is not.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import (  # noqa: E402
    LoadResult,
    _read_response,
    admin_sql,
    entitle_env,
    http_request,
    prepare_database,
    print_table,
    run_load,
    uvicorn_server,
)

PASSWORD = "correct horse battery staple"
ADMIN_KEY = "bench-admin-key-" + "x" * 24
BENCH_DATABASE = "entitle_bench_spends"
CONCURRENCY = 32
CURRENCY = "credits"
# Enough for most of each account's ~20 spends of 1..20 credits, not all: some are refused (409).
STARTING_BALANCE = 150


@dataclass(frozen=True)
class Spend:
    account_id: str
    amount: int
    key: str


@dataclass(frozen=True)
class Round:
    load: LoadResult
    statuses: dict[int, int]
    answered: list[tuple[Spend, int]]


async def make_accounts(url: str, count: int) -> tuple[list[str], list[str]]:
    """Register accounts over HTTP and give each its starting balance; returns (ids, access tokens)."""
    ids, tokens = [], []
    server = {"Authorization": f"Bearer {ADMIN_KEY}"}
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        for index in range(count):
            body = {"email": f"spender{index}@example.com", "password": PASSWORD}
            session = (await http.post("/v1/auth/register", json=body)).json()
            ids.append(session["account"]["id"])
            tokens.append(session["access_token"])
            credit = await http.post(
                f"/v1/accounts/{ids[-1]}/balances/{CURRENCY}/transactions",
                json={"amount": STARTING_BALANCE, "reason": "bench"},
                headers=server,
            )
            credit.raise_for_status()
    return ids, tokens


def spend_request(host: str, spend: Spend) -> bytes:
    body = json.dumps(
        {"amount": -spend.amount, "reason": "bench spend", "idempotency_key": spend.key}
    ).encode()
    return http_request(
        "POST",
        f"/v1/accounts/{spend.account_id}/balances/{CURRENCY}/transactions",
        host,
        headers={"Authorization": f"Bearer {ADMIN_KEY}", "Content-Type": "application/json"},
        body=body,
    )


async def send_spends(url: str, spends: list[Spend], *, connections: int) -> Round:
    """Each spend once, over `connections` keep-alive connections; the status of each is kept."""
    host, port = url.removeprefix("http://").split(":")
    pending = iter(spends)
    latencies: list[float] = []
    answered: list[tuple[Spend, int]] = []

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            for spend in pending:
                started = time.perf_counter()
                writer.write(spend_request(f"{host}:{port}", spend))
                status = await _read_response(reader)
                latencies.append((time.perf_counter() - started) * 1000)
                answered.append((spend, status))
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(min(connections, len(spends)))))
    seconds = time.perf_counter() - started
    statuses: dict[int, int] = {}
    for _spend, status in answered:
        statuses[status] = statuses.get(status, 0) + 1
    errors = sum(n for status, n in statuses.items() if status not in (201, 409))
    return Round(LoadResult(len(latencies), errors, seconds, latencies), statuses, answered)


async def check_ledgers(env: dict[str, str], answered: list[tuple[Spend, int]]) -> str:
    """Each balance equals its ledger sum and is >= 0; answered spends are in the ledger, refused ones not."""
    from sqlalchemy import func, select

    from entitle.context import build_context
    from entitle.core.models.purchases import Balance, BalanceTransaction
    from entitle.settings import Settings

    context = build_context(Settings(**{k.removeprefix("ENTITLE_").lower(): v for k, v in env.items()}))
    problems = []
    try:
        async with context.database.sessionmaker() as db:
            sums = dict(
                (
                    await db.execute(
                        select(BalanceTransaction.account_id, func.sum(BalanceTransaction.amount)).group_by(
                            BalanceTransaction.account_id
                        )
                    )
                ).all()
            )
            stored = dict((await db.execute(select(Balance.account_id, Balance.amount))).all())
            negative_prefix = (
                await db.execute(select(func.count()).where(BalanceTransaction.balance_after < 0))
            ).scalar_one()
            keys = set(
                (
                    await db.scalars(
                        select(BalanceTransaction.idempotency_key).where(BalanceTransaction.amount < 0)
                    )
                ).all()
            )
    finally:
        await context.aclose()
    for account_id, amount in stored.items():
        if amount != sums.get(account_id):
            problems.append(f"{account_id}: balance {amount} but ledger sum {sums.get(account_id)}")
        if amount < 0:
            problems.append(f"{account_id}: balance {amount} below zero")
    if negative_prefix:
        problems.append(f"{negative_prefix} ledger rows left a balance below zero")
    for spend, status in answered:
        if (status == 201) != (spend.key in keys):
            problems.append(
                f"spend {spend.key} answered {status} but {'not ' * (status == 201)}in the ledger"
            )
    if problems:
        return "FAILED: " + "; ".join(problems[:5])
    return f"ok: {len(stored)} balances = ledger sums, none < 0"


def make_spends(account_ids: list[str], count: int, tag: str) -> list[Spend]:
    return [
        Spend(random.choice(account_ids), random.randint(1, 20), f"{tag}-{index}-{uuid.uuid4().hex[:8]}")
        for index in range(count)
    ]


async def bench_database(
    database: str, spends: int, accounts: int, seconds: float, connections: int
) -> list[tuple[str, ...]]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        env = entitle_env(database, Path(tmp), name=BENCH_DATABASE, ENTITLE_ADMIN_API_KEY=ADMIN_KEY)
        await prepare_database(database, env)
        try:
            with uvicorn_server("entitle.app:create_app", env=env, factory=True) as url:
                host = url.removeprefix("http://")
                account_ids, tokens = await make_accounts(url, accounts)
                reads = [
                    http_request("GET", "/v1/me/entitlements", host, headers={"Authorization": f"Bearer {t}"})
                    for t in tokens
                ]
                await run_load(url, lambda i: reads[i % len(reads)], concurrency=CONCURRENCY, seconds=1.0)
                read = await run_load(
                    url, lambda i: reads[i % len(reads)], concurrency=CONCURRENCY, seconds=seconds
                )
                steady = await send_spends(
                    url, make_spends(account_ids, spends, "steady"), connections=connections
                )
                steady_check = await check_ledgers(env, steady.answered)
                # Top the accounts up again, then the same number of spends all at once.
                async with httpx.AsyncClient(base_url=url, timeout=60) as http:
                    for account_id in account_ids:
                        await http.post(
                            f"/v1/accounts/{account_id}/balances/{CURRENCY}/transactions",
                            json={"amount": STARTING_BALANCE, "reason": "bench top-up"},
                            headers={"Authorization": f"Bearer {ADMIN_KEY}"},
                        )
                burst = await send_spends(url, make_spends(account_ids, spends, "burst"), connections=spends)
                burst_check = await check_ledgers(env, steady.answered + burst.answered)
        finally:
            if database == "postgresql":
                await admin_sql(f'DROP DATABASE IF EXISTS "{BENCH_DATABASE}" WITH (FORCE)')
    ratio = steady.load.throughput / read.throughput
    rows.append(
        (
            database,
            f"GET /v1/me/entitlements ({CONCURRENCY} conn.)",
            f"{read.throughput:,.0f}",
            "-",
            f"{read.percentile(99):.1f}",
            "-",
            str(read.errors),
            "",
        )
    )
    for name, result, check in (
        (f"spends ({connections} conn.)", steady, steady_check),
        (f"spends ({spends} at once)", burst, burst_check),
    ):
        share = result.load.throughput / read.throughput
        rows.append(
            (
                database,
                name,
                f"{result.load.throughput:,.0f}",
                f"{share:.2f}" + ((" meets" if ratio >= 0.5 else " MISSES") if result is steady else ""),
                f"{result.load.percentile(99):.1f}",
                f"{result.statuses.get(201, 0)}/{result.statuses.get(409, 0)}",
                str(result.load.errors),
                check,
            )
        )
    return rows


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--spends", type=int, default=1000)
    parser.add_argument("--accounts", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=4.0, help="length of the signed-in read's run")
    parser.add_argument("--database", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--connections", type=int, default=CONCURRENCY, help="for the steady round")
    args = parser.parse_args()
    started = time.monotonic()
    databases = ["sqlite", "postgresql"] if args.database == "both" else [args.database]
    rows = []
    for database in databases:
        rows += await bench_database(database, args.spends, args.accounts, args.seconds, args.connections)
    print_table(
        f"spends of 1..20 {CURRENCY} by the server key, {args.spends} against {args.accounts} accounts "
        f"(one uvicorn worker; 'vs read' = spends/s / signed-in read req/s in the same run, goal >= 0.5)",
        rows,
        ("database", "what", "req/s", "vs read", "p99 ms", "201/409", "errors", "ledger check"),
    )
    print(f"\n{time.monotonic() - started:.0f} s in all")


if __name__ == "__main__":
    asyncio.run(main())
