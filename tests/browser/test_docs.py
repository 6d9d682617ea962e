"""/docs in a browser: Swagger UI lists the API from the app's own assets, at phone and desktop widths."""

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


@pytest.mark.parametrize("width", [PHONE, DESKTOP])
async def test_docs_list_the_operations_from_this_host_alone(live: Live, page_at: PageAt, width: int) -> None:
    page = await page_at(width)
    await page.goto(live.url + "/docs")
    entitlements = page.locator(".opblock-get").filter(has_text="/v1/me/entitlements").first
    await expect(entitlements).to_be_visible()
    await expect(page.locator(".opblock").first).to_be_visible()
    assert await page.locator(".opblock").count() > 20
    await expect(page.locator(".errors-wrapper")).to_have_count(0)
    await assert_no_horizontal_scroll(page)
    assert_only_host(requests_made(page), live.url)
    assert any(url.endswith("/docs/assets/swagger-ui-bundle.js") for url in requests_made(page))
    await screenshot(page, "docs")
