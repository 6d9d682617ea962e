"""The trap from issue 9: registered on the web with a password and paid, then "Sign in with Google" on
the iPhone. Whatever the state of the address, the person ends in the one account that holds the
subscription, and nobody who merely registered the address keeps a way in."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from entitle.context import AppContext
from entitle.services.access.subscriptions import apply_subscription_state
from entitle.services.delivery.account_work import deliver_account_work
from tests.conftest import ADMIN_KEY
from tests.factories import DEFAULT_PASSWORD, app_store_subscription, bearer, register
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
    return {"smtp_url": sink.url, "google_client_ids": [GOOGLE_WEB_CLIENT_ID], "google_jwks_url": idp.url}


async def pay(context: AppContext, account_id: str) -> None:
    async with context.database.transaction() as db:
        await apply_subscription_state(db, app_store_subscription(uuid.UUID(account_id)))


async def entitled(client: httpx.AsyncClient, session: dict[str, Any]) -> bool:
    answer = await client.get("/v1/me/entitlements", headers=bearer(session))
    return bool(answer.json()["entitlements"].get("pro", {}).get("active"))


async def test_a_verified_password_account_and_google_are_one_account(
    client: httpx.AsyncClient, context: AppContext, sink: SmtpSink, idp: JwksStandin
) -> None:
    web = await register(client, "pat@example.com")
    await pay(context, web["account"]["id"])
    await deliver_account_work(context)
    [mail] = sink.to("pat@example.com")
    verified = await client.post(
        "/v1/auth/email/verify", json={"token": mail.link_token("/account/verify-email")}
    )
    assert verified.status_code == 200

    iphone = await client.post(
        "/v1/auth/google", json={"id_token": idp.google_token(sub="g-pat", email="Pat@Example.com")}
    )
    assert iphone.status_code == 200, iphone.text
    assert iphone.json()["account"]["id"] == web["account"]["id"]
    assert await entitled(client, iphone.json())
    # Both ways in keep working, and both sessions too.
    login = await client.post(
        "/v1/auth/login", json={"email": "pat@example.com", "password": DEFAULT_PASSWORD}
    )
    assert login.status_code == 200 and login.json()["account"]["id"] == web["account"]["id"]
    assert (await client.get("/v1/me", headers=bearer(web))).status_code == 200
    providers = {i["provider"] for i in iphone.json()["account"]["identities"]}
    assert providers == {"email", "google"}


async def test_an_unverified_password_account_is_secured_not_orphaned(
    client: httpx.AsyncClient, context: AppContext, sink: SmtpSink, idp: JwksStandin
) -> None:
    web = await register(client, "pat@example.com")
    await pay(context, web["account"]["id"])
    grant = await client.post(
        f"/v1/accounts/{web['account']['id']}/grants",
        json={"entitlement": "pro", "expires_at": "2099-01-01T00:00:00Z"},
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
    )
    assert grant.status_code == 201

    iphone = await client.post(
        "/v1/auth/google", json={"id_token": idp.google_token(sub="g-pat", email="pat@example.com")}
    )
    assert iphone.status_code == 200, iphone.text
    session = iphone.json()
    assert session["account"]["id"] == web["account"]["id"]
    assert await entitled(client, session)
    assert [i["provider"] for i in session["account"]["identities"]] == ["google"]
    # The password nobody proved is gone, and so is the session it opened.
    login = await client.post(
        "/v1/auth/login", json={"email": "pat@example.com", "password": DEFAULT_PASSWORD}
    )
    assert login.status_code == 401
    assert (await client.get("/v1/me", headers=bearer(web))).status_code == 401
    await deliver_account_work(context)
    [told] = [m for m in sink.to("pat@example.com") if "signed in to" in m.subject]
    assert "removed its password" in told.text
    log = await client.get(
        f"/v1/accounts/{web['account']['id']}/events", headers={"Authorization": f"Bearer {ADMIN_KEY}"}
    )
    types = [event["type"] for event in log.json()["events"]]
    assert {"account.secured", "identity.unlinked", "identity.linked"} <= set(types)
    # The person can add a password again, from the signed-in app.
    added = await client.post(
        "/v1/me/password", json={"password": "a fresh passphrase"}, headers=bearer(session)
    )
    assert added.status_code == 204
    login = await client.post(
        "/v1/auth/login", json={"email": "pat@example.com", "password": "a fresh passphrase"}
    )
    assert login.status_code == 200 and login.json()["account"]["email_verified"] is True


async def test_an_unverified_google_address_never_lands_in_the_password_account(
    client: httpx.AsyncClient, idp: JwksStandin
) -> None:
    web = await register(client, "pat@example.com")
    stranger = await client.post(
        "/v1/auth/google",
        json={"id_token": idp.google_token(sub="g-x", email="pat@example.com", email_verified=False)},
    )
    assert stranger.status_code == 201
    assert stranger.json()["account"]["id"] != web["account"]["id"]
    login = await client.post(
        "/v1/auth/login", json={"email": "pat@example.com", "password": DEFAULT_PASSWORD}
    )
    assert login.status_code == 200
