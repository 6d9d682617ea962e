"""Text PostgreSQL cannot store (NUL, more than a column holds) is a 422 naming the field, on both."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import ADMIN_KEY
from tests.factories import bearer, register
from tests.standins.jwks_server import (
    APPLE_BUNDLE_ID,
    GOOGLE_WEB_CLIENT_ID,
    JwksStandin,
)

SERVER = {"Authorization": f"Bearer {ADMIN_KEY}"}
APP_ISSUER = "https://auth.example-app.com/"
APP_AUDIENCE = "entitle-api"


@pytest.fixture
def idp() -> Iterator[JwksStandin]:
    with JwksStandin() as standin:
        yield standin


@pytest.fixture
def settings_overrides(idp: JwksStandin) -> dict[str, Any]:
    return {
        "apple_signin_client_ids": [APPLE_BUNDLE_ID],
        "apple_signin_jwks_url": idp.url,
        "google_client_ids": [GOOGLE_WEB_CLIENT_ID],
        "google_jwks_url": idp.url,
        # The app's own issuer signs with the same stand-in's key.
        "external_auth_jwks_url": idp.url,
        "external_auth_issuer": APP_ISSUER,
        "external_auth_audience": APP_AUDIENCE,
    }


def app_token(idp: JwksStandin, sub: str) -> str:
    now = int(time.time())
    return idp.sign({"iss": APP_ISSUER, "aud": APP_AUDIENCE, "sub": sub, "iat": now, "exp": now + 300})


def refused(response: httpx.Response, field: str) -> None:
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert field in error["message"], error["message"]


@pytest.mark.parametrize(
    "parameter", ["email", "external_id", "stripe_customer_id", "original_transaction_id"]
)
async def test_a_support_lookup_with_a_nul_is_a_422_naming_the_parameter(
    client: httpx.AsyncClient, parameter: str
) -> None:
    response = await client.get("/v1/accounts", params={parameter: "pat\x00@example.com"}, headers=SERVER)
    refused(response, f"`{parameter}`")


async def test_a_lookup_longer_than_any_stored_value_finds_nothing(client: httpx.AsyncClient) -> None:
    # original_transaction_id is a VARCHAR(64): PostgreSQL and SQLite both just find nothing.
    response = await client.get("/v1/accounts", params={"original_transaction_id": "2" * 300}, headers=SERVER)
    assert response.status_code == 200 and response.json() == {"accounts": []}


@pytest.mark.parametrize("claim", ["sub", "email"])
@pytest.mark.parametrize("provider", ["apple", "google"])
async def test_a_provider_token_with_a_nul_in_a_claim_is_a_422(
    client: httpx.AsyncClient, idp: JwksStandin, provider: str, claim: str
) -> None:
    value = "001.pat\x00" if claim == "sub" else "pat\x00@example.com"
    mint = idp.apple_token if provider == "apple" else idp.google_token
    response = await client.post(f"/v1/auth/{provider}", json={"id_token": mint(**{claim: value})})
    refused(response, f"`{claim}`")


async def test_a_google_name_with_a_nul_is_a_422(client: httpx.AsyncClient, idp: JwksStandin) -> None:
    response = await client.post("/v1/auth/google", json={"id_token": idp.google_token(name="Pat\x00")})
    refused(response, "`name`")


@pytest.mark.parametrize("name", ["Pat\x00", {"givenName": "Pat\x00", "familyName": "Person"}])
async def test_an_apple_name_with_a_nul_is_a_422(
    client: httpx.AsyncClient, idp: JwksStandin, name: Any
) -> None:
    response = await client.post("/v1/auth/apple", json={"id_token": idp.apple_token(), "name": name})
    refused(response, "`name")


async def test_a_long_google_name_is_clipped_the_same_on_both_databases(
    client: httpx.AsyncClient, idp: JwksStandin
) -> None:
    response = await client.post("/v1/auth/google", json={"id_token": idp.google_token(name="P" * 300)})
    assert response.status_code == 201, response.text
    assert response.json()["account"]["name"] == "P" * 200


async def test_an_external_token_whose_sub_has_a_nul_is_a_422(
    client: httpx.AsyncClient, idp: JwksStandin
) -> None:
    refused(await client.get("/v1/me", headers=bearer(app_token(idp, "user\x0042"))), "`sub`")


async def test_an_external_sub_longer_than_an_external_id_is_a_422(
    client: httpx.AsyncClient, idp: JwksStandin
) -> None:
    # external_id is a VARCHAR(255): SQLite stored the longer one, PostgreSQL failed; now both refuse.
    refused(await client.get("/v1/me", headers=bearer(app_token(idp, "u" * 256))), "`sub`")
    assert (await client.get("/v1/me", headers=bearer(app_token(idp, "u" * 255)))).status_code == 200


async def test_a_body_field_with_a_nul_is_a_422_naming_it(client: httpx.AsyncClient) -> None:
    account = (await register(client, "pat@example.com"))["account"]["id"]
    response = await client.post(
        f"/v1/accounts/{account}/grants",
        json={"entitlement": "pro", "expires_at": "2100-01-01T00:00:00Z", "reason": "support\x00"},
        headers=SERVER,
    )
    refused(response, "`reason`")


async def test_a_path_parameter_with_a_nul_is_a_422_naming_it(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/accounts/pat%00/entitlements", headers=SERVER)
    refused(response, "`account_id`")
