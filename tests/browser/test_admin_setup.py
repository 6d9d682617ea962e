"""The first run in a browser: the one-time link makes the operator, /admin/setup takes the Stripe keys,
and the server reports Stripe configured at once, with no restart and the secret never shown again."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest_asyncio
from playwright.async_api import expect

from entitle.services.identity.tokens import SigningKey
from tests.browser.conftest import (
    DESKTOP,
    PageAt,
    assert_only_host,
    first_run_link,
    fresh_install,
    requests_made,
    screenshot,
)
from tests.conftest import LiveServer, make_settings
from tests.standins.stripe import StripeStandin


@pytest_asyncio.fixture(loop_scope="session")
async def fresh(
    database_url: str, signing_key: SigningKey, standin: StripeStandin
) -> AsyncIterator[LiveServer]:
    """A fresh install: no operator, no Stripe key; only where Stripe answers is in the environment."""
    settings = make_settings(database_url, stripe_api_base=standin.base_url)
    async with fresh_install(settings, signing_key) as server:
        yield server


async def test_first_run_to_stripe_configured(
    fresh: LiveServer, page_at: PageAt, standin: StripeStandin
) -> None:
    async with httpx.AsyncClient(base_url=fresh.url, timeout=30) as http:
        assert (await http.get("/v1/status")).json()["stores"]["stripe"]["configured"] is False
        # The link the server printed on start (a second one, as another process would print).
        link = await first_run_link(fresh)

        page = await page_at(DESKTOP)
        await page.goto(link)
        await page.get_by_label("Email").fill("owner@example.com")
        await page.get_by_label("Password").fill("correct horse battery")
        await screenshot(page, "first-run")
        await page.get_by_role("button", name="Create and open the dashboard").click()
        await page.wait_for_url(f"{fresh.url}/admin/setup")
        stripe = page.locator("#card-stripe")
        await expect(stripe.locator(".badge")).to_have_text("Not set")

        await stripe.get_by_label("Secret key").fill(standin.secret_key)
        await stripe.get_by_label("Publishable key").fill("pk_test_browser")
        await stripe.get_by_role("button", name="Save").click()
        await expect(page.get_by_role("status")).to_contain_text("Saved")
        stripe = page.locator("#card-stripe")
        await expect(stripe.locator(".badge")).to_have_text("Set")
        await expect(stripe.get_by_label("Secret key")).to_have_value("")
        assert standin.secret_key not in await page.content()
        await screenshot(page, "admin-setup", full_page=True)

        status = (await http.get("/v1/status")).json()
        assert status["stores"]["stripe"] == {"configured": True, "mode": "test"}
        # And the key works: the catalog is read from Stripe through the saved key.
        assert (await http.get("/v1/catalog")).status_code == 200
        assert_only_host(requests_made(page), fresh.url)
