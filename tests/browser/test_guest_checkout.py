"""Pay first, the account after, in a real browser: a visitor pays from /pricing through the stand-in's hosted
Checkout and lands, signed up, on /account with the plan; and the mailed link (a real SMTP server) redeemed
into an account made with Google. The first test counts what the person does (clicks and fields typed)
beside today's flow (sign up first, then pay), and writes both to test-artifacts/steps.txt."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from playwright.async_api import Locator, Page, expect

from entitle.context import build_context
from entitle.services.delivery.mail import SmtpMailer, deliver_due_mail
from tests.browser.conftest import (
    ARTIFACTS,
    DESKTOP,
    PHONE,
    Live,
    PageAt,
    assert_no_horizontal_scroll,
    assert_only_host,
    requests_made,
    screenshot,
)
from tests.factories import DEFAULT_PASSWORD, eventually
from tests.standins.jwks_server import GOOGLE_WEB_CLIENT_ID, JwksStandin
from tests.standins.smtp import SmtpSink


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as running:
        yield running


@pytest.fixture
def idp() -> Iterator[JwksStandin]:
    with JwksStandin() as running:
        yield running


@pytest.fixture
def settings_overrides(sink: SmtpSink, idp: JwksStandin) -> dict[str, Any]:
    return {
        "guest_checkout": True,
        "smtp_url": sink.url,
        "google_client_ids": [GOOGLE_WEB_CLIENT_ID],
        "google_jwks_url": idp.url,
        "google_web_client_id": GOOGLE_WEB_CLIENT_ID,
        "google_auth_url": idp.authorize_url,
    }


@dataclass
class Steps:
    """What a person does: each click and each field typed into counts one."""

    clicks: int = 0
    fields: int = 0

    async def click(self, target: Locator) -> None:
        self.clicks += 1
        await target.click()

    async def fill(self, target: Locator, value: str) -> None:
        self.fields += 1
        await target.fill(value)

    def __str__(self) -> str:
        return f"{self.clicks} clicks + {self.fields} fields = {self.clicks + self.fields} steps"


async def fits(page: Page, name: str) -> None:
    """Kept as a screenshot, and fits the screen (the whole run is checked for other hosts at the end)."""
    await screenshot(page, name, full_page=True)
    await assert_no_horizontal_scroll(page)


def _record(name: str, steps: Steps) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with (ARTIFACTS / "steps.txt").open("a") as out:
        out.write(f"{name}: {steps}\n")
    print(f"{name}: {steps}")


@pytest.mark.parametrize("width", [PHONE, DESKTOP])
async def test_a_visitor_pays_from_pricing_and_lands_signed_up_on_the_account(
    live: Live, page_at: PageAt, width: int
) -> None:
    page = await page_at(width)
    steps = Steps()
    await page.goto(f"{live.url}/pricing")
    await steps.click(page.get_by_role("button", name="Subscribe to Pro, monthly"))

    # Stripe's page asks for the email (no account yet) and takes the card.
    await page.wait_for_url(f"{live.standin.base_url}/c/pay/*")
    await expect(page.get_by_role("heading")).to_have_text("Subscribe to Pro, monthly")
    await steps.fill(page.get_by_label("Email"), f"visitor-{width}@example.com")
    await screenshot(page, "guest-stripe-checkout")
    await steps.click(page.get_by_role("button", name="Subscribe"))

    # Back on the success page: paid, the address prefilled, one password field.
    await page.wait_for_url(f"{live.url}/checkout/success?*")
    await expect(page.locator("#guest-paid")).to_contain_text("Pro, monthly")
    await expect(page.locator("#guest-email")).to_have_value(f"visitor-{width}@example.com")
    await fits(page, "guest-checkout-success")
    await steps.fill(page.get_by_label("Choose a password"), DEFAULT_PASSWORD)
    await steps.click(page.get_by_role("button", name="Create account"))

    await page.wait_for_url(f"{live.url}/account?notice=claimed")
    await expect(page.get_by_role("status").first).to_contain_text("Your purchase is in your account")
    await expect(page.locator("main")).to_contain_text("Pro, monthly")
    await expect(page.locator("main")).to_contain_text("Renews on")
    assert_only_host(requests_made(page), live.url, live.standin.base_url)
    await fits(page, "guest-account-after-claim")
    assert (steps.clicks, steps.fields) == (3, 2)
    _record(f"pay first, the account after ({width}px)", steps)


async def test_todays_flow_sign_up_first_then_pay_for_comparison(live: Live, page_at: PageAt) -> None:
    """The same purchase as a visitor makes it with guest checkout off: sign up first, then pay."""
    page = await page_at(DESKTOP)
    steps = Steps()
    await page.goto(f"{live.url}/pricing")
    # With guest checkout on, a visitor would go to Stripe at once; this walks the sign-in page as before.
    await page.goto(f"{live.url}/account/sign-in?next=/pricing&product=pro_monthly")
    await steps.fill(page.locator("#sign-up-email"), "today@example.com")
    await steps.fill(page.locator("#sign-up-password"), DEFAULT_PASSWORD)
    await steps.click(page.get_by_role("button", name="Create account"))
    await page.wait_for_url(f"{live.standin.base_url}/c/pay/*")
    await steps.click(page.get_by_role("button", name="Subscribe"))
    await page.wait_for_url(f"{live.url}/checkout/success?*")
    await expect(page.locator("#landed")).to_be_visible(timeout=20_000)
    await steps.click(page.get_by_role("link", name="Go to your account"))
    await page.wait_for_url(f"{live.url}/account")
    await expect(page.locator("main")).to_contain_text("Pro, monthly")
    # The click on /pricing that led to the sign-in page counts too.
    steps.clicks += 1
    assert (steps.clicks, steps.fields) == (4, 2)
    _record("today: sign up first, then pay", steps)


async def _deliver_mail(live: Live) -> None:
    """The worker's mail step, through the real SMTP server (`entitle worker` does this every few seconds)."""
    settings = live.server.settings
    context = build_context(settings, signing_key=live.server.signing_key)
    try:
        await deliver_due_mail(context.database, SmtpMailer(settings.smtp_url.get_secret_value()), settings)  # type: ignore[union-attr]
    finally:
        await context.aclose()


