"""The App Store card over the Server API stand-in: the key proven or refused, and Apple's test notification
reaching /webhooks/appstore on a real server."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy.ext.asyncio import AsyncSession

from entitle.context import AppContext
from entitle.services.setup import appstore_setup
from entitle.services.setup.appstore_setup import AppStoreKey
from tests.conftest import LiveServer
from tests.standins.appstore import fixtures as appstore_fixtures
from tests.standins.appstore.fixtures import BUNDLE_ID, StandIn

appstore_chain = appstore_fixtures.appstore_chain
appstore_root_path = appstore_fixtures.appstore_root_path
appstore_signer = appstore_fixtures.appstore_signer
appstore_api = appstore_fixtures.appstore_api


@pytest.fixture
def settings_overrides(appstore_api: StandIn, appstore_root_path: Path) -> dict[str, Any]:
    return appstore_api.settings(appstore_root_path)


def _key(standin: StandIn, **overrides: str) -> AppStoreKey:
    values = {
        "bundle_id": BUNDLE_ID,
        "issuer_id": standin.state.issuer_id,
        "key_id": standin.state.key_id,
        "private_key": standin.key_path.read_text(),
    }
    return AppStoreKey(**(values | overrides))


def _another_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


async def test_a_good_key_is_accepted_by_apple_answering_not_found(
    context: AppContext, appstore_api: StandIn
) -> None:
    result = await appstore_setup.check(context, _key(appstore_api))
    assert result.ok
    assert "4040010" in result.sentence and "Transaction id not found" in result.sentence
    assert ("GET", "/inApps/v2/history/2000000000000000") in appstore_api.state.requests


@pytest.mark.parametrize(
    "wrong",
    [
        {"issuer_id": "00000000-0000-0000-0000-000000000000"},
        {"key_id": "ZZZZZZZZZZ"},
        {"private_key": "other"},
    ],
    ids=["issuer", "key id", "key"],
)
async def test_a_wrong_issuer_key_id_or_key_is_refused_with_apples_401(
    context: AppContext, appstore_api: StandIn, wrong: dict[str, str]
) -> None:
    overrides = {"private_key": _another_pem()} if "private_key" in wrong else wrong
    result = await appstore_setup.check(context, _key(appstore_api, **overrides))
    assert result.outcome == "refused"
    assert result.sentence.startswith("Apple refused the key (HTTP 401 Unauthorized)")
    assert "issuer id" in result.sentence


async def test_a_key_for_another_app_is_refused(context: AppContext, appstore_api: StandIn) -> None:
    result = await appstore_setup.check(context, _key(appstore_api, bundle_id="com.example.other"))
    assert result.outcome == "refused"


async def test_text_that_is_no_private_key_is_refused_before_asking_apple(
    context: AppContext, appstore_api: StandIn
) -> None:
    result = await appstore_setup.check(
        context, _key(appstore_api, private_key="-----BEGIN CERTIFICATE-----")
    )
    assert result.outcome == "refused"
    assert ".p8 key is not a private key" in result.sentence
    assert appstore_api.state.requests == []


async def test_an_unreachable_api_is_said_so(context: AppContext, appstore_api: StandIn) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    context.settings = context.settings.model_copy(update={"apple_api_base": closed})
    result = await appstore_setup.check(context, _key(appstore_api))
    assert result.outcome == "unreachable"
    assert result.sentence.startswith("The App Store Server API could not be reached")


async def test_the_card_shows_a_refused_key_as_failing_with_apples_reason(
    db: AsyncSession, context: AppContext, appstore_api: StandIn
) -> None:
    before = await appstore_setup.card(db, context)
    assert before.state == "set"
    assert before.sentence.endswith(" Check the key, then request a test notification.")
    refused = await appstore_setup.check(context, _key(appstore_api, key_id="ZZZZZZZZZZ"))
    card = await appstore_setup.card(db, context, checked=refused)
    assert card.state == "failing" and "HTTP 401" in card.sentence and card.checked_at is not None


async def test_the_card_is_not_set_without_a_bundle_id(db: AsyncSession, context: AppContext) -> None:
    context.settings = context.settings.model_copy(update={"apple_bundle_id": None})
    card = await appstore_setup.card(db, context)
    assert card.state == "not_set"
    assert "apple_bundle_id" in card.fields


async def test_a_test_notification_reaches_the_webhook_and_the_card_shows_when(
    db: AsyncSession, context: AppContext, appstore_api: StandIn, live_server: LiveServer
) -> None:
    appstore_api.state.notification_url = f"{live_server.url}/webhooks/appstore"
    key = appstore_setup.configured_key(context)
    assert key is not None

    requested = await appstore_setup.request_test_notification(context, key)
    assert requested.token is not None, requested.sentence

    status = await appstore_setup.test_notification_status(context, key, requested.token)
    assert status == "Apple sent the test notification and this server accepted it."
    card = await appstore_setup.card(db, context)
    assert card.state == "verified"
    assert card.sentence.startswith("Last test notification received ") and card.sentence.endswith(" s ago.")
    assert card.checked_at is not None


async def test_a_test_notification_apple_cannot_deliver_is_reported(
    db: AsyncSession, context: AppContext, appstore_api: StandIn
) -> None:
    key = appstore_setup.configured_key(context)
    assert key is not None
    requested = await appstore_setup.request_test_notification(context, key)
    assert requested.token is not None
    status = await appstore_setup.test_notification_status(context, key, requested.token)
    assert status == "Apple could not deliver the test notification: NO_RESPONSE."
    assert (await appstore_setup.card(db, context)).state == "set"


async def test_requesting_a_test_notification_with_a_wrong_key_gives_apples_refusal(
    context: AppContext, appstore_api: StandIn
) -> None:
    requested = await appstore_setup.request_test_notification(
        context, _key(appstore_api, key_id="ZZZZZZZZZZ")
    )
    assert requested.token is None
    assert requested.sentence == "Apple refused to send a test notification (HTTP 401)."


async def test_the_status_of_an_unknown_token_is_apples_not_found(
    context: AppContext, appstore_api: StandIn
) -> None:
    key = _key(appstore_api)
    status = await appstore_setup.test_notification_status(context, key, "no-such-token")
    assert status == (
        "Apple did not report on the test notification "
        "(HTTP 404, error 4040008: Test notification not found)."
    )
