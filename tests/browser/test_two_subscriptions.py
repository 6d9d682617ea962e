"""A person with a plan and an add-on, in a real browser: the add-on is bought as an add-on, and
canceling one subscription on /account leaves the other untouched."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page, expect

from tests.browser.conftest import DESKTOP, PHONE, Live, PageAt, requests_made, screenshot
from tests.browser.test_pages import check, sign_in
from tests.factories import eventually
from tests.web.test_billing_stripe_several import PLAN_AND_ADD_ON, plan_at_stripe


@pytest.fixture
def settings_overrides(tmp_path: Path) -> dict[str, Any]:
    catalog = tmp_path / "catalog.toml"
    catalog.write_text(PLAN_AND_ADD_ON)
    return {"catalog": catalog}


async def pay_on_checkout(page: Page, live: Live, product_name: str) -> None:
    await page.get_by_role("button", name="Subscribe").click()  # the stand-in's Checkout page
    await page.wait_for_url(f"{live.url}/checkout/success*")
    # The success page waits for what was just bought, not for a plan the person already had.
    await expect(page.locator("#landed")).to_be_visible(timeout=20_000)
    await expect(page.locator("#landed")).to_contain_text(product_name)


@pytest.mark.parametrize("width", [PHONE, DESKTOP])
async def test_canceling_the_add_on_leaves_the_plan_untouched(
    live: Live, page_at: PageAt, width: int
) -> None:
    page = await page_at(width)
    session = await live.sign_up(f"two-{width}@example.com")
    await sign_in(page, live, session["account"]["email"])
    await page.goto(live.url + "/pricing")
    await page.get_by_role("button", name=re.compile("Subscribe to Pro, monthly")).click()
    await pay_on_checkout(page, live, "Pro, monthly")

    # Storage grants something else: an add-on, never a switch of the Pro subscription.
    await page.goto(live.url + "/pricing")
    storage_offer = page.locator('[aria-labelledby="option-storage_monthly"]')
    await expect(storage_offer.get_by_role("link", name="Switch to this plan")).to_have_count(0)
    await expect(page.locator('[aria-labelledby="option-pro_yearly"]').get_by_role("link")).to_have_text(
        "Switch to this plan"
    )
    await screenshot(page, "pricing-with-add-on", full_page=True)
    await storage_offer.get_by_role("button", name="Add Storage, monthly").click()
    await pay_on_checkout(page, live, "Storage, monthly")

    async def both_active() -> dict[str, Any] | None:
        answer = await live.entitlements(session)
        granted = answer["entitlements"]
        return answer if granted["pro"]["active"] and granted["storage"]["active"] else None

    answer = await eventually(both_active)
    ids = {sub["product"]: sub["id"] for sub in answer["subscriptions"]}

    since = len(requests_made(page))
    await page.goto(live.url + "/account")
    pro_card = page.locator(f'[data-subscription-id="{ids["pro_monthly"]}"]')
    storage_card = page.locator(f'[data-subscription-id="{ids["storage_monthly"]}"]')
    await expect(pro_card.locator(".plan-name")).to_have_text("Pro, monthly")
    await expect(storage_card.locator(".plan-name")).to_have_text("Storage, monthly")
    await storage_card.get_by_role("button", name="Cancel renewal of Storage, monthly").click()
    await page.wait_for_url(f"{live.url}/account?notice=canceled")

    await expect(storage_card.locator(".status")).to_contain_text("will not renew")
    await expect(storage_card.get_by_role("button", name=re.compile("^Resume"))).to_be_visible()
    await expect(pro_card.locator(".status")).to_contain_text("Renews on")
    await expect(pro_card.get_by_role("button", name=re.compile("^Cancel renewal"))).to_be_visible()
    await check(page, live, "account-two-subscriptions", since=since)
    assert plan_at_stripe(live.standin, ids["storage_monthly"]) == ("storage_monthly", True)
    assert plan_at_stripe(live.standin, ids["pro_monthly"]) == ("pro_monthly", False)
