"""The Sign in with Apple and Google sign-in cards over the JWKS stand-in: keys counted, or why none came."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from entitle.context import AppContext
from entitle.services.setup import signin_setup
from tests.standins.jwks_server import APPLE_BUNDLE_ID, GOOGLE_IOS_CLIENT_ID, JwksStandin


@pytest.fixture
def idp() -> Iterator[JwksStandin]:
    with JwksStandin(keys=2) as standin:
        yield standin


@pytest.fixture
def settings_overrides(idp: JwksStandin) -> dict[str, Any]:
    return {
        "apple_signin_client_ids": [APPLE_BUNDLE_ID],
        "apple_signin_jwks_url": idp.url,
        "google_client_ids": [GOOGLE_IOS_CLIENT_ID],
        "google_jwks_url": idp.url,
    }


@pytest.mark.parametrize("provider", ["apple", "google"])
async def test_the_keys_are_fetched_and_counted(
    db: AsyncSession, context: AppContext, provider: signin_setup.Provider
) -> None:
    assert (await signin_setup.card(db, context, provider)).state == "set"
    checked = await signin_setup.check(context, provider)
    name = "Apple" if provider == "apple" else "Google"
    assert (checked.ok, checked.keys, checked.sentence) == (
        True,
        2,
        f"{name}'s keys fetched: 2 signing keys.",
    )
    card = await signin_setup.card(db, context, provider, checked=checked)
    assert (card.state, card.sentence) == ("verified", checked.sentence)


async def test_a_key_endpoint_that_fails_gives_its_status(
    db: AsyncSession, context: AppContext, idp: JwksStandin
) -> None:
    idp.status = 503
    checked = await signin_setup.check(context, "apple")
    assert not checked.ok
    assert checked.sentence == (
        f"Apple's signing keys could not be fetched from {idp.url}: "
        "The identity provider's key endpoint answered 503."
    )
    card = await signin_setup.apple_card(db, context, checked=checked)
    assert card.state == "failing" and card.sentence == checked.sentence


async def test_an_unreachable_key_url_gives_the_network_error(context: AppContext) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}/auth/keys"
    checked = await signin_setup.check(context, "google", url=closed)
    assert not checked.ok
    assert checked.sentence.startswith(f"Google's signing keys could not be fetched from {closed}: ")
    assert checked.sentence.count(".") >= 1 and "\n" not in checked.sentence


async def test_without_client_ids_the_card_is_not_set(db: AsyncSession, context: AppContext) -> None:
    context.settings = context.settings.model_copy(update={"google_client_ids": []})
    card = await signin_setup.google_card(db, context)
    assert card.state == "not_set"
    assert "google_client_ids" in card.fields
