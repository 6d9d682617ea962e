"""The hosted pages and the dashboard in a real browser, at phone and desktop widths.

Every page: fits the screen (no sideways scrolling), asks no other host for anything, and is kept as a
screenshot in test-artifacts/screenshots/. Then the journeys a person makes, with mouse and keyboard.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from playwright.async_api import Page, expect

from entitle.context import build_context
from entitle.services.identity import operators
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
from tests.factories import DEFAULT_PASSWORD


async def make_operator(live: Live, email: str) -> None:
    await live.sign_up(email)
    context = build_context(live.server.settings, signing_key=live.server.signing_key)
    try:
        async with context.database.transaction() as db:
            await operators.add_operator(db, email, added_by="cli:test")
    finally:
        await context.aclose()


async def sign_in(page: Page, live: Live, email: str, next_path: str = "/account") -> None:
    await page.goto(f"{live.url}/account/sign-in?next={next_path}")
    await page.get_by_label("Email").first.fill(email)
    await page.locator("#sign-in-password").fill(DEFAULT_PASSWORD)
    await page.get_by_role("button", name="Sign in", exact=True).click()
    await page.wait_for_url(f"{live.url}{next_path}*")


async def visit(page: Page, live: Live, path: str, name: str) -> None:
    """Open a page and check what every page must do at every width: fit the screen, load nothing from
    another host (counting what this page asked for, not the pages before it), and be kept as a
    screenshot."""
    before = len(requests_made(page))
    response = await page.goto(live.url + path)
    assert response is not None and response.status == 200, (path, response and response.status)
    await check(page, live, name, since=before)


async def check(page: Page, live: Live, name: str, *, since: int = 0) -> None:
    await screenshot(page, name, full_page=True)
    await assert_no_horizontal_scroll(page)
    assert_only_host(requests_made(page)[since:], live.url)


@pytest.mark.parametrize("width", [PHONE, DESKTOP])
async def test_every_customer_page_fits_and_loads_only_from_entitle(
    live: Live, page_at: PageAt, width: int
) -> None:
    page = await page_at(width)
    for path, name in [
        ("/pricing", "pricing"),
        ("/account/sign-in", "sign-in"),
        ("/account/forgot-password", "forgot-password"),
        ("/account/reset-password?token=t0k", "reset-password"),
        ("/account/verify-email?token=t0k", "verify-email"),
    ]:
        await visit(page, live, path, name)
    # Signed in, with a plan: the account page and what hangs off it.
    await sign_in(page, live, (await live.sign_up(f"pages-{width}@example.com"))["account"]["email"])
    await subscribe_on_the_page(page, live)
    for path, name in [
        ("/account", "account"),
        ("/account/change-plan?product=pro_yearly", "change-plan"),
        ("/account/delete", "delete-account"),
        ("/pricing", "pricing-subscribed"),
    ]:
        await visit(page, live, path, name)


async def subscribe_on_the_page(page: Page, live: Live) -> None:
    await page.goto(live.url + "/pricing")
    await page.get_by_role("button", name=re.compile("Subscribe to Pro, monthly")).click()
    await page.get_by_role("button", name="Subscribe").click()  # the stand-in's Checkout page
    await page.wait_for_url(f"{live.url}/checkout/success*")
    await expect(page.locator("#landed")).to_be_visible(timeout=20_000)


@pytest.mark.parametrize("width", [PHONE, DESKTOP])
async def test_from_pricing_through_sign_up_checkout_and_success_to_the_account_page(
    live: Live, page_at: PageAt, width: int
) -> None:
    page = await page_at(width)
    await page.goto(live.url + "/pricing")
    await expect(page.get_by_text("$9.99")).to_be_visible()
    await page.get_by_role("button", name=re.compile("Subscribe to Pro, monthly")).click()

    # Signed out: sign-in first, with the plan kept; a new person creates an account, by keyboard.
    await page.wait_for_url(re.compile(r"/account/sign-in\?next=%2Fpricing&product=pro_monthly"))
    await screenshot(page, "sign-in-with-plan")
    email = f"journey-{width}-{uuid.uuid4().hex[:6]}@example.com"
    await page.locator("#sign-up-email").focus()
    await page.keyboard.type(email)
    await page.keyboard.press("Tab")
    await expect(page.locator("#sign-up-password")).to_be_focused()
    await page.keyboard.type(DEFAULT_PASSWORD)
    await page.keyboard.press("Enter")

    # Straight on to Stripe Checkout (the stand-in's page), and back.
    await page.wait_for_url(f"{live.standin.base_url}/c/pay/*")
    await expect(page.get_by_test_id("amount")).to_have_text("$9.99 per month")
    await page.get_by_role("button", name="Subscribe").click()
    await page.wait_for_url(f"{live.url}/checkout/success?product=pro_monthly&session_id=cs_*")
    # The page learns of the purchase from the stream, without reloading.
    await expect(page.locator("#landed")).to_be_visible(timeout=20_000)
    await expect(page.locator("#landed")).to_contain_text("Your plan is active")
    assert_only_host(requests_made(page), live.url, live.standin.base_url)
    await screenshot(page, "checkout-success")

    await page.get_by_role("link", name="Go to your account").click()
    await page.wait_for_url(f"{live.url}/account")
    plan = page.locator("#subscription-1")
    await expect(plan.locator(".plan-name")).to_have_text("Pro, monthly")
    await expect(plan.locator(".card")).to_have_text("Visa •••• 4242")
    await expect(plan.locator(".status")).to_contain_text("Renews on")
    await visit(page, live, "/account", "account-after-checkout")


@pytest.mark.parametrize("width", [PHONE, DESKTOP])
async def test_the_sign_in_form_works_with_the_keyboard_alone(
    live: Live, page_at: PageAt, width: int
) -> None:
    session = await live.sign_up(f"keys-{width}@example.com")
    page = await page_at(width)
    await page.goto(live.url + "/account/sign-in")
    # The first Tab reaches the skip link; the focus order then follows the page.
    await page.keyboard.press("Tab")
    await expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    await page.locator("#sign-in-email").focus()
    await page.keyboard.type(session["account"]["email"])
    await page.keyboard.press("Tab")
    await expect(page.locator("#sign-in-password")).to_be_focused()
    await page.keyboard.type("not the password")
    await page.keyboard.press("Enter")
    await expect(page.locator("#sign-in-error")).to_be_visible()
    await page.locator("#sign-in-password").focus()
    await page.keyboard.type(DEFAULT_PASSWORD)
    await page.keyboard.press("Enter")
    await page.wait_for_url(f"{live.url}/account")
    await expect(page.locator("#account-email")).to_have_text(session["account"]["email"])


@pytest.mark.parametrize("width", [PHONE, DESKTOP])
async def test_an_operator_grants_a_month_and_the_customers_page_shows_it(
    live: Live, page_at: PageAt, width: int
) -> None:
    customer_email = f"customer-{width}@example.com"
    customer = await live.sign_up(customer_email)
    await make_operator(live, f"ops-{width}@example.com")

    ops = await page_at(width)
    await sign_in(ops, live, f"ops-{width}@example.com", "/admin")
    await visit(ops, live, "/admin", "admin-home")
    await ops.get_by_label("Find a customer").fill(customer_email)
    await ops.get_by_label("Find a customer").press("Enter")
    await ops.wait_for_url(f"{live.url}/admin/accounts/{customer['account']['id']}")
    await ops.get_by_label("For how many days").fill("30")
    await ops.get_by_label("Reason (kept in the account's history)").fill("sorry about the outage")
    await ops.get_by_role("button", name="Grant", exact=True).click()
    await expect(ops.get_by_role("status")).to_contain_text("The grant is in place")
    await expect(ops.locator("#entitlement-pro")).to_contain_text("yes")
    await expect(ops.locator("#log")).to_be_visible()
    await expect(ops.get_by_text(f"by ops-{width}@example.com").first).to_be_visible()
    await visit(ops, live, f"/admin/accounts/{customer['account']['id']}", "admin-account")

    person = await page_at(width)
    await sign_in(person, live, customer_email)
    await expect(person.locator("#gift-pro")).to_contain_text("A gift from the")
    await expect(person.locator("#gift-pro")).to_contain_text("until")
    await visit(person, live, "/account", "account-gift")
    answer: dict[str, Any] = await live.entitlements(customer)
    assert answer["entitlements"]["pro"]["active"] and answer["entitlements"]["pro"]["store"] == "promotional"


@pytest.mark.parametrize("width", [PHONE, DESKTOP])
async def test_every_dashboard_page_fits_and_loads_only_from_entitle(
    live: Live, page_at: PageAt, width: int
) -> None:
    await make_operator(live, f"ops-{width}@example.com")
    # Something to report: one paying customer.
    page = await page_at(width)
    await sign_in(page, live, (await live.sign_up(f"payer-{width}@example.com"))["account"]["email"])
    await subscribe_on_the_page(page, live)

    ops = await page_at(width)
    await sign_in(ops, live, f"ops-{width}@example.com", "/admin")
    for path, name in [
        ("/admin/reports", "admin-reports"),
        ("/admin/provider-events", "admin-provider-events"),
        ("/admin/deliveries", "admin-deliveries"),
        (f"/admin/accounts?q=payer-{width}@example.com", "admin-customer"),
    ]:
        await visit(ops, live, path, name)
    # The stand-in is Stripe's test mode: the payer is in the sandbox report, not in production's.
    await ops.goto(live.url + "/admin/reports")
    await expect(ops.locator("#active-total")).to_have_text("0")
    await ops.goto(live.url + "/admin/reports?environment=sandbox")
    await expect(ops.locator("#active-total")).to_have_text("1")
    await expect(ops.locator("#mrr-usd")).to_have_text("$9.99")
    await expect(ops.locator("svg.chart").first).to_be_visible()
