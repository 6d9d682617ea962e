"""Signed Stripe events per second through POST /webhooks/stripe, to the changed answer, as a ratio to
a bare endpoint that only verifies the signature and inserts the inbox row; same run, SQLite and PostgreSQL.

    .venv/bin/python bench/bench_stripe_webhooks.py [--seconds 5] [--database sqlite|postgresql|both]

Each event is a fresh `customer.subscription.updated` (unique id) for one of the bench subscriptions,
so every request does the full work: verify, store, take the per-customer lock, re-read the
subscription from the Stripe stand-in over loopback HTTP, store it and recompute the account's
entitlements. Real Stripe answers a retrieve in roughly 100-300 ms, which would dominate; the stand-in
answers in about a millisecond, so these figures are entitle's own cost. The server runs in a uvicorn
subprocess (one worker); the stand-in and the load generator share this process.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.standins.stripe import StripeStandin, sign  # noqa: E402

from bench.bench_auth import PASSWORD  # noqa: E402
from bench.harness import entitle_env, http_request, prepare_database, print_table, run_load, uvicorn_server  # noqa: E402  # noqa: E402

SUBSCRIPTIONS = 40


async def seed(url: str, standin: StripeStandin) -> list[dict[str, Any]]:
    """Accounts with paid subscriptions; returns one update event template per subscription."""
    from entitle.core.catalog import load_catalog
    from entitle.providers.stripe.catalog_push import push_catalog
    from entitle.providers.stripe.client import StripeGateway

    gateway = StripeGateway(standin.secret_key, api_base=standin.base_url)
    await push_catalog(gateway, load_catalog())
    await gateway.aclose()
    templates = []
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        for i in range(SUBSCRIPTIONS):
            session = (
                await http.post(
                    "/v1/auth/register", json={"email": f"bench{i}@example.com", "password": PASSWORD}
                )
            ).json()
            auth = {"Authorization": f"Bearer {session['access_token']}"}
            response = await http.post(
                "/v1/billing/stripe/checkout", json={"product": "pro_monthly"}, headers=auth
            )
            assert response.status_code == 200, response.text
            checkout = response.json()
            standin.complete_checkout(checkout["id"])
            completed = standin.events.of_type("checkout.session.completed")[-1]
            body, headers = standin.signed(completed)
            assert (await http.post("/webhooks/stripe", content=body, headers=headers)).status_code == 200
            templates.append(standin.events.of_type("customer.subscription.updated")[-1])
        answer = (await http.get("/v1/me/entitlements", headers=auth)).json()
        assert answer["entitlements"]["pro"]["active"], answer
    return templates


def event_requests(host: str, secret: str, templates: list[dict[str, Any]], prefix: str) -> Any:
    counter = itertools.count()

    def make(_: int) -> bytes:
        n = next(counter)
        event = {**templates[n % len(templates)], "id": f"evt_{prefix}_{n}"}
        body = json.dumps(event).encode()
        return http_request(
            "POST",
            "/webhooks/stripe",
            host,
            body=body,
            headers={"Content-Type": "application/json", "Stripe-Signature": sign(body, secret)},
        )

    return make


async def bench_database(database: str, seconds: float, concurrency: int) -> list[tuple[str, ...]]:
    with tempfile.TemporaryDirectory() as tmp, StripeStandin() as standin:
        env = entitle_env(database, Path(tmp))
        env.update(
            {
                "ENTITLE_STRIPE_SECRET_KEY": standin.secret_key,
                "ENTITLE_STRIPE_API_BASE": standin.base_url,
                "ENTITLE_STRIPE_WEBHOOK_SECRET": standin.webhook_secret,
            }
        )
        await prepare_database(database, env)
        os.environ.update(env)
        results = {}
        with uvicorn_server("entitle.app:create_app", env=env, factory=True) as url:
            templates = await seed(url, standin)
            results["full: verify, store, re-read, answer"] = await run_load(
                url,
                event_requests(url.removeprefix("http://"), standin.webhook_secret, templates, "full"),
                concurrency=concurrency,
                seconds=seconds,
                ok=lambda s: s == 200,
            )
            async with httpx.AsyncClient(base_url=url) as http:
                session = (
                    await http.post(
                        "/v1/auth/login", json={"email": "bench0@example.com", "password": PASSWORD}
                    )
                ).json()
                answer = (
                    await http.get(
                        "/v1/me/entitlements", headers={"Authorization": f"Bearer {session['access_token']}"}
                    )
                ).json()
                assert answer["entitlements"]["pro"]["active"], answer
        with uvicorn_server("bench.bare_stripe_webhook_app:create_app", env=env, factory=True) as url:
            results["bare: verify and insert"] = await run_load(
                url,
                event_requests(url.removeprefix("http://"), standin.webhook_secret, templates, "bare"),
                concurrency=concurrency,
                seconds=seconds,
                ok=lambda s: s == 200,
            )
    bare = results["bare: verify and insert"].throughput
    return [
        (
            database,
            name,
            f"{r.throughput:,.0f}",
            f"{r.throughput / bare:.1%}",
            f"{r.median_ms:.1f}",
            f"{r.percentile(99):.1f}",
            str(r.errors),
        )
        for name, r in results.items()
    ]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--database", choices=["sqlite", "postgresql", "both"], default="both")
    args = parser.parse_args()
    rows: list[tuple[str, ...]] = []
    for database in ["sqlite", "postgresql"] if args.database == "both" else [args.database]:
        rows += await bench_database(database, args.seconds, args.concurrency)
    print_table(
        f"Stripe webhooks (one uvicorn worker, {args.concurrency} connections, "
        f"{SUBSCRIPTIONS} subscriptions; ratio = events/s / bare verify+insert)",
        rows,
        ("database", "endpoint", "events/s", "ratio", "p50 ms", "p99 ms", "errors"),
    )


if __name__ == "__main__":
    asyncio.run(main())
