"""Stripe set up from /admin/setup in a browser, against the stand-in: a wrong key shows Stripe's own
reason, the right keys are checked, the webhook endpoint is connected (its secret saved, never shown)
with the catalog pushed, and a test event sent by Stripe is seen arriving."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import pytest_asyncio
from playwright.async_api import expect

from entitle.providers.stripe.handlers import webhook_event_types
from entitle.services.identity.tokens import SigningKey
from tests.browser.conftest import DESKTOP, PageAt, first_run_link, fresh_install, screenshot
from tests.conftest import LiveServer, make_settings
from tests.standins.stripe import StripeStandin

WRONG = "sk_test_51NotAKeyStripeKnowsAbout1234"


@pytest_asyncio.fixture(loop_scope="session")
async def fresh(
    database_url: str, signing_key: SigningKey, standin: StripeStandin
) -> AsyncIterator[LiveServer]:
    """A fresh install: no operator, no Stripe key; only where Stripe answers is in the environment."""
    settings = make_settings(database_url, stripe_api_base=standin.base_url)
    # No deliveries to a server that is going away.
    async with fresh_install(settings, signing_key, before_stop=standin.stop) as server:
        yield server


async def test_stripe_keys_connect_and_a_test_event_from_the_page(
    fresh: LiveServer, page_at: PageAt, standin: StripeStandin
) -> None:
    link = await first_run_link(fresh)
    page = await page_at(DESKTOP)
    await page.goto(link)
    await page.get_by_label("Email").fill("owner@example.com")
    await page.get_by_label("Password").fill("correct horse battery")
    await page.get_by_role("button", name="Create and open the dashboard").click()
    await page.wait_for_url(f"{fresh.url}/admin/setup")

    stripe = page.locator("#card-stripe")
    await stripe.get_by_label("Secret key").fill(WRONG)
    await stripe.get_by_label("Publishable key").fill("pk_test_browser")
    await stripe.get_by_role("button", name="Save").click()
    stripe = page.locator("#card-stripe")
    await expect(stripe.locator(".badge")).to_have_text("Failing")
    await expect(stripe.locator(".sentence")).to_have_text(
        "Invalid API Key provided: sk_test_" + "*" * (len(WRONG) - 12) + "1234"
    )

    await stripe.get_by_label("Secret key").fill(standin.secret_key)
    await stripe.get_by_role("button", name="Save").click()
    stripe = page.locator("#card-stripe")
    await expect(stripe.locator(".badge")).to_have_text("Set")
    await expect(stripe.locator(".sentence")).to_have_text(
        "Test mode: the keys work. Connect the webhook endpoint next."
    )

    await stripe.get_by_role("button", name="Check keys and connect").click()
    await expect(page.get_by_role("status")).to_contain_text("Connected")
    stripe = page.locator("#card-stripe")
    await expect(stripe.locator(".badge")).to_have_text("Verified")
    await expect(stripe.locator(".sentence")).to_contain_text("no event received yet")
    [endpoint] = standin.state.all("webhook_endpoint")
    assert endpoint["url"] == f"{fresh.url}/webhooks/stripe"
    assert endpoint["enabled_events"] == webhook_event_types()
    assert {p["lookup_key"] for p in standin.state.all("price")} >= {"pro_monthly"}
    content = await page.content()
    # Saved (the server accepts what Stripe signs with it) and never shown.
    assert endpoint["_hidden"]["secret"] not in content and standin.secret_key not in content

    await stripe.get_by_role("button", name="Send a test event").click()
    await expect(page.get_by_role("status")).to_contain_text("test event")
    await asyncio.to_thread(standin.events.wait_delivered)
    [delivery] = [d for d in standin.events.deliveries if d.event_type == "customer.deleted"]
    assert delivery.status == 200
    await page.reload()
    stripe = page.locator("#card-stripe")
    await expect(stripe.locator(".sentence")).to_have_text(
        re.compile(r"^Test mode: keys and webhook endpoint work; last event received \d+ s ago\.$")
    )
    await screenshot(page, "admin-setup-stripe", full_page=True)
