"""With Stripe not configured, the hosted pages sell nothing and never name a setting to a customer.

The API and /admin keep naming the setting (tests/web/test_unconfigured.py): they are read by whoever
runs the server. A person on /pricing or /account reads a plain sentence instead.
"""

from __future__ import annotations

import html
import re
import uuid

import httpx
import pytest

from entitle.context import AppContext
from entitle.services.access.subscriptions import apply_subscription_state
from tests.factories import DEFAULT_PASSWORD, register, stripe_subscription

PAYMENTS_OFF = "Subscriptions can't be bought on the web right now."
BILLING_OFF = "Billing can't be managed on the web right now."


def words(page: httpx.Response) -> str:
    """The page as a person reads it (entities decoded: `can&#39;t` is "can't")."""
    return html.unescape(page.text)


def csrf_of(page: httpx.Response) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


async def signed_up(client: httpx.AsyncClient, email: str = "pat@example.com") -> uuid.UUID:
    """An account, signed in on the pages; its id."""
    session = await register(client, email)
    page = await client.get("/account/sign-in")
    answer = await client.post(
        "/account/sign-in", data={"csrf_token": csrf_of(page), "email": email, "password": DEFAULT_PASSWORD}
    )
    assert answer.status_code == 303, answer.text
    return uuid.UUID(session["account"]["id"])


def assert_offers_nothing_to_buy(page: httpx.Response) -> None:
    assert 'action="/pricing/subscribe"' not in page.text
    assert "Start free trial" not in page.text and ">Subscribe" not in page.text
    assert "Switch to this plan" not in page.text


async def test_pricing_shows_the_plans_without_a_button_and_says_why(client: httpx.AsyncClient) -> None:
    for who in ("visitor", "signed in"):
        if who == "signed in":
            await signed_up(client)
        page = await client.get("/pricing")
        assert page.status_code == 200, who
        # The plans are there to read, with their prices...
        assert "Pro, monthly" in page.text and "$9.99" in page.text and "$99.99" in page.text
        # ...but nothing to press, and a sentence a customer understands.
        assert_offers_nothing_to_buy(page)
        assert 'id="payments-off"' in page.text and PAYMENTS_OFF in words(page)
        # The sample catalog sells the same plans in the iPhone app.
        assert "You can subscribe in the iPhone app." in words(page)
        assert "ENTITLE_" not in page.text


async def test_a_crafted_subscribe_post_answers_the_sentence_not_the_setting(
    client: httpx.AsyncClient,
) -> None:
    # A visitor: no detour through signing in for something that cannot be bought.
    page = await client.get("/account/sign-in")
    fields = {"csrf_token": csrf_of(page), "product": "pro_monthly"}
    visitor = await client.post("/pricing/subscribe", data=fields)
    assert visitor.status_code == 503
    assert PAYMENTS_OFF in words(visitor) and "ENTITLE_" not in visitor.text
    assert_offers_nothing_to_buy(visitor)

    await signed_up(client)
    page = await client.get("/account")
    fields = {"csrf_token": csrf_of(page), "product": "pro_yearly"}
    member = await client.post("/pricing/subscribe", data=fields)
    assert member.status_code == 503
    assert 'id="error"' in member.text and PAYMENTS_OFF in words(member)
    assert "ENTITLE_" not in member.text
    assert_offers_nothing_to_buy(member)


async def test_the_choice_carried_through_sign_in_meets_the_sentence(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    # A link to a plan from before payments were turned off: signing up lands on the same words.
    page = await client.get("/account/sign-in?next=/pricing&product=pro_monthly")
    assert "ENTITLE_" not in page.text
    answer = await client.post(
        "/account/sign-up",
        data={
            "csrf_token": csrf_of(page),
            "email": "sam@example.com",
            "password": DEFAULT_PASSWORD,
            "product": "pro_monthly",
        },
    )
    assert answer.status_code == 503
    assert PAYMENTS_OFF in words(answer) and "ENTITLE_" not in answer.text
    # The operator finds the setting in the log.
    assert "ENTITLE_STRIPE_SECRET_KEY" in caplog.text


@pytest.mark.parametrize(
    "settings_overrides", [{"google_web_client_id": None, "apple_signin_web_client_id": None}], indirect=True
)
async def test_no_customer_page_names_a_setting(client: httpx.AsyncClient, context: AppContext) -> None:
    pages: dict[str, httpx.Response] = {}
    for path in (
        "/pricing",
        "/account/sign-in",
        "/account/sign-in?next=/pricing&product=pro_yearly",
        "/account/sign-in/apple",
        "/account/sign-in/google",
        "/account/forgot-password",
        "/account/reset-password?token=x",
        "/account/verify-email?token=x",
        "/checkout/success?session_id=cs_test_1",
    ):
        pages[path] = await client.get(path)
    # The sign-in methods that are off say so in words.
    assert pages["/account/sign-in/google"].status_code == 503
    assert "Sign in with Google isn't available right now." in words(pages["/account/sign-in/google"])

    account_id = await signed_up(client)
    # A subscription paid on the web before the operator turned payments off: its buttons must explain.
    async with context.database.sessionmaker() as db:
        await apply_subscription_state(db, stripe_subscription(account_id))
        await db.commit()
    for path in (
        "/pricing",
        "/account",
        "/account/change-plan?product=pro_yearly",
        "/account/delete",
        "/checkout/success?session_id=cs_test_1",
    ):
        pages[f"signed in {path}"] = await client.get(path)
    token = csrf_of(await client.get("/account/delete"))
    for action in (
        "/pricing/subscribe",
        "/account/billing",
        "/account/subscription/cancel",
        "/account/subscription/resume",
        "/account/change-plan",
    ):
        fields = {"csrf_token": token, "product": "pro_yearly"}
        pages[f"POST {action}"] = await client.post(action, data=fields)

    for name, page in pages.items():
        assert page.status_code < 500 or page.status_code == 503, (name, page.status_code)
        assert "ENTITLE_" not in page.text, (name, page.text)
        assert "not configured" not in page.text, name
    assert BILLING_OFF in words(pages["POST /account/subscription/cancel"])
    assert BILLING_OFF in words(pages["signed in /account/change-plan?product=pro_yearly"])
