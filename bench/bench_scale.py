"""entitle at 1,000,000 accounts, each figure against the same measurement on a 1,000-account database
in the same run (PostgreSQL):

- the signed-in `GET /v1/me/entitlements` over HTTP, random accounts (goal: big/small req/s >= 0.9);
- support lookups `GET /v1/accounts?email=|external_id=|stripe_customer_id=|original_transaction_id=`
  and an account's event log page (goal: p99 < 5 ms);
- `reports.summary` over 30 days (goal: < 2 s);
- `entitle sync stripe` over 100,000 subscriptions against the Stripe stand-in at the live limits (100
  requests/s, 25/s per endpoint): time / (requests / 25 per s) (goal <= 1.2), RSS at 10 % and 100 %;
- every migration after 0005 applied to the loaded database: time each, and whether a big table was
  rewritten (its `relfilenode` changed);
- EXPLAIN ANALYZE of each lookup, the event log page and the report's queries on the big database.

    .venv/bin/python bench/bench_scale.py [--accounts 1000000] [--events-per-account 5]
        [--sync-subscriptions 100000] [--seconds 5] [--postgres-url postgresql://...] [--keep]

`--accounts 100000 --sync-subscriptions 20000` is a quick run (about two minutes). Rows are made by
PostgreSQL itself (`INSERT ... SELECT generate_series`) at revision 0005, the revision before the
support, webhook-log, report and operator migrations, so that those run against a full database.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg  # noqa: E402

from bench.harness import (  # noqa: E402
    POSTGRES_URL,
    ROOT,
    admin_sql,
    entitle_env,
    http_request,
    print_table,
    run_load,
    send_all,
    uvicorn_server,
)

BIG, SMALL = "entitle_scale_big", "entitle_scale_small"
ADMIN_KEY = "bench-admin-key-" + "x" * 24
LOADED_AT = "0005_pipeline"
# Tables whose rewrite by a migration would hold a lock for minutes at this size.
BIG_TABLES = ("accounts", "subscriptions", "account_events", "account_answers", "refresh_token_families")
ANSWER = (
    '{"account_id":"%s","entitlements":{"pro":{"active":true,"source":"%s","product":"pro_monthly",'
    '"expires_at":"2027-01-31T00:00:00Z","will_renew":true,"in_grace_period":false,"is_trial":false,'
    '"duplicates":[]}},"checked_at":"2026-12-31T00:00:00Z"}'
)

# Per account i: the account, a sign-in session, the stored answer, one subscription (a third on the App
# Store with its ownership row, the rest on Stripe with their customer), an Apple identity for one in
# ten, a promotional grant for one in a hundred. Stripe subscription i is `sub_<i>` of customer
# `cus_<i>`; its period ends at :base + (i % 30 + 1) days, as the stand-in's copy says.
SEED = [
    """INSERT INTO accounts (id, app_account_token, email, created_at)
    SELECT md5('a' || i)::uuid, md5('t' || i)::uuid, 'user' || i || '@example.com',
        now() - (i % 365) * interval '1 day' - (i % 1440) * interval '1 minute'
    FROM generate_series(1, :n) AS i""",
    """INSERT INTO identities (id, account_id, provider, subject, email, email_verified, is_private_relay,
        created_at)
    SELECT md5('i' || i)::uuid, md5('a' || i)::uuid, 'apple', 'apple.' || i,
        'relay' || i || '@privaterelay.appleid.com', true, true, now()
    FROM generate_series(10, :n, 10) AS i""",
    """INSERT INTO refresh_token_families (id, account_id, created_at, user_agent)
    SELECT md5('f' || i)::uuid, md5('a' || i)::uuid, now(), 'bench'
    FROM generate_series(1, :n) AS i""",
    """INSERT INTO stripe_customers (account_id, customer_id, livemode, created_at)
    SELECT md5('a' || i)::uuid, 'cus_' || i, true, now() FROM generate_series(1, :n) AS i WHERE i % 3 <> 0""",
    """INSERT INTO appstore_ownership (original_transaction_id, account_id, environment, product_id,
        app_account_token, ownership_type, created_at, updated_at)
    SELECT (2000000000000000 + i)::text, md5('a' || i)::uuid, 'Production', 'pro_monthly',
        md5('t' || i)::uuid, 'PURCHASED', now(), now()
    FROM generate_series(3, :n, 3) AS i""",
    """INSERT INTO subscriptions (id, store, store_subscription_id, account_id, product, store_product_id,
        status, current_period_end, will_renew, environment, store_customer_id, raw, vendor_updated_at,
        created_at, updated_at)
    SELECT md5('s' || i)::uuid,
        CASE WHEN i % 3 = 0 THEN 'app_store' ELSE 'stripe' END,
        CASE WHEN i % 3 = 0 THEN (2000000000000000 + i)::text ELSE 'sub_' || i END,
        md5('a' || i)::uuid,
        CASE WHEN i % 4 = 0 THEN 'pro_yearly' ELSE 'pro_monthly' END,
        CASE WHEN i % 4 = 0 THEN 'price_pro_yearly' ELSE 'price_pro_monthly' END,
        CASE WHEN i % 5 = 0 THEN 'expired' WHEN i % 10 = 1 THEN 'trialing' ELSE 'active' END,
        to_timestamp(:base + (i % 30 + 1) * 86400), i % 5 <> 0, 'production',
        CASE WHEN i % 3 = 0 THEN NULL ELSE 'cus_' || i END,
        CASE WHEN i % 3 = 0 THEN '{}'::jsonb
            ELSE jsonb_build_object('id', 'sub_' || i, 'latest_invoice', 'in_' || i) END,
        now() - interval '1 day', now(), now()
    FROM generate_series(1, :n) AS i""",
    """INSERT INTO account_answers (account_id, body, recheck_at, updated_at)
    SELECT md5('a' || i)::uuid, format(:answer, md5('a' || i)::uuid,
        CASE WHEN i % 3 = 0 THEN 'app_store' ELSE 'stripe' END),
        now() + interval '30 days', now()
    FROM generate_series(1, :n) AS i""",
    """INSERT INTO promotional_grants (id, account_id, entitlement, expires_at, created_at)
    SELECT md5('g' || i)::uuid, md5('a' || i)::uuid, 'pro', now() + interval '30 days', now()
    FROM generate_series(100, :n, 100) AS i""",
    # Events over the last year in a real log's mix: mostly renewals and entitlement changes.
    """INSERT INTO account_events (id, account_id, type, data, created_at)
    SELECT gen_random_uuid(), md5('a' || (1 + i % :n))::uuid,
        (ARRAY['subscription.started', 'subscription.renewed', 'subscription.renewed',
               'subscription.renewed', 'entitlement.granted', 'entitlement.revoked', 'subscription.expired',
               'account.created', 'subscription.will_not_renew', 'subscription.refunded'])[1 + i % 10],
        jsonb_build_object('store', 'stripe', 'product', 'pro_monthly', 'subscription_id', 'sub_' || i,
            'status', CASE WHEN i % 7 = 0 THEN 'trialing' ELSE 'active' END,
            'previous_status', CASE WHEN i % 11 = 0 THEN 'trialing' ELSE 'active' END),
        now() - (i % (365 * 24 * 60)) * interval '1 minute'
    FROM generate_series(1, :events) AS i""",
]
# After 0006 added the column: the id the app's own user table knows each account by.
EXTERNAL_IDS = "UPDATE accounts SET external_id = 'ext-' || substr(email, 5, strpos(email, '@') - 5)"


def db_url(name: str) -> str:
    return POSTGRES_URL.rsplit("/", 1)[0] + "/" + name


async def sql(connection: asyncpg.Connection, statement: str, **params: Any) -> None:
    """Run `statement` with `:name` parameters inlined as literals (they are ours, not input)."""
    for name, value in params.items():
        literal = str(value) if isinstance(value, int) else "'" + str(value).replace("'", "''") + "'"
        statement = statement.replace(f":{name}", literal)
    await connection.execute(statement)


def migrate(url: str, revision: str) -> None:
    from alembic import command

    from entitle.db.migrate import alembic_config

    with open(os.devnull, "w") as quiet:
        config = alembic_config(url)
        config.stdout = quiet
        command.upgrade(config, revision)


def revisions_after(revision: str) -> list[str]:
    from alembic.script import ScriptDirectory

    from entitle.db.migrate import alembic_config

    script = ScriptDirectory.from_config(alembic_config("postgresql://x/y"))
    order = [r.revision for r in reversed(list(script.walk_revisions()))]
    return order[order.index(revision) + 1 :]


async def seed(name: str, accounts: int, events: int, base: int) -> tuple[float, int, list[tuple[str, ...]]]:
    """A database at 0005 loaded with rows, then every later migration timed; (seconds, rows, table)."""
    url = db_url(name)
    await admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin_sql(f'CREATE DATABASE "{name}"')
    await asyncio.to_thread(migrate, url, LOADED_AT)
    connection = await asyncpg.connect(url)
    try:
        began = time.perf_counter()
        for statement in SEED:
            await sql(connection, statement, n=accounts, events=events, base=base, answer=ANSWER)
        await connection.execute("VACUUM ANALYZE")
        loaded = time.perf_counter() - began
        rows = 0
        for table in (*BIG_TABLES, "identities", "stripe_customers", "appstore_ownership"):
            rows += await connection.fetchval(f"SELECT count(*) FROM {table}")  # noqa: S608
        migrations = []
        for revision in revisions_after(LOADED_AT):
            before = await _filenodes(connection)
            started = time.perf_counter()
            await asyncio.to_thread(migrate, url, revision)
            elapsed = time.perf_counter() - started
            after = await _filenodes(connection)
            rewritten = [table for table in BIG_TABLES if before[table] != after[table]]
            migrations.append((revision, f"{elapsed:.2f} s", ", ".join(rewritten) or "none"))
        await connection.execute(EXTERNAL_IDS)
        await connection.execute("VACUUM ANALYZE")
    finally:
        await connection.close()
    return loaded, rows, migrations


async def _filenodes(connection: asyncpg.Connection) -> dict[str, int]:
    rows = await connection.fetch(
        "SELECT relname, relfilenode FROM pg_class WHERE relname = ANY($1::text[])", list(BIG_TABLES)
    )
    return {row["relname"]: row["relfilenode"] for row in rows}


# --- measurements ------------------------------------------------------------------------------------


def account_id(i: int) -> uuid.UUID:
    import hashlib

    return uuid.UUID(hashlib.md5(f"a{i}".encode()).hexdigest())  # noqa: S324


def session_id(i: int) -> uuid.UUID:
    import hashlib

    return uuid.UUID(hashlib.md5(f"f{i}".encode()).hexdigest())  # noqa: S324


def tokens_for(key_path: Path, picks: list[int]) -> list[str]:
    from entitle.services.identity.tokens import SigningKey, TokenIssuer

    issuer = TokenIssuer(
        SigningKey.load_or_create(key_path, create=True),
        issuer="entitle",
        access_ttl=timedelta(hours=1),
        refresh_ttl=timedelta(days=1),
    )
    now = datetime.now(UTC)
    return [issuer.issue_access_token(account_id(i), session_id(i), now=now) for i in picks]


async def measure_http(name: str, accounts: int, seconds: float, workdir: Path) -> dict[str, Any]:
    """Signed-in read throughput, and lookups / event log latency one request at a time."""
    env = entitle_env("postgresql", workdir, name=name, ENTITLE_ADMIN_API_KEY=ADMIN_KEY)
    rng = random.Random(7)
    picks = [rng.randint(1, accounts) for _ in range(2000)]
    tokens = tokens_for(workdir / "key.pem", picks)
    out: dict[str, Any] = {}
    with uvicorn_server("entitle.app:create_app", env=env, factory=True) as url:
        host = url.removeprefix("http://")
        admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
        reads = [
            http_request("GET", "/v1/me/entitlements", host, headers={"Authorization": f"Bearer {t}"})
            for t in tokens
        ]
        await run_load(url, lambda i: reads[i % len(reads)], concurrency=32, seconds=1.0)  # warm-up
        full = await run_load(url, lambda i: reads[-1 - i % len(reads)], concurrency=32, seconds=seconds)
        out["read"] = full
        lookups = {
            "email": lambda i: f"email=user{i}%40example.com",
            "external_id": lambda i: f"external_id=ext-{i}",
            "stripe_customer_id": lambda i: f"stripe_customer_id=cus_{i if i % 3 else i + 1}",
            "original_transaction_id": lambda i: f"original_transaction_id={2000000000000000 + i - i % 3}",
        }
        for label, query in lookups.items():
            requests = [
                http_request("GET", f"/v1/accounts?{query(max(3, i))}", host, headers=admin)
                for i in picks[:600]
            ]
            await send_all(url, requests[:50], concurrency=1)
            out[label] = await send_all(url, requests[50:], concurrency=1)
        pages = [
            http_request("GET", f"/v1/accounts/{account_id(i)}/events?limit=50", host, headers=admin)
            for i in picks[:600]
        ]
        await send_all(url, pages[:50], concurrency=1)
        out["events"] = await send_all(url, pages[50:], concurrency=1)
    return out


async def measure_report(name: str) -> float:
    from entitle.core.catalog import load_catalog
    from entitle.db.engine import Database
    from entitle.services.reporting import reports
    database = Database(db_url(name))
    today = datetime.now(UTC).date()
    try:
        async with database.read_sessionmaker() as db:
            start = today - timedelta(days=29)
            await reports.summary(db, load_catalog(), start, today)  # warm, as a dashboard would be
            began = time.perf_counter()
            await reports.summary(db, load_catalog(), start, today)
            return time.perf_counter() - began
    finally:
        await database.dispose()


PLANS = {
    "lookup by email": "email=user{i}@example.com",
    "lookup by external_id": "external_id=ext-{i}",
    "lookup by stripe_customer_id": "stripe_customer_id=cus_{i}",
    "lookup by original_transaction_id": "original_transaction_id={t}",
}


async def explain_all(name: str, i: int) -> list[str]:
    """EXPLAIN ANALYZE of the queries the measured paths send, with the values of account `i`."""
    from sqlalchemy import text

    from entitle.db.engine import Database
    from entitle.services.reporting import lookups, reports
    database = Database(db_url(name))
    out: list[str] = []
    try:
        async with database.read_sessionmaker() as db:
            statements = {
                "lookup by email": lookups.lookup_query(email=f"user{i}@example.com"),
                "lookup by external_id": lookups.lookup_query(external_id=f"ext-{i}"),
                "lookup by stripe_customer_id": lookups.lookup_query(stripe_customer_id=f"cus_{i}"),
                "lookup by original_transaction_id": lookups.lookup_query(
                    original_transaction_id=str(2000000000000000 + i + 2)
                ),
                "event log page": lookups.event_page_query(account_id(i), limit=50, offset=0, type=None),
                "report: actives now": reports.active_query(datetime.now(UTC)),
            }
            dialect = (await db.connection()).dialect
            for label, statement in statements.items():
                compiled = statement.compile(dialect=dialect, compile_kwargs={"literal_binds": True})
                plan = await db.execute(text(f"EXPLAIN (ANALYZE, COSTS OFF) {compiled}"))
                out.append(f"\n-- {label}")
                out.extend(line for (line,) in plan.all())
    finally:
        await database.dispose()
    return out


# --- entitle sync stripe --------------------------------------------------------------------------------


def stand_in_subscriptions(standin: Any, count: int, base: int) -> None:
    """`count` subscriptions written straight into the stand-in's memory, matching rows `sub_<i>` (a
    thousandth of them changed since, so the sync has a little drift to find)."""
    from tests.standins.stripe.catalog import create_price, create_product

    state = standin.state
    for key, interval, amount in (("pro_monthly", "month", 999), ("pro_yearly", "year", 9999)):
        product = create_product(state, {"name": key})
        price = create_price(
            state,
            {
                "product": product["id"],
                "currency": "usd",
                "unit_amount": str(amount),
                "recurring": {"interval": interval},
                "lookup_key": key,
            },
        )
        state.objects.pop(price["id"])
        price["id"] = f"price_{key}"
        state.objects[price["id"]] = price
    now = int(time.time())
    shared: dict[str, Any] = {
        "object": "subscription",
        "application": None,
        "billing_mode": {"type": "classic"},
        "cancel_at": None,
        "canceled_at": None,
        "collection_method": "charge_automatically",
        "currency": "usd",
        "days_until_due": None,
        "default_payment_method": None,
        "description": None,
        "discounts": [],
        "ended_at": None,
        "livemode": True,
        "metadata": {},
        "pause_collection": None,
        "pending_setup_intent": None,
        "pending_update": None,
        "schedule": None,
        "test_clock": None,
        "trial_end": None,
        "trial_start": None,
    }
    made = 0
    i = 0
    while made < count:
        i += 1
        if i % 3 == 0:
            continue
        made += 1
        ended = i % 5 == 0
        status = "canceled" if ended else "trialing" if i % 10 == 1 else "active"
        drift = i % 1000 == 7
        if drift and not ended:
            status = "past_due"
        sub_id = f"sub_{i}"
        period_end = base + (i % 30 + 1) * 86400
        state.add(
            {
                **shared,
                "id": sub_id,
                "created": now - i,
                "cancel_at_period_end": False,
                "customer": f"cus_{i}",
                "latest_invoice": f"in_{i}",
                "start_date": period_end - 30 * 86400,
                "status": status,
                "items": {
                    "object": "list",
                    "has_more": False,
                    "url": f"/v1/subscription_items?subscription={sub_id}",
                    "data": [
                        {
                            "id": f"si_{i}",
                            "object": "subscription_item",
                            "created": now - i,
                            "current_period_end": period_end,
                            "current_period_start": period_end - 30 * 86400,
                            "discounts": [],
                            "metadata": {},
                            "quantity": 1,
                            "subscription": sub_id,
                            "tax_rates": [],
                            "price": "price_pro_yearly" if i % 4 == 0 else "price_pro_monthly",
                        }
                    ],
                },
            }
        )


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except FileNotFoundError:
        pass
    return 0


async def measure_sync(name: str, count: int, base: int, workdir: Path) -> list[tuple[str, ...]]:
    from tests.standins.stripe import StripeStandin

    standin = StripeStandin(
        secret_key="sk_live_standin_0123456789", rate_limit_per_second=100, endpoint_rate_limit_per_second=25
    )
    began = time.perf_counter()
    stand_in_subscriptions(standin, count, base)
    print(f"stand-in holds {count:,} subscriptions ({time.perf_counter() - began:.0f} s)")
    standin.start()
    try:
        env = {
            **os.environ,
            **entitle_env("postgresql", workdir, name=name),
            "ENTITLE_STRIPE_SECRET_KEY": standin.secret_key,
            "ENTITLE_STRIPE_API_BASE": standin.base_url,
        }
        started = time.perf_counter()
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "entitle"), "sync", "stripe"],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        samples: list[tuple[float, int, int]] = []  # (seconds, list requests so far, RSS KiB)
        while process.poll() is None:
            await asyncio.sleep(0.25)
            listed = standin.stats.requests.get("GET /v1/subscriptions", 0)
            samples.append((time.perf_counter() - started, listed, rss_kib(process.pid)))
        elapsed = time.perf_counter() - started
        output = process.stdout.read() if process.stdout else ""
    finally:
        standin.stop()
    stats = standin.stats
    requests = sum(stats.requests.values())
    per_endpoint = max(stats.requests.values())
    bound = max(requests / 100, per_endpoint / 25)
    pages = max(1, (count + 99) // 100)
    rss = [kib for _, listed, kib in samples if kib]
    at = {
        p: next((kib for _, listed, kib in samples if listed >= pages * p / 100 and kib), 0)
        for p in (10, 100)
    }
    print(output.strip().splitlines()[-3:] if output else "(no output)")
    return [
        ("subscriptions", f"{count:,}", ""),
        (
            "requests (by endpoint)",
            f"{requests:,}",
            ", ".join(f"{k}: {v}" for k, v in sorted(stats.requests.items())),
        ),
        ("429s", str(sum(stats.rate_limited.values())), ""),
        ("bound (requests at 100/s, per endpoint at 25/s)", f"{bound:.1f} s", ""),
        (
            "time",
            f"{elapsed:.1f} s",
            f"{elapsed / bound:.2f}x bound, goal <= 1.2: " + ("met" if elapsed / bound <= 1.2 else "NOT MET"),
        ),
        (
            "RSS at 10 % / 100 % of pages, peak",
            f"{at[10] / 1024:.0f} / {at[100] / 1024:.0f} MiB",
            f"peak {max(rss, default=0) / 1024:.0f} MiB; "
            + ("flat" if at[10] and at[100] <= at[10] * 1.2 else "GROWS"),
        ),
    ]


# --- main -----------------------------------------------------------------------------------------------


def ratio_row(label: str, big: float, small: float, unit: str, goal: str) -> tuple[str, ...]:
    return (label, f"{big:,.1f} {unit}", f"{small:,.1f} {unit}", f"{big / small:.2f}" if small else "-", goal)


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--accounts", type=int, default=1_000_000)
    parser.add_argument("--small-accounts", type=int, default=1_000)
    parser.add_argument("--events-per-account", type=int, default=5)
    parser.add_argument("--sync-subscriptions", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument(
        "--postgres-url",
        help="an existing database on the server to use (default: $ENTITLE_BENCH_POSTGRES_URL)",
    )
    parser.add_argument("--keep", action="store_true", help="keep both databases afterwards")
    args = parser.parse_args()
    if args.postgres_url:
        import bench.harness as harness

        harness.POSTGRES_URL = args.postgres_url
        globals()["POSTGRES_URL"] = args.postgres_url
    started = time.monotonic()
    base = int(time.time()) // 86400 * 86400
    try:
        loads = {}
        for name, n in ((BIG, args.accounts), (SMALL, args.small_accounts)):
            loaded, rows, migrations = await seed(name, n, n * args.events_per_account, base)
            loads[name] = (loaded, rows, migrations)
            print(
                f"{name}: {rows:,} rows and {n * args.events_per_account:,} events in {loaded:.0f} s "
                f"({(rows + n * args.events_per_account) / loaded:,.0f} rows/s)"
            )
        print_table(
            f"migrations after {LOADED_AT}, each applied to the loaded databases",
            [
                (rev, big, small, rewritten)
                for (rev, big, rewritten), (_, small, _) in zip(loads[BIG][2], loads[SMALL][2], strict=True)
            ],
            ("migration", f"{args.accounts:,} accounts", f"{args.small_accounts:,}", "big tables rewritten"),
        )
        with tempfile.TemporaryDirectory() as tmp:
            big = await measure_http(BIG, args.accounts, args.seconds, Path(tmp))
            small = await measure_http(SMALL, args.small_accounts, args.seconds, Path(tmp))
        rows = [
            ratio_row(
                "GET /v1/me/entitlements, req/s (32 connections)",
                big["read"].throughput,
                small["read"].throughput,
                "",
                "ratio >= 0.9: "
                + ("met" if big["read"].throughput / small["read"].throughput >= 0.9 else "NOT MET"),
            )
        ]
        for label in ("email", "external_id", "stripe_customer_id", "original_transaction_id", "events"):
            b, s = big[label], small[label]
            title = f"GET /v1/accounts?{label}=" if label != "events" else "GET /v1/accounts/{id}/events"
            goal = "p99 < 5 ms: " + ("met" if b.percentile(99) < 5 else "NOT MET")
            rows.append(ratio_row(f"{title} p50", b.median_ms, s.median_ms, "ms", ""))
            rows.append(ratio_row(f"{title} p99", b.percentile(99), s.percentile(99), "ms", goal))
            if b.errors or s.errors:
                rows.append((f"  errors in {label}", str(b.errors), str(s.errors), "", ""))
        report_big, report_small = await measure_report(BIG), await measure_report(SMALL)
        rows.append(
            ratio_row(
                "reports.summary, 30 days",
                report_big * 1000,
                report_small * 1000,
                "ms",
                "< 2 s: " + ("met" if report_big < 2 else "NOT MET"),
            )
        )
        print_table(
            f"{args.accounts:,} accounts vs {args.small_accounts:,} (one uvicorn worker, lookups one by one)",
            rows,
            ("measurement", "big", "small", "big/small", "goal"),
        )
        print("\n".join(await explain_all(BIG, 424242 if args.accounts > 424242 else args.accounts // 2)))
        with tempfile.TemporaryDirectory() as tmp:
            sync_rows = await measure_sync(
                BIG, min(args.sync_subscriptions, args.accounts * 2 // 3), base, Path(tmp)
            )
        print_table(
            "entitle sync stripe against the stand-in at the live limits", sync_rows, ("", "figure", "note")
        )
    finally:
        if not args.keep:
            for name in (BIG, SMALL):
                await admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    print(f"\n{time.monotonic() - started:.0f} s in all")


if __name__ == "__main__":
    asyncio.run(main())
