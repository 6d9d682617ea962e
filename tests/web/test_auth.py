"""Email + password sign-up and sign-in, tokens, refresh rotation and reuse detection."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import jwt
import pytest

from entitle.context import AppContext
from tests.factories import DEFAULT_PASSWORD, bearer, register


async def test_register_returns_account_and_tokens(client: httpx.AsyncClient) -> None:
    body = await register(client, "Ada@Example.com")
    assert body["account"]["email"] == "ada@example.com"
    assert uuid.UUID(body["account"]["app_account_token"])
    assert body["refresh_token"].startswith("rt_")
    assert body["expires_in"] == 900
    assert [i["provider"] for i in body["account"]["identities"]] == ["email"]


async def test_emails_are_unique_whatever_the_case(client: httpx.AsyncClient) -> None:
    await register(client, "ada@example.com")
    response = await client.post(
        "/v1/auth/register", json={"email": "ADA@example.COM", "password": DEFAULT_PASSWORD}
    )
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "email_taken"


async def test_login_with_right_and_wrong_password(client: httpx.AsyncClient) -> None:
    await register(client, "ada@example.com")
    ok = await client.post("/v1/auth/login", json={"email": "ADA@example.com", "password": DEFAULT_PASSWORD})
    assert ok.status_code == 200
    wrong = await client.post(
        "/v1/auth/login", json={"email": "ada@example.com", "password": "not the password"}
    )
    unknown = await client.post(
        "/v1/auth/login", json={"email": "nobody@example.com", "password": DEFAULT_PASSWORD}
    )
    # The same answer for a wrong password and an unknown address: nothing to enumerate.
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()
    assert wrong.json()["error"]["code"] == "invalid_credentials"


async def test_access_token_is_es256_and_verifies_with_published_jwks(client: httpx.AsyncClient) -> None:
    session = await register(client)
    jwks = (await client.get("/.well-known/jwks.json")).json()
    header = jwt.get_unverified_header(session["access_token"])
    key = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
    claims = jwt.decode(session["access_token"], jwt.PyJWK(key).key, algorithms=["ES256"], issuer="entitle")
    assert claims["sub"] == session["account"]["id"]
    assert claims["exp"] - claims["iat"] == 900


async def test_me_requires_a_valid_token(client: httpx.AsyncClient, context: AppContext) -> None:
    session = await register(client)
    assert (await client.get("/v1/me", headers=bearer(session))).json()["id"] == session["account"]["id"]
    missing = await client.get("/v1/me")
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "missing_token"
    tampered = session["access_token"][:-4] + (
        "AAAA" if not session["access_token"].endswith("AAAA") else "BBBB"
    )
    assert (await client.get("/v1/me", headers=bearer(tampered))).json()["error"]["code"] == "invalid_token"
    # A token signed by some other key, even with the right claims, is refused.
    from entitle.services.identity.tokens import SigningKey, TokenIssuer

    other = TokenIssuer(
        SigningKey.generate(),
        issuer="entitle",
        access_ttl=context.tokens.access_ttl,
        refresh_ttl=context.tokens.refresh_ttl,
    )
    claims = jwt.decode(session["access_token"], options={"verify_signature": False})
    forged = other.issue_access_token(
        uuid.UUID(claims["sub"]),
        uuid.UUID(claims["sid"]),
        now=__import__("entitle.db.types", fromlist=["utcnow"]).utcnow(),
    )
    assert (await client.get("/v1/me", headers=bearer(forged))).status_code == 401


async def test_refresh_rotates_and_reuse_revokes_the_family(client: httpx.AsyncClient) -> None:
    session = await register(client)
    first = await client.post("/v1/auth/refresh", json={"refresh_token": session["refresh_token"]})
    assert first.status_code == 200
    rotated = first.json()
    assert rotated["refresh_token"] != session["refresh_token"]

    # The old token presented again: someone kept a copy. The whole family ends.
    reused = await client.post("/v1/auth/refresh", json={"refresh_token": session["refresh_token"]})
    assert reused.status_code == 401
    assert reused.json()["error"]["code"] == "refresh_token_reused"
    after = await client.post("/v1/auth/refresh", json={"refresh_token": rotated["refresh_token"]})
    assert after.status_code == 401
    assert after.json()["error"]["code"] == "session_revoked"
    # The access tokens of the ended session stop working too.
    assert (await client.get("/v1/me", headers=bearer(rotated))).status_code == 401


async def test_refresh_token_garbage_is_a_clean_401(client: httpx.AsyncClient) -> None:
    for token in ["rt_nope", "nonsense", "rt_" + "a" * 150]:
        response = await client.post("/v1/auth/refresh", json={"refresh_token": token})
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "invalid_refresh_token"


async def test_logout_ends_the_session_only(client: httpx.AsyncClient) -> None:
    web = await register(client)
    phone = (
        await client.post(
            "/v1/auth/login", json={"email": "person@example.com", "password": DEFAULT_PASSWORD}
        )
    ).json()
    assert (await client.post("/v1/auth/logout", headers=bearer(web))).status_code == 204
    assert (
        await client.post("/v1/auth/refresh", json={"refresh_token": web["refresh_token"]})
    ).status_code == 401
    assert (await client.get("/v1/me", headers=bearer(web))).status_code == 401
    assert (await client.get("/v1/me", headers=bearer(phone))).status_code == 200


@pytest.mark.parametrize("settings_overrides", [{"rate_limit_per_address": "3/minute"}])
async def test_login_is_rate_limited_per_address(
    client: httpx.AsyncClient, settings_overrides: object
) -> None:
    await register(client, "ada@example.com")
    statuses = []
    for _ in range(4):
        response = await client.post(
            "/v1/auth/login", json={"email": "ada@example.com", "password": "wrong password"}
        )
        statuses.append(response.status_code)
    assert statuses == [401, 401, 401, 429]
    limited = await client.post(
        "/v1/auth/login", json={"email": "ada@example.com", "password": DEFAULT_PASSWORD}
    )
    assert limited.status_code == 429
    assert limited.json()["error"]["code"] == "rate_limited"
    assert int(limited.headers["Retry-After"]) >= 1
    # Another address from the same client is not affected by this address's limit.
    other = await client.post(
        "/v1/auth/login", json={"email": "bob@example.com", "password": "wrong password"}
    )
    assert other.status_code == 401


@pytest.mark.parametrize("settings_overrides", [{"rate_limit_per_ip": "5/minute"}])
async def test_sign_in_is_rate_limited_per_client_ip(
    client: httpx.AsyncClient, settings_overrides: object
) -> None:
    statuses = [
        (
            await client.post("/v1/auth/login", json={"email": f"p{i}@example.com", "password": "x" * 12})
        ).status_code
        for i in range(6)
    ]
    assert statuses == [401] * 5 + [429]


async def test_two_registrations_racing_for_one_address_make_one_account(client: httpx.AsyncClient) -> None:
    body = {"email": "race@example.com", "password": DEFAULT_PASSWORD}
    responses = await asyncio.gather(*(client.post("/v1/auth/register", json=body) for _ in range(4)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(201) == 1 and all(s == 409 for s in statuses if s != 201), statuses
    assert all(
        r.json()["error"]["code"] in {"email_taken", "concurrent_change"}
        for r in responses
        if r.status_code == 409
    )
