"""Buying a credit pack on /pricing in a real browser: quantity picker, the stand-in's hosted Checkout in
payment mode, the success page waiting for that purchase, the balance in the answer, and the same balance
and purchase on /account in the same browser."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import expect

from tests.browser.conftest import DESKTOP, PHONE, Live, PageAt, assert_only_host, requests_made, screenshot
from tests.browser.test_pages import check, sign_in
from tests.factories import bearer, eventually


@pytest.mark.parametrize("width", [PHONE, DESKTOP])
async def test_buying_three_credit_packs_on_pricing(live: Live, page_at: PageAt, width: int) -> None:
    session = await live.sign_up(f"credits-{width}@example.com")
    page = await page_at(width)
    await sign_in(page, live, session["account"]["email"], next_path="/pricing")
    await check(page, live, "pricing-one-time")
    pack = page.locator("#option-credits_100").locator("xpath=..")
    await expect(pack).to_contain_text("$4.99")
    await pack.get_by_label("Quantity").select_option("3")
    await pack.get_by_role("button", name=re.compile("Buy 100 credits")).click()

    # The stand-in's hosted Checkout, in payment mode.
    await page.wait_for_url(f"{live.standin.base_url}/c/pay/*")
    await expect(page.get_by_role("heading")).to_have_text("Pay for 100 credits")
    await expect(page.get_by_test_id("amount")).to_contain_text("$14.97")
    await screenshot(page, "stripe-checkout-payment")
    await page.get_by_role("button", name="Pay").click()

    await page.wait_for_url(f"{live.url}/checkout/success?product=credits_100&session_id=cs_*")
    # The page hears of this very purchase on the stream, without reloading.
    await expect(page.locator("#landed")).to_be_visible(timeout=20_000)
    await expect(page.locator("#landed")).to_contain_text("100 credits")
    assert_only_host(requests_made(page), live.url, live.standin.base_url)
    await screenshot(page, "checkout-success-one-time")

    async def credited() -> bool:
        return (await live.entitlements(session)).get("balances") == {"credits": 300}

    await eventually(credited, timeout=20, message="the credits never reached the answer")
    answer = await live.entitlements(session)
    assert [(p["product"], p["quantity"]) for p in answer["purchases"]] == [("credits_100", 3)]
    ledger = await live.http.get("/v1/me/balances/credits/transactions", headers=bearer(session))
    if ledger.status_code == 200:  # the ledger route, where this branch has it
        assert [t["amount"] for t in ledger.json()["transactions"]] == [300]

    # The person opens their account page in the same browser: the balance and the purchase are there.
    before = len(requests_made(page))
    response = await page.goto(f"{live.url}/account")
    assert response is not None and response.status == 200
    balance = page.locator("#balance-credits")
    await expect(balance.get_by_role("rowheader")).to_have_text("Credits")
    await expect(balance.locator("td.amount")).to_have_text("300")
    await expect(balance.locator("td.amount")).not_to_have_class(re.compile(r"\bbad\b"))
    await expect(page.locator("[id^=negative-]")).to_have_count(0)
    bought = page.get_by_role("article", name="100 credits")
    await expect(bought.locator(".quantity")).to_have_text("3")
    await expect(bought.locator(".credited")).to_have_text("300 Credits")
    await expect(bought.locator(".pill.bad")).to_have_count(0)
    await check(page, live, "account-balance", since=before)
