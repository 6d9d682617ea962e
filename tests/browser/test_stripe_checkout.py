"""Paying on the hosted Checkout page in a browser: from entitle's checkout URL to an active entitlement."""

from __future__ import annotations

import pytest
from playwright.async_api import expect

from tests.browser.conftest import (
    DESKTOP,
    PHONE,
    Live,
    PageAt,
    assert_no_horizontal_scroll,
    assert_only_host,
    requests_made,
    screenshot,
)
from tests.factories import bearer, eventually


@pytest.mark.parametrize("width", [PHONE, DESKTOP])
async def test_paying_on_checkout_lands_on_the_success_url_and_entitles(
    live: Live, page_at: PageAt, width: int
) -> None:
    session = await live.sign_up(f"checkout-{width}@example.com")
    checkout = await live.http.post(
        "/v1/billing/stripe/checkout", json={"product": "pro_monthly"}, headers=bearer(session)
    )
    assert checkout.status_code == 200, checkout.text
    url, session_id = checkout.json()["url"], checkout.json()["id"]

    page = await page_at(width)
    await page.goto(url)
    await expect(page.get_by_role("heading")).to_have_text("Subscribe to Pro, monthly")
    await expect(page.get_by_test_id("amount")).to_have_text("$9.99 per month")
    await expect(page.get_by_label("Card number")).to_have_value("4242 4242 4242 4242")
    await expect(page.get_by_role("link", name="Back")).to_have_attribute(
        "href", f"{live.url}/pricing?notice=checkout_canceled"
    )
    await assert_no_horizontal_scroll(page)
    await screenshot(page, "stripe-checkout")

    await page.get_by_role("button", name="Subscribe").click()
    await page.wait_for_url(f"{live.url}/checkout/success?session_id={session_id}")
    assert_only_host(requests_made(page), live.url, live.standin.base_url)

    async def active() -> bool:
        answer = await live.entitlements(session)
        return bool(answer["entitlements"]["pro"]["active"])

    await eventually(active, timeout=20, message="the payment never reached the entitlements answer")
    answer = await live.entitlements(session)
    assert answer["entitlements"]["pro"]["store"] == "stripe"
    assert answer["subscriptions"][0]["status"] == "active"
