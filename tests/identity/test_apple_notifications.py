"""Sign in with Apple server-to-server notifications at POST /webhooks/apple/signin."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from entitle.context import AppContext
from entitle.core.models.accounts import Identity
from entitle.core.models.events import ProviderEvent
from entitle.identity import AppleNotificationType
from entitle.services.identity.apple_signin import HANDLERS
from tests.factories import bearer, inbox_row, register
from tests.standins.jwks_server import JwksStandin, make_key

PATH = "/webhooks/apple/signin"


async def apple_account(
    client: httpx.AsyncClient, idp: JwksStandin, sub: str = "001.n", **claims: Any
) -> dict[str, Any]:
    response = await client.post("/v1/auth/apple", json={"id_token": idp.apple_token(sub=sub, **claims)})
    assert response.status_code in (200, 201), response.text
    body: dict[str, Any] = response.json()
    return body


async def notify(client: httpx.AsyncClient, payload: str) -> httpx.Response:
    return await client.post(PATH, json={"payload": payload})


async def identity_row(db: AsyncSession, sub: str) -> Identity | None:
    db.expire_all()
    return await db.scalar(select(Identity).where(Identity.provider == "apple", Identity.subject == sub))


def test_every_notification_type_has_a_handler() -> None:
    assert set(HANDLERS) == set(AppleNotificationType)


async def test_consent_revoked_ends_sessions_and_reinstates_on_new_sign_in(
    client: httpx.AsyncClient, idp: JwksStandin, db: AsyncSession, context: AppContext
) -> None:
    session = await apple_account(client, idp)
    response = await notify(
        client, idp.apple_notification("consent-revoked", sub="001.n", now=time.time() + 1)
    )
    assert response.status_code == 200, response.text
    # Acknowledged once stored; processed right after, off the request.
    assert response.json() == {"received": True, "duplicate": False, "status": "pending"}
    assert (await inbox_row(context, provider="apple_signin")).status == "processed"
    refresh = await client.post("/v1/auth/refresh", json={"refresh_token": session["refresh_token"]})
    assert (refresh.status_code, refresh.json()["error"]["code"]) == (401, "session_revoked")
    identity = await identity_row(db, "001.n")
    assert identity is not None and identity.revoked_at is not None
    # Signing in with Apple again re-grants consent: a token issued after the revocation is welcome.
    back = await apple_account(client, idp, now=time.time() + 2)
    assert back["account"]["id"] == session["account"]["id"]
    events = await client.get("/v1/me/events", params={"type": "identity.revoked"}, headers=bearer(back))
    assert events.json()["total"] == 1


async def test_redelivery_is_stored_once_and_acted_on_once(
    client: httpx.AsyncClient, idp: JwksStandin, db: AsyncSession
) -> None:
    session = await apple_account(client, idp)
    payload = idp.apple_notification("email-disabled", sub="001.n", jti="evt-1")
    first, second = await notify(client, payload), await notify(client, payload)
    assert first.json()["duplicate"] is False and second.json()["duplicate"] is True
    assert await db.scalar(select(func.count()).select_from(ProviderEvent)) == 1
    events = await client.get(
        "/v1/me/events", params={"type": "identity.email_forwarding_disabled"}, headers=bearer(session)
    )
    assert events.json()["total"] == 1


async def test_email_disabled_then_enabled_flags_the_identity(
    client: httpx.AsyncClient, idp: JwksStandin, db: AsyncSession
) -> None:
    relay = "q1w2@privaterelay.appleid.com"
    await apple_account(client, idp, email=relay, is_private_email="true")
    await notify(client, idp.apple_notification("email-disabled", sub="001.n", email=relay))
    identity = await identity_row(db, "001.n")
    assert identity is not None and identity.email_verified is False
    # A later sign-in does not undo what only the notification can know.
    await apple_account(client, idp, email=relay, is_private_email="true")
    assert (await identity_row(db, "001.n")).email_verified is False  # type: ignore[union-attr]
    await notify(client, idp.apple_notification("email-enabled", sub="001.n", email=relay))
    assert (await identity_row(db, "001.n")).email_verified is True  # type: ignore[union-attr]


async def test_account_delete_removes_an_apple_only_account(
    client: httpx.AsyncClient, idp: JwksStandin, db: AsyncSession, context: AppContext
) -> None:
    session = await apple_account(client, idp)
    await notify(client, idp.apple_notification("account-delete", sub="001.n"))
    assert (await inbox_row(context, provider="apple_signin")).status == "processed"
    assert await identity_row(db, "001.n") is None
    me = await client.get("/v1/me", headers=bearer(session))
    assert me.status_code == 401


async def test_account_delete_keeps_an_account_with_another_way_in(
    client: httpx.AsyncClient, idp: JwksStandin, db: AsyncSession
) -> None:
    me = await register(client, "me@example.com")
    linked = await client.post(
        "/v1/me/identities/apple", json={"id_token": idp.apple_token(sub="001.m")}, headers=bearer(me)
    )
    assert linked.status_code == 201
    await notify(client, idp.apple_notification("account-delete", sub="001.m"))
    assert await identity_row(db, "001.m") is None
    login = await client.post(
        "/v1/auth/login", json={"email": "me@example.com", "password": "correct horse battery staple"}
    )
    assert login.status_code == 200
    assert [i["provider"] for i in login.json()["account"]["identities"]] == ["email"]


async def test_forged_notification_is_rejected_and_not_stored(
    client: httpx.AsyncClient, idp: JwksStandin, db: AsyncSession
) -> None:
    await apple_account(client, idp)
    forged = idp.apple_notification("account-delete", sub="001.n", key=make_key(kid=idp.current_key.kid))
    response = await notify(client, forged)
    assert (response.status_code, response.json()["error"]["code"]) == (401, "invalid_identity_token")
    foreign = await notify(client, idp.apple_notification("account-delete", sub="001.n", aud="com.other.app"))
    assert foreign.status_code == 401
    assert await db.scalar(select(func.count()).select_from(ProviderEvent)) == 0
    assert await identity_row(db, "001.n") is not None


async def test_unknown_subject_is_processed_harmlessly(
    client: httpx.AsyncClient, idp: JwksStandin, context: AppContext
) -> None:
    await notify(client, idp.apple_notification("consent-revoked", sub="001.nobody"))
    row = await inbox_row(context, provider="apple_signin")
    assert (row.status, row.outcome) == ("processed", "no identity with this subject")


async def test_malformed_bodies_are_4xx(client: httpx.AsyncClient) -> None:
    for content in (
        b"{not json",
        json.dumps({"payload": 5}).encode(),
        b"[]",
        json.dumps({"payload": "a.b.c"}).encode(),
    ):
        response = await client.post(PATH, content=content, headers={"content-type": "application/json"})
        assert 400 <= response.status_code < 500, (content, response.status_code)
        assert "code" in response.json()["error"]
