"""Issue 20's "done when", in a browser over the Stripe stand-in: from an empty database to the first
operator (the one-time link the server logs), Stripe set up from /admin/setup (keys pasted, saved, checked
and the endpoint connected), then a test payment (the verified card links to /pricing) through
Stripe's hosted Checkout, landing on /account with the plan. The environment holds the database and
where Stripe answers, nothing else. What the person does is counted
and written to test-artifacts/steps.txt."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio
from playwright.async_api import expect

from entitle.services.identity.tokens import SigningKey
from entitle.settings import RunEnvironment, Settings
from tests.browser.conftest import (
    DESKTOP,
    PageAt,
    assert_only_host,
    first_run_link,
    fresh_install,
    requests_made,
    screenshot,
)
from tests.browser.test_guest_checkout import Steps, _record
from tests.conftest import LiveServer
from tests.factories import DEFAULT_PASSWORD
from tests.standins.stripe import StripeStandin


@pytest_asyncio.fixture(loop_scope="session")
async def fresh(
    database_url: str, signing_key: SigningKey, standin: StripeStandin
) -> AsyncIterator[LiveServer]:
    """A fresh install: an empty database, no operator, no Stripe key; only where Stripe answers."""
    # Not the suite's make_settings (it adds an admin key and loose rate limits): only the database,
    # where Stripe answers, and the test environment (the stand-in speaks http); the server's own
    # address is added by LiveServer.
    settings = Settings(
        environment=RunEnvironment.TEST, database_url=database_url, stripe_api_base=standin.base_url
    )
    assert settings.stripe_secret_key is None and not settings.stripe_webhook_secret
    assert settings.admin_api_key is None
    # No deliveries to a server that is going away.
    async with fresh_install(settings, signing_key, before_stop=standin.stop) as server:
        yield server


async def test_from_an_empty_database_to_a_paid_plan(
    fresh: LiveServer, page_at: PageAt, standin: StripeStandin
) -> None:
    # The link the server prints at start when there is no operator (what `entitle serve` logs).
    link = await first_run_link(fresh)
    page = await page_at(DESKTOP)
    steps = Steps()
    await page.goto(link)
    await screenshot(page, "journey-first-run")
    await steps.fill(page.get_by_label("Email"), "owner@example.com")
    await steps.fill(page.get_by_label("Password"), DEFAULT_PASSWORD)
    await steps.click(page.get_by_role("button", name="Create and open the dashboard"))
    await page.wait_for_url(f"{fresh.url}/admin/setup")
    await screenshot(page, "journey-setup-empty", full_page=True)

    stripe = page.locator("#card-stripe")
    await steps.fill(stripe.get_by_label("Secret key"), standin.secret_key)
    await steps.fill(stripe.get_by_label("Publishable key"), "pk_test_journey")
    await steps.click(stripe.get_by_role("button", name="Save"))
    stripe = page.locator("#card-stripe")
    await expect(stripe.locator(".badge")).to_have_text("Set")
    await steps.click(stripe.get_by_role("button", name="Check keys and connect"))
    await expect(page.get_by_role("status")).to_contain_text("Connected")
    await expect(page.locator("#card-stripe .badge")).to_have_text("Verified")
    await screenshot(page, "journey-setup-connected", full_page=True)

    # A test payment, as a customer would make it (the operator's own account), from the card's link.
    await steps.click(page.get_by_role("link", name="Make a test payment"))
    await page.wait_for_url(f"{fresh.url}/pricing")
    await screenshot(page, "journey-pricing", full_page=True)
    await steps.click(page.get_by_role("button", name="Subscribe to Pro, monthly"))
    await page.wait_for_url(f"{standin.base_url}/c/pay/*")
    await expect(page.get_by_role("heading")).to_have_text("Subscribe to Pro, monthly")
    await steps.click(page.get_by_role("button", name="Subscribe"))
    await page.wait_for_url(f"{fresh.url}/checkout/success?*")
    # The webhook the page connected brings the subscription in.
    await expect(page.locator("#landed")).to_be_visible(timeout=20_000)
    await screenshot(page, "journey-checkout-success", full_page=True)
    await steps.click(page.get_by_role("link", name="Go to your account"))
    await page.wait_for_url(f"{fresh.url}/account")
    await expect(page.locator("main")).to_contain_text("Pro, monthly")
    await expect(page.locator("main")).to_contain_text("Renews on")
    await screenshot(page, "journey-account", full_page=True)
    assert_only_host(requests_made(page), fresh.url, standin.base_url)
    assert (steps.clicks, steps.fields) == (7, 4), str(steps)
    _record("set up from an empty database to a paid plan", steps)
