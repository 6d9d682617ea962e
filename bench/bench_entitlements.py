"""Signed-in `GET /v1/me/entitlements`: throughput as a ratio to the same app's `GET /v1/catalog` (no auth,
no database; goal >= 50 %) and to a bare Starlette JSON endpoint, and p99 latency at half that load, on
SQLite and PostgreSQL.

    .venv/bin/python bench/bench_entitlements.py [--seconds 4] [--database sqlite|postgresql|both]

Both servers run under uvicorn (one worker, uvloop + httptools when installed) in their own process;
the load generator in this process writes raw HTTP/1.1 over keep-alive sockets, so it costs far less
per request than either server. The accounts are a mix: nothing, a promotional grant, a Stripe
subscription, and Stripe plus App Store (a duplicate), so the answer is the size real clients see.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import (  # noqa: E402
    LoadResult,
    admin_sql,
    entitle_env,
    http_request,
    prepare_database,
    print_table,
    run_load,
    run_open_loop,
    uvicorn_server,
)

PASSWORD = "correct horse battery staple"
ADMIN_KEY = "bench-admin-key-" + "x" * 24
BENCH_DATABASE = "entitle_bench_entitlements"
ACCOUNTS = 8
CONCURRENCY = 32


async def make_accounts(url: str, env: dict[str, str]) -> list[str]:
    """Register accounts over HTTP and give them a spread of entitlement sources; returns access tokens."""
    from entitle.context import build_context
    from entitle.core.subscriptions import Environment, Store, SubscriptionState, SubscriptionStatus
    from entitle.services.access.subscriptions import apply_subscription_state
    from entitle.settings import Settings

    tokens, account_ids = [], []
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        for index in range(ACCOUNTS):
            body = {"email": f"bench{index}@example.com", "password": PASSWORD}
            session = (await http.post("/v1/auth/register", json=body)).json()
            tokens.append(session["access_token"])
            account_ids.append(session["account"]["id"])
            if index % 4 == 1:
                expires = (datetime.now(UTC) + timedelta(days=30)).isoformat()
                response = await http.post(
                    f"/v1/accounts/{session['account']['id']}/grants",
                    headers={"Authorization": f"Bearer {ADMIN_KEY}"},
                    json={"entitlement": "pro", "expires_at": expires},
                )
                response.raise_for_status()

    context = build_context(Settings(**{k.removeprefix("ENTITLE_").lower(): v for k, v in env.items()}))
    now = datetime.now(UTC)
    try:
        async with context.database.transaction() as db:
            for index, account_id in enumerate(account_ids):
                stores = {2: [Store.STRIPE], 3: [Store.STRIPE, Store.APP_STORE]}.get(index % 4, [])
                for store in stores:
                    await apply_subscription_state(
                        db,
                        SubscriptionState(
                            store=store,
                            store_subscription_id=f"{store.value}-{index}",
                            account_id=uuid.UUID(account_id),
                            product="pro_monthly",
                            store_product_id="pro_monthly",
                            status=SubscriptionStatus.ACTIVE,
                            current_period_end=now + timedelta(days=30),
                            will_renew=True,
                            environment=Environment.SANDBOX,
                            vendor_updated_at=now,
                            raw={"id": f"{store.value}-{index}", "padding": "x" * 2000},
                        ),
                    )
    finally:
        await context.aclose()
    return tokens


async def measure(url: str, requests: list[bytes], seconds: float) -> tuple[LoadResult, LoadResult]:
    """Saturating throughput (closed loop), then latency at half of it (open loop)."""
    count = len(requests)
    await run_load(url, lambda i: requests[i % count], concurrency=CONCURRENCY, seconds=1.0)  # warm-up
    full = await run_load(url, lambda i: requests[i % count], concurrency=CONCURRENCY, seconds=seconds)
    half = await run_open_loop(
        url, requests, rate=full.throughput / 2, seconds=seconds, concurrency=CONCURRENCY
    )
    return full, half


def row(
    database: str,
    endpoint: str,
    bare: LoadResult,
    full: LoadResult,
    half: LoadResult | None,
    catalog: LoadResult | None = None,
) -> tuple[str, ...]:
    return (
        database,
        endpoint,
        f"{full.throughput:,.0f}",
        f"{full.throughput / bare.throughput:.1%}",
        f"{full.throughput / catalog.throughput:.0%}" if catalog else "-",
        ("meets" if full.throughput / catalog.throughput >= 0.5 else "MISSES") if catalog else "-",
        f"{full.percentile(99):.1f}",
        f"{half.throughput:,.0f}" if half else "-",
        f"{half.median_ms:.1f}" if half else "-",
        f"{half.percentile(99):.1f}" if half else "-",
        str(full.errors + (half.errors if half else 0)),
    )


async def bench_database(
    database: str, seconds: float, bare: LoadResult, *, breakdown: bool
) -> list[tuple[str, ...]]:
    """The entitlements read; with `breakdown`, also the same app without a database and with auth only."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        env = entitle_env(database, Path(tmp), name=BENCH_DATABASE, ENTITLE_ADMIN_API_KEY=ADMIN_KEY)
        await prepare_database(database, env)
        try:
            with uvicorn_server("entitle.app:create_app", env=env, factory=True) as url:
                host = url.removeprefix("http://")
                tokens = await make_accounts(url, env)

                def signed_in(path: str) -> list[bytes]:
                    return [
                        http_request("GET", path, host, headers={"Authorization": f"Bearer {t}"})
                        for t in tokens
                    ]

                # The same app's stack with no auth and no database: the yardstick the read is held to
                # (goal: at least half of it), measured right before the read on the same server.
                catalog_request = http_request("GET", "/v1/catalog", host)
                catalog = await run_load(
                    url, lambda _: catalog_request, concurrency=CONCURRENCY, seconds=seconds
                )
                full, half = await measure(url, signed_in("/v1/me/entitlements"), seconds)
                rows.append(row(database, "GET /v1/me/entitlements", bare, full, half, catalog))
                rows.append(row(database, "  GET /v1/catalog (no auth, no db)", bare, catalog, None))
                if breakdown:
                    # Where the time goes: token + session check without the answer.
                    me = signed_in("/v1/me")
                    closed = await run_load(
                        url, lambda i: me[i % len(me)], concurrency=CONCURRENCY, seconds=seconds
                    )
                    rows.append(row(database, "  GET /v1/me (auth only)", bare, closed, None))
        finally:
            if database == "postgresql":
                await admin_sql(f'DROP DATABASE IF EXISTS "{BENCH_DATABASE}" WITH (FORCE)')
    return rows


