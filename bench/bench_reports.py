"""`GET /v1/reports/summary` at scale: 1,000,000 accounts with a subscription each and 5,000,000 account
events spread over a year, on PostgreSQL; the time of `services.reports.summary` over 30 and 366 days,
and the plans of its queries (they should read `ix_account_events_type_created`, not every event).

    .venv/bin/python bench/bench_reports.py [--accounts 1000000] [--events 5000000] [--keep]

Rows are made by the database itself (`generate_series`), so seeding takes a minute or two, not hours.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import text  # noqa: E402

from bench.harness import POSTGRES_URL, admin_sql, print_table  # noqa: E402
from entitle.core.catalog import load_catalog  # noqa: E402
from entitle.db.engine import Database  # noqa: E402
from entitle.db.types import utcnow  # noqa: E402
from entitle.services.reporting import reports

NAME = "entitle_bench_reports"

# One subscription per account: mostly Stripe monthly, some yearly, a third on the App Store; a fifth
# ended, a tenth trialing.
SEED_SUBSCRIPTIONS = """
INSERT INTO accounts (id, app_account_token, created_at)
SELECT md5('a' || i)::uuid, md5('t' || i)::uuid, now() - (i % 365) * interval '1 day'
FROM generate_series(1, :accounts) AS i;

INSERT INTO subscriptions (id, store, store_subscription_id, account_id, product, store_product_id, status,
    current_period_end, will_renew, environment, raw, vendor_updated_at, created_at, updated_at)
SELECT md5('s' || i)::uuid,
    CASE WHEN i % 3 = 0 THEN 'app_store' ELSE 'stripe' END,
    'sub_' || i, md5('a' || i)::uuid,
    CASE WHEN i % 4 = 0 THEN 'pro_yearly' ELSE 'pro_monthly' END, 'price_' || (i % 4),
    CASE WHEN i % 5 = 0 THEN 'expired' WHEN i % 10 = 1 THEN 'trialing' ELSE 'active' END,
    now() + (i % 30 + 1) * interval '1 day', true, 'production',
    -- An App Store row keeps its last transaction, whose price and period the report reads.
    CASE WHEN i % 3 = 0 THEN jsonb_build_object('transaction', jsonb_build_object(
        'price', CASE WHEN i % 4 = 0 THEN 99990 ELSE 9990 END, 'currency', 'USD',
        'purchaseDate', (extract(epoch FROM now()) * 1000)::bigint - (i % 1440) * 60000,
        'expiresDate', (extract(epoch FROM now()) * 1000)::bigint - (i % 1440) * 60000
            + CASE WHEN i % 4 = 0 THEN 365 ELSE 30 END * 86400000::bigint))
    ELSE '{}'::jsonb END, now(), now(), now()
FROM generate_series(1, :accounts) AS i;
"""

# Events over the last year, in the mix a real log has: mostly renewals and entitlement changes.
SEED_EVENTS = """
INSERT INTO account_events (id, account_id, type, data, created_at)
SELECT gen_random_uuid(), md5('a' || (1 + i % :accounts))::uuid,
    (ARRAY['subscription.started', 'subscription.renewed', 'subscription.renewed', 'subscription.renewed',
           'entitlement.granted', 'entitlement.revoked', 'subscription.expired', 'account.created',
           'subscription.will_not_renew', 'subscription.refunded'])[1 + i % 10],
    jsonb_build_object('store', 'stripe', 'product', 'pro_monthly', 'subscription_id', 'sub_' || i,
        'status', CASE WHEN i % 7 = 0 THEN 'trialing' ELSE 'active' END,
        'previous_status', CASE WHEN i % 11 = 0 THEN 'trialing' ELSE 'active' END),
    now() - (i % (365 * 24 * 60)) * interval '1 minute'
FROM generate_series(1, :events) AS i;
"""


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=5_000_000)
    parser.add_argument("--keep", action="store_true", help="keep the seeded database for another run")
    args = parser.parse_args()
    url = POSTGRES_URL.rsplit("/", 1)[0] + "/" + NAME
    if not args.keep:
        await _seed(url, args.accounts, args.events)
    database = Database(url)
    catalog = load_catalog()
    today = utcnow().date()
    rows: list[tuple[str, ...]] = []
    try:
        async with database.read_sessionmaker() as db:
            for days in (30, 366):
                start = today - timedelta(days=days - 1)
                await reports.summary(db, catalog, start, today)  # warm the cache, as a dashboard would
                began = time.perf_counter()
                report = await reports.summary(db, catalog, start, today)
                elapsed = time.perf_counter() - began
                rows.append((f"{days} days", f"{elapsed * 1000:.0f} ms", str(report["totals"]["new"])))
            plan = await db.execute(
                text(
                    "EXPLAIN SELECT type, count(*) FROM account_events"
                    " WHERE type IN ('subscription.started', 'subscription.expired')"
                    " AND created_at >= now() - interval '30 days' GROUP BY type"
                )
            )
            print("\n".join(line for (line,) in plan.all()))
    finally:
        await database.dispose()
    print_table(
        f"reports.summary on PostgreSQL, {args.accounts:,} accounts, {args.events:,} events",
        rows,
        ("range", "time", "new in range"),
    )


async def _seed(url: str, accounts: int, events: int) -> None:
    from entitle.db.migrate import run_upgrade

    await admin_sql(f'DROP DATABASE IF EXISTS "{NAME}" WITH (FORCE)')
    await admin_sql(f'CREATE DATABASE "{NAME}"')
    await asyncio.to_thread(run_upgrade, url)
    database = Database(url)
    began = time.perf_counter()
    try:
        async with database.engine.begin() as connection:
            for statement in SEED_SUBSCRIPTIONS.split(";"):
                if statement.strip():
                    await connection.execute(text(statement), {"accounts": accounts})
            await connection.execute(text(SEED_EVENTS), {"accounts": accounts, "events": events})
        async with database.engine.connect() as connection:
            autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
            await autocommit.execute(text("VACUUM ANALYZE"))
    finally:
        await database.dispose()
    print(f"seeded in {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    asyncio.run(main())
