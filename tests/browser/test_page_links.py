"""An app's access token opens the hosted account page signed in, through a single-use page link."""

from __future__ import annotations

import pytest
from playwright.async_api import expect

from tests.browser.conftest import DESKTOP, PHONE, Live, PageAt, screenshot
from tests.factories import bearer


@pytest.mark.parametrize("width", [PHONE, DESKTOP])
async def test_a_page_link_opens_the_account_signed_in_once(live: Live, page_at: PageAt, width: int) -> None:
    session = await live.sign_up(f"app-{width}@example.com")
    answer = await live.http.post("/v1/me/page-link", json={"page": "account"}, headers=bearer(session))
    assert answer.status_code == 200, answer.text
    link = answer.json()["url"]
    token = link.partition("token=")[2]

    # As SFSafariViewController or window.location would: the link, then the page, signed in.
    page = await page_at(width)
    await page.goto(link)
    assert page.url == f"{live.url}/account"
    assert token not in page.url
    # The redirect left no history entry holding the link: one step back is the blank page it opened on.
    await page.go_back()
    assert page.url == "about:blank"
    await page.go_forward()
    assert page.url == f"{live.url}/account"
    await expect(page.locator("#account-email")).to_have_text(f"app-{width}@example.com")
    await expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    await screenshot(page, "page-link-account")

    # The same link in another browser signs nobody in.
    again = await page_at(width)
    await again.goto(link)
    assert again.url.startswith(f"{live.url}/account/sign-in?")
    assert token not in again.url
    await expect(again.get_by_role("status")).to_contain_text("already used")
    await expect(again.locator("#account-email")).to_have_count(0)
    await screenshot(again, "page-link-used")