async def test_the_mailed_link_is_redeemed_into_an_account_made_with_google(
    live: Live, page_at: PageAt, sink: SmtpSink, idp: JwksStandin
) -> None:
    # Paid as a visitor in some browser that was then closed: only the mail remains.
    started = await live.http.post("/v1/billing/stripe/checkout", json={"product": "pro_yearly"})
    assert started.status_code == 200, started.text
    live.standin.complete_checkout(started.json()["id"], email="pat@gmail.com")

    async def mailed() -> bool:
        await _deliver_mail(live)
        return bool(sink.to("pat@gmail.com"))

    await eventually(mailed, timeout=20, message="the redemption mail never arrived")
    [mail] = sink.to("pat@gmail.com")
    assert "Pro, yearly" in mail.subject
    link = mail.link("/redeem")
    assert link.startswith(f"{live.url}/redeem?token=")

    page = await page_at(PHONE)
    await page.goto(link)
    await expect(page.get_by_role("heading", level=1)).to_have_text("Add Pro, yearly to your account")
    await fits(page, "guest-redeem-link")
    await page.get_by_role("link", name="Continue with Google").click()
    # Google's page (the stand-in): the person agrees.
    await page.get_by_role("button", name="Continue").click()
    await page.wait_for_url(re.compile(re.escape(f"{live.url}/redeem?token=")))
    await expect(page.locator("#guest-paid")).to_contain_text("pat@gmail.com")
    await screenshot(page, "guest-redeem-confirm")
    await page.get_by_role("button", name="Add it to this account").click()

    await page.wait_for_url(f"{live.url}/account?notice=claimed")
    await expect(page.locator("main")).to_contain_text("Pro, yearly")
    await fits(page, "guest-redeemed-with-google")
    assert_only_host(requests_made(page), live.url, idp.url.removesuffix("/auth/keys"))
    # The link worked once: in another browser it says so.
    other = await page_at(DESKTOP)
    response = await other.goto(link)
    assert response is not None and response.status == 410
    await expect(other.locator("#guest-claimed")).to_be_visible()
