"""Several entitle processes on one database, and processes that die: what a deployment lives through."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ADMIN_KEY
from tests.e2e.processes import REDIS_URL, EntitleProcess, next_stream_event, process_env
from tests.factories import bearer, eventually, register
from tests.standins.stripe import StripeStandin

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


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
                assert (await asyncio.wait_for(next_stream_event(lines), 10))["entitlements"]["pro"][
                    "active"
                ] is False
                grant = await http_one.post(
                    f"/v1/accounts/{session['account']['id']}/grants",
                    json={"entitlement": "pro", "expires_at": "2099-01-01T00:00:00Z"},
                    headers=ADMIN,
                )
                assert grant.status_code == 201
                pushed = await asyncio.wait_for(next_stream_event(lines), 10)
                assert pushed["entitlements"]["pro"]["active"] is True


async def _paid_checkout(
    http: httpx.AsyncClient, standin: StripeStandin, email: str
) -> tuple[bytes, dict[str, str]]:
    """A signed-up account that paid on Checkout; returns the signed completion event."""
    session = await register(http, email)
    checkout = await http.post(
        "/v1/billing/stripe/checkout", json={"product": "pro_monthly"}, headers=bearer(session)
    )
    assert checkout.status_code == 200, checkout.text
    standin.complete_checkout(checkout.json()["id"])
    return standin.signed(standin.events.of_type("checkout.session.completed")[-1])


@pytest.fixture
async def stripe_env(
    database_url: str, tmp_path: Path
) -> AsyncIterator[tuple[StripeStandin, dict[str, str]]]:
    """A Stripe stand-in with the catalog pushed, and the environment of processes pointed at it."""
    from entitle.core.catalog import load_catalog
    from entitle.providers.stripe.catalog_push import push_catalog
    from entitle.providers.stripe.client import StripeGateway

    with StripeStandin() as standin:
        gateway = StripeGateway(standin.secret_key, api_base=standin.base_url)
        await push_catalog(gateway, load_catalog())
        await gateway.aclose()
        yield (
            standin,
            process_env(
                database_url,
                tmp_path,
                ENTITLE_STRIPE_SECRET_KEY=standin.secret_key,
                ENTITLE_STRIPE_API_BASE=standin.base_url,
                ENTITLE_STRIPE_WEBHOOK_SECRET=standin.webhook_secret,
            ),
        )


async def _applied_once(server: EntitleProcess, email: str, *, timeout: float) -> None:
    """The account ends up entitled, and was granted exactly once."""
    async with httpx.AsyncClient(base_url=server.url) as http:
        login = await http.post(
            "/v1/auth/login", json={"email": email, "password": "correct horse battery staple"}
        )

        async def entitled() -> bool:
            answer = await http.get("/v1/me/entitlements", headers=bearer(login.json()))
            return bool(answer.json()["entitlements"]["pro"]["active"])

        await eventually(entitled, timeout=timeout, message="the acknowledged event was never applied")
        await asyncio.sleep(0.5)  # anything applied twice would show by now
        granted = await http.get(
            "/v1/me/events", params={"type": "entitlement.granted"}, headers=bearer(login.json())
        )
        assert len(granted.json()["events"]) == 1


async def test_an_event_stored_by_a_process_that_died_is_applied_once_after_restart(
    stripe_env: tuple[StripeStandin, dict[str, str]], tmp_path: Path
) -> None:
    """kill -9 between store and process: the event was acknowledged, so it must not be lost."""
    standin, env = stripe_env
    # An API process that stores and acknowledges, and dies before anyone processed the event.
    api = EntitleProcess.server(env, tmp_path, "--no-worker").start()
    try:
        async with httpx.AsyncClient(base_url=api.url) as http:
            body, headers = await _paid_checkout(http, standin, "crash@example.com")
            acknowledged = await http.post("/webhooks/stripe", content=body, headers=headers)
            assert acknowledged.status_code == 200 and acknowledged.json()["status"] == "pending"
    finally:
        api.kill()
    with EntitleProcess.server(env, tmp_path) as restarted:
        # Stripe redelivers it too, as after any doubt: it is still applied once.
        async with httpx.AsyncClient(base_url=restarted.url) as http:
            redelivered = await http.post("/webhooks/stripe", content=body, headers=headers)
            assert redelivered.json()["duplicate"] is True
        await _applied_once(restarted, "crash@example.com", timeout=20)


async def test_a_process_killed_while_processing_lets_another_finish_within_seconds(
    stripe_env: tuple[StripeStandin, dict[str, str]], tmp_path: Path
) -> None:
    """kill -9 after the event was claimed and its Stripe read was on the wire: the claim's lease runs
    out and a restarted process applies the event, once."""
    standin, env = stripe_env
    first = EntitleProcess.server(env, tmp_path).start()
    try:
        async with httpx.AsyncClient(base_url=first.url) as http:
            body, headers = await _paid_checkout(http, standin, "midway@example.com")
            standin.limits.latency_ms = 3000  # Stripe is slow today: the re-read is still on the wire
            reads_before = standin.limits.stats.requests["GET /v1/subscriptions/{id}"]
            assert (await http.post("/webhooks/stripe", content=body, headers=headers)).status_code == 200

            async def read_sent() -> bool:
                return standin.limits.stats.requests["GET /v1/subscriptions/{id}"] > reads_before

            await eventually(read_sent, message="the first process never started processing")
    finally:
        first.kill()
    standin.limits.latency_ms = 0
    with EntitleProcess.server(env, tmp_path) as second:
        # The lease is 10 s and consumers look every 2 s: well within half a minute.
        await _applied_once(second, "midway@example.com", timeout=30)
