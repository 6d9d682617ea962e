"""Trials without a card (`trial_requires_card = false`): Checkout asks for no payment method, the person
is mailed three days before the end with a link to add one, and without one the trial ends, uncharged,
with its access; with one it converts and charges as usual."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from entitle.context import AppContext
from entitle.core.models.events import AccountEvent
from entitle.core.models.mail import OutboundMail
from entitle.services.delivery.mail import render
from tests.factories import DEFAULT_PASSWORD, bearer
from tests.providers.stripe.conftest import deliver_all, stripe_settings
from tests.standins.stripe import StripeStandin
from tests.web.test_pages import csrf_of, sign_up

pytestmark = pytest.mark.usefixtures("pushed")

REMINDER = "trial_ending_add_card"

CATALOG = """
[entitlements.pro]

[products.pro_monthly]
name = "Pro, monthly"
entitlements = ["pro"]
stripe.lookup_key = "pro_monthly"
stripe.unit_amount = 999
stripe.currency = "usd"
stripe.interval = "month"
stripe.trial_days = 14
stripe.trial_requires_card = false

[products.pro_yearly]
name = "Pro, yearly"
entitlements = ["pro"]
stripe.lookup_key = "pro_yearly"
stripe.unit_amount = 9999
stripe.currency = "usd"
stripe.interval = "year"
stripe.trial_days = 7
"""


@pytest.fixture
def settings_overrides(standin: StripeStandin, tmp_path: Path) -> dict[str, Any]:
    catalog = tmp_path / "catalog.toml"
    catalog.write_text(CATALOG)
    return stripe_settings(standin) | {"catalog": str(catalog), "app_name": "Acme Notes"}


async def _start_trial(client: httpx.AsyncClient, standin: StripeStandin) -> tuple[dict[str, str], str]:
    """Signed up on the pages (and in the API), the trial started on Checkout without a card."""
    await sign_up(client, "pat@example.com")
    login = await client.post(
        "/v1/auth/login", json={"email": "pat@example.com", "password": DEFAULT_PASSWORD}
    )
    auth = bearer(login.json())
    pricing = await client.get("/pricing")
    to_stripe = await client.post(
        "/pricing/subscribe", data={"csrf_token": csrf_of(pricing), "product": "pro_monthly"}
    )
    assert to_stripe.status_code == 303, to_stripe.text
    [session] = standin.state.all("checkout.session")
    completed = standin.complete_checkout(session["id"])
    await deliver_all(client, standin)
    return auth, str(completed["subscription"])


async def _answer(client: httpx.AsyncClient, auth: dict[str, str]) -> dict[str, Any]:
    body: dict[str, Any] = (await client.get("/v1/me/entitlements", headers=auth)).json()
    return body


async def test_checkout_collects_no_card_only_for_a_trial_that_does_not_need_one(
    client: httpx.AsyncClient, standin: StripeStandin
) -> None:
    auth = bearer(
        (
            await client.post(
                "/v1/auth/register", json={"email": "a@example.com", "password": DEFAULT_PASSWORD}
            )
        ).json()
    )
    started = await client.post("/v1/billing/stripe/checkout", json={"product": "pro_monthly"}, headers=auth)
    assert started.status_code == 200, started.text
    session = standin.state.get(started.json()["id"], "checkout.session")
    assert session["payment_method_collection"] == "if_required"
    assert session["_subscription_data"]["trial_period_days"] == "14"
    assert session["_subscription_data"]["trial_settings"] == {
        "end_behavior": {"missing_payment_method": "cancel"}
    }

    other = await client.post("/v1/billing/stripe/checkout", json={"product": "pro_yearly"}, headers=auth)
    session = standin.state.get(other.json()["id"], "checkout.session")
    # Stripe's default: a card, even though nothing is due today.
    assert session["payment_method_collection"] == "always"
    assert "trial_settings" not in session["_subscription_data"]

    catalog = (await client.get("/v1/catalog")).json()
    products = (
        {p["key"]: p for p in catalog["products"]}
        if isinstance(catalog["products"], list)
        else catalog["products"]
    )
    assert products["pro_monthly"]["stripe"]["trial_requires_card"] is False
    assert products["pro_yearly"]["stripe"]["trial_requires_card"] is True


async def test_a_trial_without_a_card_ends_uncharged_and_takes_access_with_it(
    client: httpx.AsyncClient, standin: StripeStandin, context: AppContext
) -> None:
    pricing = await client.get("/pricing")
    assert "14-day free trial, no card needed" in pricing.text and "7-day free trial</li>" in pricing.text
    auth, sub_id = await _start_trial(client, standin)
    sub = standin.subscription(sub_id)
    assert sub["status"] == "trialing" and sub["default_payment_method"] is None
    assert standin.state.all("payment_method") == []
    answer = await _answer(client, auth)
    assert answer["entitlements"]["pro"]["active"] is True
    page = await client.get("/account")
    assert "Free trial, no card yet:" in page.text and 'href="/account/payment-method"' in page.text

    standin.trial_will_end(sub_id)
    await deliver_all(client, standin)
    async with context.database.sessionmaker() as db:
        [mail] = (await db.scalars(select(OutboundMail).where(OutboundMail.template == REMINDER))).all()
    assert mail.template == "trial_ending_add_card" and mail.to == "pat@example.com"
    message = render(mail.template, mail.data, context.settings)
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "Your free trial of Pro, monthly ends on" in text
    assert "http://testserver/account/payment-method\n" in text
    assert message["Subject"].startswith("Your Acme Notes trial ends on")

    standin.end_trial(sub_id)
    await deliver_all(client, standin)
    assert standin.subscription(sub_id)["status"] == "canceled"
    assert standin.state.all("charge") == []
    answer = await _answer(client, auth)
    assert answer["entitlements"]["pro"]["active"] is False
    async with context.database.sessionmaker() as db:
        types = set((await db.scalars(select(AccountEvent.type))).all())
    assert "payment.succeeded" not in types


async def test_a_card_added_from_the_mails_link_converts_the_trial(
    client: httpx.AsyncClient, standin: StripeStandin, context: AppContext
) -> None:
    auth, sub_id = await _start_trial(client, standin)
    # The link opens the sign-in page first in a browser that is not signed in.
    visitor = httpx.AsyncClient(transport=client._transport, base_url=str(client.base_url))
    async with visitor:
        away = await visitor.get("/account/payment-method")
    assert away.status_code == 303
    assert away.headers["location"] == "/account/sign-in?next=%2Faccount%2Fpayment-method"

    to_stripe = await client.get("/account/payment-method")
    assert to_stripe.status_code == 303 and to_stripe.headers["location"].startswith(
        "https://billing.stripe.com/"
    )
    [portal] = standin.state.all("billing_portal.session")
    assert portal["flow"]["type"] == "payment_method_update"
    back = portal["flow"]["after_completion"]["redirect"]["return_url"]
    assert back == "http://testserver/account/payment-method/added"

    standin.add_card_in_portal(standin.subscription(sub_id)["customer"], "4444")
    returned = await client.get("/account/payment-method/added")
    assert returned.headers["location"] == "/account?notice=card_added"
    page = await client.get(returned.headers["location"])
    assert "Your card is saved" in page.text and "no card yet" not in page.text
    assert "Mastercard •••• 4444" in page.text

    # Three days before the end nothing needs saying any more.
    standin.trial_will_end(sub_id)
    await deliver_all(client, standin)
    async with context.database.sessionmaker() as db:
        assert (await db.scalars(select(OutboundMail).where(OutboundMail.template == REMINDER))).all() == []

    standin.end_trial(sub_id)
    await deliver_all(client, standin)
    [charge] = standin.state.all("charge")
    assert charge["amount"] == 999 and charge["paid"]
    answer = await _answer(client, auth)
    assert answer["entitlements"]["pro"]["active"] is True
    assert answer["subscriptions"][0]["status"] == "active"


async def test_a_card_added_in_the_portal_alone_still_converts_and_silences_the_reminder(
    client: httpx.AsyncClient, standin: StripeStandin, context: AppContext
) -> None:
    """The person never comes back to our page: Stripe charges the customer's default card anyway."""
    auth, sub_id = await _start_trial(client, standin)
    standin.add_card_in_portal(standin.subscription(sub_id)["customer"])
    standin.trial_will_end(sub_id)
    await deliver_all(client, standin)
    async with context.database.sessionmaker() as db:
        assert (await db.scalars(select(OutboundMail).where(OutboundMail.template == REMINDER))).all() == []
    standin.end_trial(sub_id)
    await deliver_all(client, standin)
    assert [c["amount"] for c in standin.state.all("charge")] == [999]
    assert (await _answer(client, auth))["entitlements"]["pro"]["active"] is True


async def test_the_payment_element_starts_the_same_trial_without_a_card(
    client: httpx.AsyncClient, standin: StripeStandin
) -> None:
    auth = bearer(
        (
            await client.post(
                "/v1/auth/register", json={"email": "b@example.com", "password": DEFAULT_PASSWORD}
            )
        ).json()
    )
    started = await client.post(
        "/v1/billing/stripe/subscription", json={"product": "pro_monthly"}, headers=auth
    )
    assert started.status_code == 200, started.text
    sub_id = started.json()["subscription_id"]
    assert started.json()["card_required"] is False
    sub = standin.subscription(sub_id)
    assert sub["status"] == "trialing" and sub["default_payment_method"] is None
    assert sub["trial_settings"]["end_behavior"]["missing_payment_method"] == "cancel"
    assert (await _answer(client, auth))["entitlements"]["pro"]["active"] is True
    standin.end_trial(sub_id)
    await deliver_all(client, standin)
    assert standin.state.all("charge") == []
    assert (await _answer(client, auth))["entitlements"]["pro"]["active"] is False
