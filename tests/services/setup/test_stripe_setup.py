"""Setting Stripe up from the page, against the Stripe stand-in: keys proved with reads (Stripe's own
reason when it refuses), the webhook endpoint created or reused, the catalog pushed, a test event sent
by Stripe to the endpoint and seen arriving."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import stripe
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from entitle.context import AppContext
from entitle.core.models.events import ProviderEvent
from entitle.db.types import utcnow
from entitle.providers.stripe.client import StripeGateway
from entitle.providers.stripe.handlers import webhook_event_types
from entitle.services.identity.tokens import SigningKey
from entitle.services.setup.stripe_setup import (
    StripeKeysRefused,
    ago,
    card,
    check_keys,
    connect_webhook,
    last_event_received,
    send_test_event,
)
from entitle.settings import Settings
from tests.conftest import LiveServer
from tests.factories import eventually
from tests.standins.stripe import StripeStandin

PUBLISHABLE = "pk_test_standin0123456789"
WRONG = "sk_test_51NotAKeyStripeKnowsAbout1234"
# Stripe quotes a wrong key back with all but its mode prefix and last four starred.
STRIPE_SAYS = "Invalid API Key provided: sk_test_" + "*" * (len(WRONG) - 12) + "1234"


@pytest.fixture
def standin() -> Iterator[StripeStandin]:
    with StripeStandin() as running:
        yield running


@pytest.fixture
def settings_overrides(standin: StripeStandin) -> dict[str, Any]:
    # Keys, but no webhook secret yet: what a page has before "Connect".
    return {
        "stripe_secret_key": standin.secret_key,
        "stripe_publishable_key": PUBLISHABLE,
        "stripe_api_base": standin.base_url,
    }


def gateway_for(standin: StripeStandin) -> StripeGateway:
    return StripeGateway(standin.secret_key, api_base=standin.base_url)


# --- keys ----------------------------------------------------------------------------------------------
async def test_a_working_test_pair_is_proved_with_reads(standin: StripeStandin) -> None:
    check = await check_keys(standin.secret_key, PUBLISHABLE, api_base=standin.base_url)
    assert check.mode == "test" and check.livemode is False
    read = [(r["method"], r["path"]) for r in standin.requests]
    assert read[0] == ("GET", "/v1/balance") and ("GET", "/v1/subscriptions") in read
    assert all(method == "GET" for method, _ in read)


async def test_a_live_pair_is_live(standin: StripeStandin) -> None:
    live = standin.add_key("sk_live_51LiveKey0123456789abcd", livemode=True)
    check = await check_keys(live, "pk_live_51LiveKey0123456789", api_base=standin.base_url)
    assert check.mode == "live" and check.livemode is True


async def test_a_key_stripe_does_not_know_gives_stripes_reason(standin: StripeStandin) -> None:
    with pytest.raises(StripeKeysRefused) as refused:
        await check_keys(WRONG, PUBLISHABLE, api_base=standin.base_url)
    assert refused.value.message == STRIPE_SAYS
    assert refused.value.status_code == 422 and refused.value.code == "stripe_keys_refused"
    assert WRONG not in refused.value.message


async def test_a_restricted_key_missing_a_permission_names_it(standin: StripeStandin) -> None:
    restricted = standin.add_key(
        "rk_test_51Restricted0123456789",
        permissions={"rak_balance_read", "rak_customer_read", "rak_subscription_read", "rak_price_read"},
    )
    with pytest.raises(StripeKeysRefused) as refused:
        await check_keys(restricted, PUBLISHABLE, api_base=standin.base_url)
    assert "does not have the required permissions" in refused.value.message
    assert "'rak_webhook_read' permission" in refused.value.message


async def test_a_mixed_pair_is_refused_before_asking_stripe(standin: StripeStandin) -> None:
    with pytest.raises(StripeKeysRefused) as refused:
        await check_keys(standin.secret_key, "pk_live_51LiveKey0123456789", api_base=standin.base_url)
    assert "secret key is a test key but the publishable key is a live key" in refused.value.message
    assert standin.requests == []


@pytest.mark.parametrize("secret", ["", "whsec_0123456789abcdef", "sk_test_"])
async def test_something_that_is_not_a_secret_key_is_refused(standin: StripeStandin, secret: str) -> None:
    with pytest.raises(StripeKeysRefused, match="not a Stripe secret key"):
        await check_keys(secret, None, api_base=standin.base_url)


# --- webhook endpoint and catalog ------------------------------------------------------------------------
async def test_connecting_creates_the_endpoint_and_pushes_the_catalog(
    standin: StripeStandin, context: AppContext, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    gateway = gateway_for(standin)
    try:
        connection = await connect_webhook(
            gateway, public_url="https://billing.example.com", catalog=context.catalog, known_secrets=[]
        )
    finally:
        await gateway.aclose()
    endpoint = connection.endpoint
    assert endpoint.action == "created" and str(endpoint.secret).startswith("whsec_")
    assert endpoint.url == "https://billing.example.com/webhooks/stripe"
    [stored] = standin.state.all("webhook_endpoint")
    assert stored["enabled_events"] == webhook_event_types() and stored["status"] == "enabled"
    sold = {p.stripe.lookup_key for p in context.catalog.products.values() if p.stripe is not None}
    assert {price["lookup_key"] for price in standin.state.all("price")} == sold
    assert {r.action for r in connection.catalog} == {"created"}
    # The SDK logs response bodies at DEBUG; the secret in the creating answer is not among them.
    assert "API response body" in caplog.text and str(endpoint.secret) not in caplog.text


async def test_connecting_again_reuses_the_endpoint_whose_secret_we_have(
    standin: StripeStandin, context: AppContext
) -> None:
    gateway = gateway_for(standin)
    try:
        first = await connect_webhook(
            gateway, public_url="https://billing.example.com", catalog=context.catalog, known_secrets=[]
        )
        assert first.endpoint.secret is not None
        again = await connect_webhook(
            gateway,
            public_url="https://billing.example.com",
            catalog=context.catalog,
            known_secrets=["whsec_older", first.endpoint.secret],
        )
    finally:
        await gateway.aclose()
    assert again.endpoint.action == "reused" and again.endpoint.secret is None
    assert again.endpoint.endpoint_id == first.endpoint.endpoint_id
    assert {r.action for r in again.catalog} == {"unchanged"}
    assert len(standin.state.all("webhook_endpoint")) == 1


async def test_an_endpoint_whose_secret_we_lack_is_replaced(
    standin: StripeStandin, context: AppContext
) -> None:
    url = "https://billing.example.com/webhooks/stripe"
    gateway = gateway_for(standin)
    try:
        # Made by hand in the Dashboard: its secret never reached this server.
        by_hand = await gateway.create_webhook_endpoint(url=url, events=["invoice.paid"])
        connection = await connect_webhook(
            gateway,
            public_url="https://billing.example.com/",
            catalog=context.catalog,
            known_secrets=["whsec_something_else"],
        )
    finally:
        await gateway.aclose()
    assert connection.endpoint.action == "recreated"
    assert connection.endpoint.secret not in (None, by_hand["secret"])
    [only] = standin.state.all("webhook_endpoint")
    assert only["id"] == connection.endpoint.endpoint_id and only["id"] != by_hand["id"]


# --- the test event ---------------------------------------------------------------------------------------
async def test_stripe_sends_the_test_event_to_the_endpoint_and_the_card_shows_it_arrived(
    standin: StripeStandin,
    context: AppContext,
    db: AsyncSession,
    settings: Settings,
    signing_key: SigningKey,
) -> None:
    server = LiveServer(settings, signing_key)
    gateway = gateway_for(standin)
    try:
        connection = await connect_webhook(
            gateway, public_url=server.url, catalog=context.catalog, known_secrets=[]
        )
        secret = connection.endpoint.secret
        assert secret is not None
        # The server now has the endpoint's secret, as the page saves it.
        server.settings = server.settings.model_copy(update={"stripe_webhook_secret": [SecretStr(secret)]})
        await asyncio.to_thread(server.start)
        assert await last_event_received(db) is None
        sent = await send_test_event(gateway)
        await asyncio.to_thread(standin.events.wait_delivered)
    finally:
        await gateway.aclose()
        await asyncio.to_thread(server.stop)
    [delivery] = [d for d in standin.events.deliveries if d.event_type == "customer.deleted"]
    assert delivery.url == f"{server.url}/webhooks/stripe" and delivery.status == 200
    event = standin.events.of_type("customer.deleted")[-1]
    # Signed with the endpoint's own secret, as Stripe signs it: Stripe's SDK accepts it.
    body, headers = standin.signed(event, secret=secret)
    assert stripe.Webhook.construct_event(body, headers["Stripe-Signature"], secret)["id"] == event["id"]
    assert event["data"]["object"]["id"] == sent.customer_id

    async def stored() -> ProviderEvent | None:
        db.expire_all()
        return await db.scalar(select(ProviderEvent).where(ProviderEvent.event_id == event["id"]))

    row = await eventually(stored)
    assert await last_event_received(db) == row.received_at
    processed = await eventually(lambda: _processed(db, event["id"]))
    assert processed.outcome == "test event from the set-up page"
    connected = dataclasses.replace(
        context,
        settings=context.settings.model_copy(
            update={"public_url": server.url, "stripe_webhook_secret": [SecretStr(secret)]}
        ),
    )
    shown = await card(db, connected)
    assert shown.state == "verified", shown.sentence
    assert shown.sentence.startswith("Test mode: keys and webhook endpoint work; last event received ")
    assert shown.sentence.endswith(" s ago.")


async def _processed(db: AsyncSession, event_id: str) -> ProviderEvent | None:
    db.expire_all()
    row = await db.scalar(select(ProviderEvent).where(ProviderEvent.event_id == event_id))
    return row if row is not None and row.processed_at is not None else None


# --- the card ---------------------------------------------------------------------------------------------
async def test_the_card_asks_for_keys_when_none_are_set(context: AppContext, db: AsyncSession) -> None:
    bare = dataclasses.replace(
        context, settings=context.settings.model_copy(update={"stripe_secret_key": None})
    )
    shown = await card(db, bare)
    assert shown.state == "not_set" and "secret and publishable keys" in shown.sentence
    assert shown.fields == ["stripe_secret_key", "stripe_publishable_key", "stripe_webhook_secret"]


async def test_the_card_says_what_stripe_said_about_a_wrong_key(
    standin: StripeStandin, context: AppContext, db: AsyncSession
) -> None:
    wrong = dataclasses.replace(
        context, settings=context.settings.model_copy(update={"stripe_secret_key": SecretStr(WRONG)})
    )
    shown = await card(db, wrong)
    assert shown.state == "failing"
    assert shown.sentence == STRIPE_SAYS


async def test_the_card_with_keys_only_asks_to_connect(context: AppContext, db: AsyncSession) -> None:
    shown = await card(db, context)
    assert shown.state == "set"
    assert shown.sentence == "Test mode: the keys work. Connect the webhook endpoint next."


async def test_the_card_fails_when_stripe_has_no_endpoint_for_the_secret_we_hold(
    context: AppContext, db: AsyncSession
) -> None:
    holding = dataclasses.replace(
        context,
        settings=context.settings.model_copy(
            update={"stripe_webhook_secret": [SecretStr("whsec_" + "a" * 32)]}
        ),
    )
    shown = await card(db, holding)
    assert shown.state == "failing"
    assert "no enabled webhook endpoint for http://testserver/webhooks/stripe" in shown.sentence


def test_ago_reads_like_a_person() -> None:
    now = utcnow()
    assert ago(now - timedelta(seconds=3), now) == "3 s ago"
    assert ago(now - timedelta(minutes=4, seconds=5), now) == "4 min ago"
    assert ago(now - timedelta(hours=2), now) == "2 h ago"
    assert ago(now - timedelta(days=5), now) == "5 days ago"
