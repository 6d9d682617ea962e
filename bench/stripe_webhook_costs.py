"""Where the CPU of one Stripe webhook goes: per-stage CPU milliseconds and SQL statements per event.

    .venv/bin/python bench/stripe_webhook_costs.py [--events 300] [--database sqlite|postgresql]

Runs the app in this process (httpx's ASGI transport) and posts signed `customer.subscription.updated`
events one at a time for one subscription, so that the CPU time this thread spends inside a stage is
that stage's own cost (the Stripe stand-in answers from its own thread, which is not counted). The
stages are entitle's own functions, wrapped for timing; nothing of a vendor SDK is touched. Use it to
see what a change saves before running the throughput benchmark (bench_stripe_webhooks.py), whose
figures move with everything else running on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import event as sa_event

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.standins.stripe import StripeStandin, sign  # noqa: E402

from bench.bench_auth import PASSWORD  # noqa: E402
from bench.harness import entitle_env, prepare_database  # noqa: E402

CPU: collections.defaultdict[str, float] = collections.defaultdict(float)


def timed(owner: Any, name: str, label: str) -> None:
    """Replace `owner.name` (an async function of entitle's) by one that adds its CPU time to CPU[label]."""
    original: Callable[..., Awaitable[Any]] = getattr(owner, name)
    CPU[label] = 0.0  # listed in the order the stages were registered

    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.thread_time()
        try:
            return await original(*args, **kwargs)
        finally:
            CPU[label] += time.thread_time() - started

    setattr(owner, name, wrapper)


def instrument() -> None:
    from entitle.providers.stripe import client, reconcile
    from entitle.services import inbox, subscriptions

    timed(inbox.Inbox, "receive", "inbox.receive (store the event)")
    timed(inbox.Inbox, "_process", "inbox._process (all processing)")
    timed(client.StripeGateway, "retrieve_subscription", "  Stripe re-read (SDK)")
    timed(reconcile.Reconciler, "account_for", "  Reconciler.account_for")
    timed(reconcile, "apply_subscription_state", "  apply_subscription_state (all)")
    timed(subscriptions, "refresh_entitlements", "    refresh_entitlements")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=300)
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="postgresql")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, StripeStandin() as standin:
        env = entitle_env(args.database, Path(tmp))
        await prepare_database(args.database, env)
        instrument()
        from entitle.app import create_app
        from entitle.core.catalog import load_catalog
        from entitle.providers.stripe.catalog_push import push_catalog
        from entitle.providers.stripe.client import StripeGateway
        from entitle.settings import Settings

        env.update(
            {
                "ENTITLE_STRIPE_SECRET_KEY": standin.secret_key,
                "ENTITLE_STRIPE_API_BASE": standin.base_url,
                "ENTITLE_STRIPE_WEBHOOK_SECRET": standin.webhook_secret,
            }
        )
        os.environ.update(env)
        settings = Settings()
        gateway = StripeGateway(standin.secret_key, api_base=standin.base_url)
        await push_catalog(gateway, load_catalog())
        await gateway.aclose()
        app = create_app(settings)
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://t") as http,
        ):
            session = (
                await http.post(
                    "/v1/auth/register", json={"email": "costs@example.com", "password": PASSWORD}
                )
            ).json()
            auth = {"Authorization": f"Bearer {session['access_token']}"}
            checkout = (
                await http.post("/v1/billing/stripe/checkout", json={"product": "pro_monthly"}, headers=auth)
            ).json()
            standin.complete_checkout(checkout["id"])
            body, headers = standin.signed(standin.events.of_type("checkout.session.completed")[-1])
            assert (await http.post("/webhooks/stripe", content=body, headers=headers)).status_code == 200
            template = standin.events.of_type("customer.subscription.updated")[-1]

            async def post(n: int) -> None:
                body = json.dumps({**template, "id": f"evt_costs_{n}"}).encode()
                signature = sign(body, standin.webhook_secret)
                headers = {"Content-Type": "application/json", "Stripe-Signature": signature}
                response = await http.post("/webhooks/stripe", content=body, headers=headers)
                assert response.status_code == 200 and response.json()["status"] == "processed", response.text

            for n in range(50):  # warm caches: compiled statements, prepared statements, connections
                await post(n)
            statements: collections.Counter[str] = collections.Counter()

            def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
                statements[" ".join(statement.split())[:100]] += 1

            for label in CPU:
                CPU[label] = 0.0
            engine = app.state.context.database.engine.sync_engine
            sa_event.listen(engine, "before_cursor_execute", count)
            started, cpu_started = time.perf_counter(), time.thread_time()
            for n in range(50, 50 + args.events):
                await post(n)
            wall, cpu = time.perf_counter() - started, time.thread_time() - cpu_started
            sa_event.remove(engine, "before_cursor_execute", count)

    per = 1000 / args.events
    print(f"{args.database}: {args.events} events, one at a time")
    print(f"  wall per event                      {wall * per:7.3f} ms")
    print(f"  CPU per event (this thread, all)    {cpu * per:7.3f} ms")
    for label, seconds in CPU.items():
        print(f"  {label:36s}{seconds * per:7.3f} ms")
    print(f"  SQL statements per event            {sum(statements.values()) / args.events:7.2f}")
    for statement, n in statements.most_common():
        print(f"    {n / args.events:5.2f}  {statement}")


if __name__ == "__main__":
    asyncio.run(main())
