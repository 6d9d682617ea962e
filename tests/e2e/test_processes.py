"""Several entitle processes on one database, and processes that die: what a deployment lives through."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ADMIN_KEY
from tests.e2e.processes import EntitleProcess, process_env
from tests.factories import bearer, eventually, register
from tests.standins.stripe import StripeStandin

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
REDIS_URL = os.environ.get("ENTITLE_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


async def _next_event(lines: AsyncIterator[str]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    async for line in lines:
        if line.startswith("data: "):
            data = json.loads(line.removeprefix("data: "))
        elif line == "" and data:
            return data
    raise AssertionError("the stream ended")


@pytest.mark.parametrize("transport", ["notify", "redis"])
async def test_a_change_through_one_server_reaches_a_stream_held_by_another(
    database_url: str, tmp_path: Path, transport: str
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("several server processes share PostgreSQL; SQLite is served by one process")
    extra = {"ENTITLE_REDIS_URL": REDIS_URL} if transport == "redis" else {}
    env = process_env(database_url, tmp_path, **extra)
    with (
        EntitleProcess.server(env, tmp_path) as one,
        EntitleProcess.server(env, tmp_path) as two,
    ):
        async with (
            httpx.AsyncClient(base_url=one.url) as http_one,
            httpx.AsyncClient(base_url=two.url) as http_two,
        ):
            session = await register(http_one, f"two-{transport}@example.com")
            async with http_two.stream(
                "GET", "/v1/me/entitlements/stream", headers=bearer(session), timeout=30
            ) as stream:
                lines = stream.aiter_lines()
                assert (await asyncio.wait_for(_next_event(lines), 10))["entitlements"]["pro"][
                    "active"
                ] is False
                grant = await http_one.post(
                    f"/v1/accounts/{session['account']['id']}/grants",
                    json={"entitlement": "pro", "expires_at": "2099-01-01T00:00:00Z"},
                    headers=ADMIN,
                )
                assert grant.status_code == 201
                pushed = await asyncio.wait_for(_next_event(lines), 10)
                assert pushed["entitlements"]["pro"]["active"] is True


async def _paid_checkout(
    http: httpx.AsyncClient, standin: StripeStandin, email: str
) -> tuple[dict[str, Any], bytes, dict[str, str]]:
    """A signed-up account that paid on Checkout; returns the session and the signed completion event."""
    session = await register(http, email)
    checkout = await http.post(
        "/v1/billing/stripe/checkout", json={"product": "pro_monthly"}, headers=bearer(session)
    )
    assert checkout.status_code == 200, checkout.text
    standin.complete_checkout(checkout.json()["id"])
    body, headers = standin.signed(standin.events.of_type("checkout.session.completed")[-1])
    return session, body, headers


async def test_an_event_stored_by_a_process_that_died_is_applied_once_after_restart(
    database_url: str, tmp_path: Path
) -> None:
    """kill -9 between store and process: the event was acknowledged, so it must not be lost."""
    from entitle.core.catalog import load_catalog
    from entitle.providers.stripe.catalog_push import push_catalog
    from entitle.providers.stripe.client import StripeGateway

    with StripeStandin() as standin:
        gateway = StripeGateway(standin.secret_key, api_base=standin.base_url)
        await push_catalog(gateway, load_catalog())
        await gateway.aclose()
        env = process_env(
            database_url,
            tmp_path,
            ENTITLE_STRIPE_SECRET_KEY=standin.secret_key,
            ENTITLE_STRIPE_API_BASE=standin.base_url,
            ENTITLE_STRIPE_WEBHOOK_SECRET=standin.webhook_secret,
        )
        # An API process that stores and acknowledges, and dies before anyone processed the event.
        api = EntitleProcess.server(env, tmp_path, "--no-worker").start()
        try:
            async with httpx.AsyncClient(base_url=api.url) as http:
                session, body, headers = await _paid_checkout(http, standin, "crash@example.com")
                acknowledged = await http.post("/webhooks/stripe", content=body, headers=headers)
                assert acknowledged.status_code == 200 and acknowledged.json()["status"] == "pending"
        finally:
            api.kill()
        with EntitleProcess.server(env, tmp_path) as restarted:
            async with httpx.AsyncClient(base_url=restarted.url) as http:
                login = await http.post(
                    "/v1/auth/login",
                    json={"email": "crash@example.com", "password": "correct horse battery staple"},
                )

                async def entitled() -> bool:
                    answer = await http.get("/v1/me/entitlements", headers=bearer(login.json()))
                    return bool(answer.json()["entitlements"]["pro"]["active"])

                await eventually(entitled, timeout=20, message="the stored event was never applied")
                # Redelivered by Stripe too, as it would be after no answer: still applied once.
                assert (await http.post("/webhooks/stripe", content=body, headers=headers)).json()[
                    "duplicate"
                ]
                await asyncio.sleep(0.5)
                events = await http.get(
                    "/v1/me/events", params={"type": "entitlement.granted"}, headers=bearer(login.json())
                )
                assert len(events.json()["events"]) == 1
        del session
