"""The first run with Google in a browser: the one-time link's page offers "Continue with Google" when
Google sign-in is configured (as the sign-in page does), and the identity that comes back is made the
first operator once the person confirms; the link then works no more."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio
from playwright.async_api import expect

from entitle.context import build_context
from entitle.services.identity import operators
from entitle.services.identity.tokens import SigningKey
from tests.browser.conftest import (
    DESKTOP,
    PHONE,
    PageAt,
    assert_only_host,
    first_run_link,
    fresh_install,
    requests_made,
    screenshot,
)
from tests.conftest import LiveServer, make_settings
from tests.standins.jwks_server import GOOGLE_WEB_CLIENT_ID, JwksStandin


@pytest.fixture
def idp() -> Iterator[JwksStandin]:
    with JwksStandin() as running:
        yield running


@pytest_asyncio.fixture(loop_scope="session")
async def fresh(database_url: str, signing_key: SigningKey, idp: JwksStandin) -> AsyncIterator[LiveServer]:
    """A fresh install with Google sign-in configured for the web (the stand-in) and no operator."""
    settings = make_settings(
        database_url,
        google_client_ids=[GOOGLE_WEB_CLIENT_ID],
        google_jwks_url=idp.url,
        google_web_client_id=GOOGLE_WEB_CLIENT_ID,
        google_auth_url=idp.authorize_url,
    )
    async with fresh_install(settings, signing_key) as server:
        yield server


async def test_the_first_operator_made_with_google(
    fresh: LiveServer, page_at: PageAt, idp: JwksStandin
) -> None:
    link = await first_run_link(fresh)
    page = await page_at(PHONE)
    await page.goto(link)
    # Apple is not configured here: only Google's button.
    await expect(page.get_by_role("link", name="Continue with Apple")).to_have_count(0)
    await screenshot(page, "first-run-with-google")
    await page.get_by_role("link", name="Continue with Google").click()
    # Google's page (the stand-in): the person agrees; the link's token never went there.
    await page.get_by_role("button", name="Continue").click()
    [authorize] = idp.authorize_requests
    token = link.split("token=", 1)[1]
    assert token not in str(authorize)

    await page.wait_for_url(f"{fresh.url}/admin/first-run/finish")
    await expect(page.locator("#first-run-who")).to_contain_text("pat@gmail.com")
    await screenshot(page, "first-run-finish")
    await page.get_by_role("button", name="Make this account the operator").click()
    await page.wait_for_url(f"{fresh.url}/admin/setup")
    await expect(page.locator("#card-stripe")).to_be_visible()
    assert_only_host(requests_made(page), fresh.url, idp.url.removesuffix("/auth/keys"))

    context = build_context(fresh.settings, signing_key=fresh.signing_key)
    try:
        async with context.database.transaction() as db:
            [(operator, _row)] = await operators.list_operators(db)
    finally:
        await context.aclose()
    assert operator.email == "pat@gmail.com"

    # The link is spent: in another browser it says so, and offers no button.
    other = await page_at(DESKTOP)
    response = await other.goto(link)
    assert response is not None and response.status == 410
    await expect(other.locator("#first-run-used")).to_be_visible()
    await expect(other.get_by_role("link", name="Continue with Google")).to_have_count(0)


async def test_back_from_google_without_the_link_makes_no_operator(
    fresh: LiveServer, page_at: PageAt
) -> None:
    await first_run_link(fresh)
    page = await page_at(DESKTOP)
    # Someone who never had the link, signed in with Google, cannot finish a first run.
    await page.goto(f"{fresh.url}/account/sign-in/google?next=/admin/first-run/finish")
    await page.get_by_role("button", name="Continue").click()
    await page.wait_for_url(f"{fresh.url}/admin/first-run/finish")
    await expect(page.locator("#first-run-used")).to_be_visible()
    await expect(page.get_by_role("button", name="Make this account the operator")).to_have_count(0)
