"""Sign in with Apple's authorization code: exchanged at (a stand-in for) Apple, kept encrypted, and
revoked at Apple when the account is deleted or the Apple identity unlinked."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from entitle.context import AppContext
from entitle.core.models.accounts import AppleSigninToken
from entitle.db.types import utcnow
from entitle.services.delivery.account_work import deliver_account_work
from entitle.services.identity import apple_tokens
from tests.factories import SHORT_LEASE, bearer, make_account, run_two_workers
from tests.standins.apple_signin_api import AppleSigninApiStandin
from tests.standins.jwks_server import APPLE_BUNDLE_ID, APPLE_SERVICES_ID, GOOGLE_WEB_CLIENT_ID, JwksStandin

SUB = "001234.apple.subject"


@pytest.fixture
def apple_api() -> Iterator[AppleSigninApiStandin]:
    with AppleSigninApiStandin() as running:
        yield running


@pytest.fixture
def settings_overrides(idp: JwksStandin, apple_api: AppleSigninApiStandin, tmp_path: Path) -> dict[str, Any]:
    return {
        "apple_signin_client_ids": [APPLE_BUNDLE_ID, APPLE_SERVICES_ID],
        "apple_signin_jwks_url": idp.url,
        "google_client_ids": [GOOGLE_WEB_CLIENT_ID],
        "google_jwks_url": idp.url,
        "apple_signin_team_id": apple_api.team_id,
        "apple_signin_key_id": apple_api.key_id,
        "apple_signin_private_key_path": apple_api.write_key(tmp_path),
        "apple_signin_api_base": apple_api.url,
    }


async def sign_in(
    client: httpx.AsyncClient,
    idp: JwksStandin,
    apple_api: AppleSigninApiStandin,
    *,
    aud: str = APPLE_BUNDLE_ID,
) -> httpx.Response:
    code = apple_api.issue_code(sub=SUB, client_id=aud)
    token = idp.apple_token(sub=SUB, aud=aud, email="pat@example.com")
    return await client.post("/v1/auth/apple", json={"id_token": token, "authorization_code": code})


async def kept_tokens(context: AppContext) -> list[AppleSigninToken]:
    async with context.database.sessionmaker() as db:
        return list((await db.scalars(select(AppleSigninToken))).all())


async def test_the_code_is_exchanged_and_the_refresh_token_kept_encrypted(
    client: httpx.AsyncClient, context: AppContext, idp: JwksStandin, apple_api: AppleSigninApiStandin
) -> None:
    response = await sign_in(client, idp, apple_api, aud=APPLE_SERVICES_ID)
    assert response.status_code == 201, (response.text, apple_api.refusals)
    [issued] = apple_api.refresh_tokens
    [row] = await kept_tokens(context)
    assert (row.subject, row.client_id) == (SUB, APPLE_SERVICES_ID)
    assert row.refresh_token_encrypted is not None and issued not in row.refresh_token_encrypted
    assert context.accounts.secret_box.decrypt(row.refresh_token_encrypted) == issued


async def test_a_code_works_once_and_only_for_its_own_apple_id(
    client: httpx.AsyncClient, idp: JwksStandin, apple_api: AppleSigninApiStandin
) -> None:
    code = apple_api.issue_code(sub=SUB, client_id=APPLE_BUNDLE_ID)
    token = idp.apple_token(sub=SUB, email="pat@example.com")
    first = await client.post("/v1/auth/apple", json={"id_token": token, "authorization_code": code})
    assert first.status_code == 201
    replay = await client.post("/v1/auth/apple", json={"id_token": token, "authorization_code": code})
    assert (replay.status_code, replay.json()["error"]["code"]) == (400, "invalid_authorization_code")
    someone_elses = apple_api.issue_code(sub="001.other", client_id=APPLE_BUNDLE_ID)
    mixed = await client.post("/v1/auth/apple", json={"id_token": token, "authorization_code": someone_elses})
    assert (mixed.status_code, mixed.json()["error"]["code"]) == (400, "invalid_authorization_code")


async def test_deleting_the_account_revokes_its_apple_tokens_at_apple(
    client: httpx.AsyncClient, context: AppContext, idp: JwksStandin, apple_api: AppleSigninApiStandin
) -> None:
    session = (await sign_in(client, idp, apple_api)).json()
    [issued] = apple_api.refresh_tokens
    assert (await client.delete("/v1/me", headers=bearer(session))).status_code == 204
    await deliver_account_work(context)
    assert apple_api.revoked == [issued], apple_api.refusals
    [row] = await kept_tokens(context)
    assert row.revoked_at is not None and row.refresh_token_encrypted is None


async def test_unlinking_apple_revokes_and_an_outage_is_retried(
    client: httpx.AsyncClient, context: AppContext, idp: JwksStandin, apple_api: AppleSigninApiStandin
) -> None:
    session = (await sign_in(client, idp, apple_api)).json()
    [issued] = apple_api.refresh_tokens
    google = await client.post(
        "/v1/me/identities/google",
        json={"id_token": idp.google_token(sub="g-1", email="pat@example.com")},
        headers=bearer(session),
    )
    assert google.status_code == 201
    apple_identity = next(i for i in session["account"]["identities"] if i["provider"] == "apple")
    apple_api.revoke_status = 503
    unlinked = await client.delete(f"/v1/me/identities/{apple_identity['id']}", headers=bearer(session))
    assert unlinked.status_code == 204
    await deliver_account_work(context)
    [row] = await kept_tokens(context)
    assert apple_api.revoked == [] and row.revoked_at is None and row.attempts == 1
    assert row.next_attempt_at is not None and row.next_attempt_at > utcnow()
    apple_api.revoke_status = 200
    async with context.database.transaction() as db:
        await db.execute(update(AppleSigninToken).values(next_attempt_at=utcnow()))
    await deliver_account_work(context)
    assert apple_api.revoked == [issued]
    events = await client.get("/v1/me/events", params={"type": "identity.*"}, headers=bearer(session))
    assert {e["type"] for e in events.json()["events"]} >= {"identity.linked", "identity.unlinked"}


@pytest.mark.parametrize("overrides", [{"apple_signin_team_id": None}])
async def test_a_code_without_apple_keys_configured_is_a_clear_503(
    overrides: dict[str, Any], idp: JwksStandin, settings_overrides: dict[str, Any], database_url: str
) -> None:
    from entitle.app import create_app
    from entitle.context import build_context
    from tests.conftest import make_settings

    context = build_context(make_settings(database_url, **(settings_overrides | overrides)))
    try:
        transport = httpx.ASGITransport(app=create_app(context=context))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            answer = await client.post(
                "/v1/auth/apple",
                json={"id_token": idp.apple_token(sub=SUB), "authorization_code": "c.0.abc"},
            )
    finally:
        await context.aclose()
    assert answer.status_code == 503
    assert answer.json()["error"]["code"] == "apple_signin_api_not_configured"
    assert "ENTITLE_APPLE_SIGNIN_TEAM_ID" in answer.json()["error"]["message"]


async def test_two_workers_and_a_slow_apple_revoke_each_token_once(
    context: AppContext, apple_api: AppleSigninApiStandin
) -> None:
    services = context.accounts
    tokens = [f"r.{n}.refresh" for n in range(20)]
    async with context.database.sessionmaker() as db:
        account = await make_account(db)
        for n, token in enumerate(tokens):
            apple_api.refresh_tokens[token] = (f"sub-{n}", APPLE_BUNDLE_ID)
            await apple_tokens.keep_refresh_token(
                db,
                services.secret_box,
                account_id=account.id,
                subject=f"sub-{n}",
                client_id=APPLE_BUNDLE_ID,
                token=token,
            )
        await apple_tokens.request_revocation(db, account.id)
        await db.commit()

    async def not_revoked() -> int:
        return sum(row.revoked_at is None for row in await kept_tokens(context))

    apple_api.revoke_delay = 0.1
    await run_two_workers(
        lambda: apple_tokens.revoke_due(
            context.database, services.apple_api, services.secret_box, lease=SHORT_LEASE
        ),
        not_revoked,
    )
    assert sorted(apple_api.revoked) == sorted(tokens)