async def run(seconds: float, databases: list[str], *, breakdown: bool, title: str = "") -> None:
    """Measure and print the table (also section 5 of bench_pipeline.py)."""
    with uvicorn_server("bench.bare_app:app") as url:
        request = http_request("GET", "/json", url.removeprefix("http://"))
        bare, bare_half = await measure(url, [request], seconds)
    rows = [row("-", "bare Starlette JSON", bare, bare, bare_half)]
    for database in databases:
        rows += await bench_database(database, seconds, bare, breakdown=breakdown)
    print_table(
        f"{title}signed-in entitlements read (one uvicorn worker, {CONCURRENCY} connections; "
        f"ratio = req/s / bare Starlette; 'vs catalog' = req/s / GET /v1/catalog, goal >= 50%; "
        f"'half' = open loop at half the saturating rate)",
        rows,
        (
            "database",
            "endpoint",
            "req/s",
            "ratio",
            "vs catalog",
            "",
            "p99 ms",
            "half req/s",
            "half p50",
            "half p99",
            "errors",
        ),
    )


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each measured run")
    parser.add_argument("--database", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--no-breakdown", action="store_true", help="skip the /v1/me row")
    args = parser.parse_args()
    started = time.monotonic()
    databases = ["sqlite", "postgresql"] if args.database == "both" else [args.database]
    await run(args.seconds, databases, breakdown=not args.no_breakdown)
    print(f"\n{time.monotonic() - started:.0f} s in all")


if __name__ == "__main__":
    asyncio.run(main())
