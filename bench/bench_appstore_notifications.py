"""App Store notification ingestion through the real endpoint, as a ratio to bare signature verification.

    .venv/bin/python bench/bench_appstore_notifications.py [--seconds 5] [--database sqlite|postgresql|both]

Every request is a distinct, freshly signed App Store Server Notification V2 (SUBSCRIBED / DID_RENEW for
a pool of subscriptions of one account) posted to `POST /webhooks/appstore` on a uvicorn server in its
own process: verification of the outer JWS and the nested transaction and renewal info, the inbox
insert, the handler, the subscription upsert and the entitlement refresh. The baseline, measured in the
same run with the same library, is `SignedDataVerifier` verifying the same three signatures per
notification in a plain loop, with no HTTP and no database. Signatures are minted offline under a test
chain (online OCSP checks off, as in development).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from appstoreserverlibrary.models.Environment import Environment  # noqa: E402
from appstoreserverlibrary.signed_data_verifier import SignedDataVerifier  # noqa: E402
from tests.standins.appstore import AppStoreSigner, SubscriptionSimulator, mint_chain  # noqa: E402

from bench.harness import (  # noqa: E402
    entitle_env,
    http_request,
    prepare_database,
    print_table,
    run_load,
    uvicorn_server,
)

BUNDLE_ID = "com.example.app"
PASSWORD = "correct horse battery staple"
# Upper bound on prepared notifications; the run stops early (and says so) if the server is faster.
MAX_NOTIFICATIONS = 6000


def notifications(signer: AppStoreSigner, token: str, count: int, rng: random.Random) -> list[bytes]:
    """`count` distinct notification bodies over 50 subscriptions, each renewing in order."""
    start = dt.datetime.now(dt.UTC) - dt.timedelta(days=400)
    sims = [
        SubscriptionSimulator(
            signer=signer,
            original_transaction_id=str(7_000_000_000_000_000 + i),
            product_id="com.example.app.pro.monthly",
            app_account_token=token,
            start=start,
        )
        for i in range(50)
    ]
    bodies = []
    for _ in range(count):
        sim = rng.choice(sims)
        note = sim.renew() if sim.subscribed else sim.subscribe()
        bodies.append(json.dumps(note.body).encode())
    return bodies


def bare_verification(root_der: bytes, bodies: list[bytes], seconds: float) -> tuple[float, int]:
    """Notifications/s for the library alone: outer payload plus nested transaction and renewal info."""
    verifier = SignedDataVerifier([root_der], False, Environment.SANDBOX, BUNDLE_ID, 1234)
    done, deadline, started = 0, time.perf_counter() + seconds, time.perf_counter()
    while time.perf_counter() < deadline and done < len(bodies):
        signed = json.loads(bodies[done])["signedPayload"]
        note = verifier.verify_and_decode_notification(signed)
        assert note.data is not None
        verifier.verify_and_decode_signed_transaction(note.data.signedTransactionInfo or "")
        verifier.verify_and_decode_renewal_info(note.data.signedRenewalInfo or "")
        done += 1
    return done / (time.perf_counter() - started), done


async def bench_database(
    database: str, seconds: float, signer: AppStoreSigner, root_path: Path, bare_rate: float
) -> list[tuple[str, ...]]:
    with tempfile.TemporaryDirectory() as tmp:
        env = entitle_env(
            database,
            Path(tmp),
            name="entitle_bench_appstore",
            ENTITLE_APPLE_BUNDLE_ID=BUNDLE_ID,
            ENTITLE_APPLE_APP_ID="1234",
            ENTITLE_APPLE_ROOT_CERTS=str(root_path),
            ENTITLE_APPLE_ONLINE_CHECKS="false",
        )
        await prepare_database(database, env)
        os.environ.update(env)
        with uvicorn_server("entitle.app:create_app", env=env, factory=True) as url:
            async with httpx.AsyncClient(base_url=url) as http:
                registered = await http.post(
                    "/v1/auth/register", json={"email": "ios@example.com", "password": PASSWORD}
                )
                token = registered.json()["account"]["app_account_token"]
            bodies = notifications(signer, token, MAX_NOTIFICATIONS, random.Random(7))
            host = url.removeprefix("http://")

            def request(counter: int) -> bytes:
                body = bodies[(counter - 1) % len(bodies)]
                return http_request(
                    "POST",
                    "/webhooks/appstore",
                    host,
                    body=body,
                    headers={"Content-Type": "application/json"},
                )

            result = await run_load(url, request, concurrency=8, seconds=seconds)
    note = " (wrapped: duplicates)" if result.requests > len(bodies) else ""
    return [
        (
            database,
            "POST /webhooks/appstore" + note,
            f"{result.throughput:,.0f}",
            f"{result.throughput / bare_rate:.1%}",
            f"{result.median_ms:.1f}",
            f"{result.percentile(99):.1f}",
            str(result.errors),
        )
    ]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--database", choices=["sqlite", "postgresql", "both"], default="both")
    args = parser.parse_args()
    chain = mint_chain()
    signer = AppStoreSigner(chain, bundle_id=BUNDLE_ID, app_apple_id=1234, environment="Sandbox")
    with tempfile.TemporaryDirectory() as tmp:
        root_path = Path(tmp) / "root.pem"
        root_path.write_bytes(chain.root_pem)
        sample = notifications(signer, "3b6f3a3e-3f5e-4b8e-9a57-0a4a5cb0c001", 2000, random.Random(1))
        bare_rate, verified = bare_verification(chain.root_der, sample, min(args.seconds, 5.0))
        rows = [
            (
                "-",
                f"bare SignedDataVerifier, 3 JWS ({verified} notifications)",
                f"{bare_rate:,.0f}",
                "100.0%",
                "-",
                "-",
                "0",
            )
        ]
        databases = ["sqlite", "postgresql"] if args.database == "both" else [args.database]
        for database in databases:
            rows += await bench_database(database, args.seconds, signer, root_path, bare_rate)
    print_table(
        "App Store notifications/s (one uvicorn worker, 8 connections; ratio = endpoint / bare verification)",
        rows,
        ("database", "what", "notif/s", "ratio", "p50 ms", "p99 ms", "errors"),
    )


if __name__ == "__main__":
    asyncio.run(main())
