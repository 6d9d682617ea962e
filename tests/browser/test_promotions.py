"""Paying with a promotion link in a real browser: /pricing?promo= shows the price after the code, the
code rides through sign-up into the stand-in's hosted Checkout (which charges the discounted amount), and
/account shows the discount."""

from __future__ import annotations

import re
import uuid

import pytest
import stripe
from playwright.async_api import expect

from entitle.providers.stripe.client import FormBodyHTTPXClient
from tests.browser.conftest import DESKTOP, PHONE, Live, PageAt, assert_only_host, requests_made, screenshot
from tests.browser.test_pages import check
from tests.factories import DEFAULT_PASSWORD


def make_code(live: Live, code: str) -> None:
    """LAUNCH20-style: 20% off for 3 months, made with the official SDK as a merchant would."""
    http = FormBodyHTTPXClient(allow_sync_methods=True)
    try:
        client = stripe.StripeClient(
            live.standin.secret_key, base_addresses={"api": live.standin.base_url}, http_client=http
        )
        coupon = client.v1.coupons.create(
            {"percent_off": 20, "duration": "repeating", "duration_in_months": 3}
        )
        client.v1.promotion_codes.create({"code": code, "promotion": {"type": "coupon", "coupon": coupon.id}})
    finally:
        http.close()  # type: ignore[no-untyped-call]


@pytest.mark.parametrize("width", [PHONE, DESKTOP])
async def test_a_promo_link_through_sign_up_and_checkout_to_the_discounted_plan(
    live: Live, page_at: PageAt, width: int
) -> None:
    code = f"LAUNCH{width}"
    make_code(live, code)
    page = await page_at(width)
    await page.goto(f"{live.url}/pricing?promo={code.lower()}")
    await expect(page.get_by_label("Promotion code")).to_have_value(code)
    await expect(page.locator("#promo-applied")).to_contain_text("20% off for 3 months")
    await expect(page.locator("#discount-pro_monthly")).to_contain_text("$7.99")
    await check(page, live, "pricing-promo")
    await page.get_by_role("button", name=re.compile("Subscribe to Pro, monthly")).click()

    await page.wait_for_url(re.compile(r"/account/sign-in\?next=%2Fpricing%3Fpromo%3D"))
    await page.locator("#sign-up-email").fill(f"promo-{width}-{uuid.uuid4().hex[:6]}@example.com")
    await page.locator("#sign-up-password").fill(DEFAULT_PASSWORD)
    await page.locator("#sign-up-password").press("Enter")

    await page.wait_for_url(f"{live.standin.base_url}/c/pay/*")
    await expect(page.locator(".due")).to_contain_text("Due today: $7.99")
    await expect(page.locator(".due")).to_contain_text(code)
    await screenshot(page, "stripe-checkout-promo")
    await page.get_by_role("button", name="Subscribe").click()
    await page.wait_for_url(f"{live.url}/checkout/success?product=pro_monthly&session_id=cs_*")
    await expect(page.locator("#landed")).to_be_visible(timeout=20_000)
    assert_only_host(requests_made(page), live.url, live.standin.base_url)

    before = len(requests_made(page))
    await page.goto(f"{live.url}/account")
    plan = page.locator("#subscription-1")
    await expect(plan.locator(".discount-applied")).to_contain_text(f"{code}: 20% off until ")
    await check(page, live, "account-promo", since=before)
    [paid] = [
        i for i in live.standin.state.all("invoice") if i["customer"] and i["amount_paid"] and i["discounts"]
    ]
    assert (paid["subtotal"], paid["amount_paid"]) == (999, 799)


async def test_a_wrong_code_typed_on_pricing_says_why(live: Live, page_at: PageAt) -> None:
    page = await page_at(PHONE)
    await page.goto(f"{live.url}/pricing")
    await page.get_by_label("Promotion code").fill("NOSUCHCODE")
    await page.get_by_role("button", name="Apply").click()
    await expect(page.locator("#promo-error")).to_contain_text("There is no promotion code NOSUCHCODE")
    await check(page, live, "pricing-promo-invalid")
