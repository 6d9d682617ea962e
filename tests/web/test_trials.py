"""Trials as the catalog promises them, once per account and entitlement, whichever store gave the first."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from entitle.context import AppContext
from entitle.core.models.accounts import Account
from entitle.core.subscriptions import Environment, SubscriptionStatus
from entitle.db.types import utcnow
from entitle.services.access.subscriptions import apply_subscription_state
from entitle.services.reporting import reports
from tests.factories import bearer, register, stripe_subscription
from tests.providers.stripe.conftest import deliver_all, stripe_settings
from tests.standins.appstore import AppStoreSigner
from tests.standins.appstore import fixtures as appstore_fixtures
from tests.standins.appstore.fixtures import appstore_settings, purchase
from tests.standins.stripe import StripeStandin
from tests.web.test_pages import sign_up

appstore_chain = appstore_fixtures.appstore_chain
appstore_root_path = appstore_fixtures.appstore_root_path
appstore_signer = appstore_fixtures.appstore_signer

pytestmark = pytest.mark.usefixtures("pushed")

YEARLY_APP_STORE = "com.example.app.pro.yearly"


@pytest.fixture
def settings_overrides(standin: StripeStandin, appstore_root_path: Path) -> dict[str, Any]:
    return {**stripe_settings(standin), **appstore_settings(appstore_root_path)}


def _created_subscriptions(standin: StripeStandin) -> list[dict[str, Any]]:
    return [
        r["params"] for r in standin.requests if r["method"] == "POST" and r["path"] == "/v1/subscriptions"
    ]


async def _element(client: httpx.AsyncClient, auth: dict[str, str]) -> dict[str, Any]:
    response = await client.post(
        "/v1/billing/stripe/subscription", json={"product": "pro_yearly"}, headers=auth
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def _checkout(
    client: httpx.AsyncClient, standin: StripeStandin, auth: dict[str, str]
) -> dict[str, Any]:
    response = await client.post("/v1/billing/stripe/checkout", json={"product": "pro_yearly"}, headers=auth)
    assert response.status_code == 200, response.text
    return standin.state.get(response.json()["id"], "checkout.session")


async def _pro(client: httpx.AsyncClient, auth: dict[str, str]) -> dict[str, Any]:
    answer: dict[str, Any] = (await client.get("/v1/me/entitlements", headers=auth)).json()
    return answer


async def test_the_payment_element_starts_the_catalogs_trial_and_charges_nothing_until_it_ends(
    client: httpx.AsyncClient, standin: StripeStandin
) -> None:
    auth = bearer(await register(client, "trial@example.com"))
    body = await _element(client, auth)
    # A trial confirms a SetupIntent (the card is saved for later), not a payment.
    assert body["client_secret"].startswith("seti_") and "_secret_" in body["client_secret"]
    [params] = _created_subscriptions(standin)
    assert params["trial_period_days"] == "7"
    sub = standin.subscription(body["subscription_id"])
    assert sub["status"] == "trialing" and sub["trial_end"] - sub["trial_start"] == 7 * 86400
    assert standin.state.objects[sub["latest_invoice"]]["amount_due"] == 0
    assert standin.state.all("charge") == []
    # Entitled at once, in the trial, before any card.
    answer = await _pro(client, auth)
    assert answer["entitlements"]["pro"]["active"] is True
    assert [s["status"] for s in answer["subscriptions"]] == ["trialing"]
    # A double click gets the same SetupIntent, not a refusal nor a second trial.
    assert await _element(client, auth) == body
    assert len(_created_subscriptions(standin)) == 1

    standin.add_trial_card(body["subscription_id"])
    standin.end_trial(body["subscription_id"])
    await deliver_all(client, standin)
    [charge] = standin.state.all("charge")
    assert charge["amount"] == 9999 and charge["paid"]
    answer = await _pro(client, auth)
    assert answer["entitlements"]["pro"]["active"] and answer["subscriptions"][0]["status"] == "active"


@pytest.mark.parametrize("first", ["element", "checkout"])
async def test_a_second_subscription_after_an_ended_trial_has_no_trial_on_either_path(
    client: httpx.AsyncClient, standin: StripeStandin, first: str
) -> None:
    auth = bearer(await register(client, f"again-{first}@example.com"))
    if first == "element":
        sub_id = (await _element(client, auth))["subscription_id"]
    else:
        session = await _checkout(client, standin, auth)
        assert session["_subscription_data"]["trial_period_days"] == "7"
        sub_id = standin.complete_checkout(session["id"])["subscription"]
    assert standin.subscription(sub_id)["status"] == "trialing"
    standin.cancel_now(sub_id)
    await deliver_all(client, standin)
    assert (await _pro(client, auth))["entitlements"]["pro"]["active"] is False

    session = await _checkout(client, standin, auth)
    assert "trial_period_days" not in session["_subscription_data"]
    body = await _element(client, auth)
    assert body["client_secret"].startswith("pi_")
    assert "trial_period_days" not in _created_subscriptions(standin)[-1]
    sub = standin.subscription(body["subscription_id"])
    assert sub["status"] == "incomplete" and sub["trial_start"] is None
    assert standin.state.objects[sub["latest_invoice"]]["amount_due"] == 9999


async def test_an_app_store_introductory_offer_uses_up_the_web_trial_even_after_renewals(
    client: httpx.AsyncClient, standin: StripeStandin, appstore_signer: AppStoreSigner
) -> None:
    session = await register(client, "iphone@example.com")
    auth, token = bearer(session), session["account"]["app_account_token"]
    now = dt.datetime.now(dt.UTC)
    intro = purchase(
        appstore_signer,
        original="700",
        token=token,
        product=YEARLY_APP_STORE,
        now=now - dt.timedelta(days=400),
        days=7,
        offerType=1,
        offerDiscountType="FREE_TRIAL",
    )
    # The paid year after it, now over: this transaction replaces the stored one and shows no offer.
    renewal = purchase(
        appstore_signer,
        original="700",
        token=token,
        product=YEARLY_APP_STORE,
        now=now - dt.timedelta(days=392),
        days=365,
        transactionId="700001",
    )
    for tx in (intro, renewal):
        posted = await client.post(
            "/v1/billing/appstore/transactions",
            json={"signed_transaction": appstore_signer.sign(tx)},
            headers=auth,
        )
        assert posted.status_code == 200, posted.text
    answer = posted.json()
    assert answer["entitlements"]["pro"]["active"] is False
    assert answer["subscriptions"][0]["status"] == "expired"

    session_at_stripe = await _checkout(client, standin, auth)
    assert "trial_period_days" not in session_at_stripe["_subscription_data"]
    body = await _element(client, auth)
    assert body["client_secret"].startswith("pi_")
    assert "trial_period_days" not in _created_subscriptions(standin)[-1]


async def _account_id(context: AppContext, email: str) -> uuid.UUID:
    async with context.database.sessionmaker() as db:
        account = await db.scalar(select(Account).where(Account.email == email))
        assert account is not None
        return account.id


async def test_pricing_says_subscribe_without_trial_words_to_someone_who_had_the_trial(
    client: httpx.AsyncClient, context: AppContext
) -> None:
    visitor = await client.get("/pricing")
    assert "Start free trial" in visitor.text and "7-day free trial" in visitor.text
    await sign_up(client, "had-it@example.com")
    eligible = await client.get("/pricing")
    assert "Start free trial" in eligible.text

    account_id = await _account_id(context, "had-it@example.com")
    async with context.database.sessionmaker() as db:
        await apply_subscription_state(
            db,
            stripe_subscription(
                account_id,
                product="pro_yearly",
                status=SubscriptionStatus.EXPIRED,
                will_renew=False,
                current_period_end=utcnow() - dt.timedelta(days=30),
                trial_started_at=utcnow() - dt.timedelta(days=37),
            ),
        )
        await db.commit()

    page = await client.get("/pricing")
    assert page.status_code == 200
    assert "Start free trial" not in page.text and "free trial" not in page.text
    assert "Subscribe<span" in page.text and "Pro, yearly" in page.text
    client.cookies.clear()
    assert "Start free trial" in (await client.get("/pricing")).text


async def test_reports_count_a_trial_once_however_often_it_is_reported(
    client: httpx.AsyncClient, context: AppContext, standin: StripeStandin
) -> None:
    auth = bearer(await register(client, "counted@example.com"))
    sub_id = (await _element(client, auth))["subscription_id"]
    standin.add_trial_card(sub_id)
    # Stripe moves the trial's end (an extension from the dashboard): still the same trial, not converted.
    with standin.state.lock:
        sub = standin.state.get(sub_id, "subscription")
        before = standin.state.snapshot(sub)
        sub["trial_end"] += 86400
        sub["items"]["data"][0]["current_period_end"] += 86400
        standin.state.emit("customer.subscription.updated", sub, before)
    await deliver_all(client, standin)
    # Every event again, as Stripe retries them. The stand-in is Stripe's test mode: the sandbox report.
    await deliver_all(client, standin)
    today = utcnow().date()
    async with context.database.sessionmaker() as db:
        report = await reports.summary(db, context.catalog, today, today, Environment.SANDBOX)
    assert report["totals"]["trials_started"] == 1
    assert report["totals"]["trials_converted"] == 0

    standin.end_trial(sub_id)
    await deliver_all(client, standin)
    async with context.database.sessionmaker() as db:
        report = await reports.summary(db, context.catalog, today, today, Environment.SANDBOX)
    assert report["totals"]["trials_started"] == 1
    assert report["totals"]["trials_converted"] == 1
