"""Apps that keep their own sign-in: their identity provider's tokens work on every signed-in route."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from tests.conftest import ADMIN_KEY
from tests.factories import bearer, register
from tests.standins.jwks_server import JwksStandin

ISSUER = "https://auth.example-app.com/"
AUDIENCE = "entitle-api"


class AppIdentityProvider:
    """The app's own issuer: an RS256 key from the stand-in and an ES256 key served beside it."""

    def __init__(self, jwks: JwksStandin) -> None:
        self.jwks = jwks
        self.ec_key = ec.generate_private_key(ec.SECP256R1())
        public = json.loads(ECAlgorithm.to_jwk(self.ec_key.public_key()))
        jwks.extra_jwks.append(public | {"kid": "ec-1", "alg": "ES256", "use": "sig"})

    def claims(self, sub: str, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        return {"iss": ISSUER, "aud": AUDIENCE, "sub": sub, "iat": now, "exp": now + 300} | overrides

    def rs256(self, sub: str, **overrides: Any) -> str:
        return self.jwks.sign(self.claims(sub, **overrides))

    def es256(self, sub: str, **overrides: Any) -> str:
        return jwt.encode(
            self.claims(sub, **overrides), self.ec_key, algorithm="ES256", headers={"kid": "ec-1"}
        )


@pytest.fixture
def app_idp() -> Iterator[AppIdentityProvider]:
    with JwksStandin() as jwks:
        yield AppIdentityProvider(jwks)


@pytest.fixture
def settings_overrides(app_idp: AppIdentityProvider) -> dict[str, Any]:
    return {
        "external_auth_jwks_url": app_idp.jwks.url,
        "external_auth_issuer": ISSUER,
        "external_auth_audience": AUDIENCE,
    }


async def test_a_token_from_the_apps_issuer_makes_and_then_finds_its_account(
    client: httpx.AsyncClient, app_idp: AppIdentityProvider
) -> None:
    first = await client.get("/v1/me", headers=bearer(app_idp.rs256("user-42", email="pat@example.com")))
    assert first.status_code == 200, first.text
    assert first.json()["external_id"] == "user-42"
    again = await client.get("/v1/me", headers=bearer(app_idp.es256("user-42")))
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    entitlements = await client.get("/v1/me/entitlements", headers=bearer(app_idp.es256("user-42")))
    assert entitlements.status_code == 200 and entitlements.json()["entitlements"]["pro"]["active"] is False
    etag = entitlements.headers["etag"]
    unchanged = await client.get(
        "/v1/me/entitlements", headers={**bearer(app_idp.es256("user-42")), "If-None-Match": etag}
    )
    assert unchanged.status_code == 304
    # Browsers of such apps open the entitlement stream with a ticket too.
    ticket = await client.post("/v1/me/stream-tickets", headers=bearer(app_idp.rs256("user-42")))
    assert ticket.status_code == 201 and ticket.json()["ticket"].startswith("st_")
    found = await client.get(
        "/v1/accounts", params={"external_id": "user-42"}, headers={"Authorization": f"Bearer {ADMIN_KEY}"}
    )
    assert [a["id"] for a in found.json()["accounts"]] == [first.json()["id"]]
    # A sign-out from entitle is a no-op: the app's own provider owns its sessions.
    assert (await client.post("/v1/auth/logout", headers=bearer(app_idp.rs256("user-42")))).status_code == 204


@pytest.mark.parametrize(
    "overrides",
    [
        {"aud": "someone-else"},
        {"exp": int(time.time()) - 3600},
        {"iat": int(time.time()) + 3600},
    ],
)
async def test_wrong_audience_expired_or_future_tokens_are_refused(
    client: httpx.AsyncClient, app_idp: AppIdentityProvider, overrides: dict[str, Any]
) -> None:
    answer = await client.get("/v1/me", headers=bearer(app_idp.es256("user-1", **overrides)))
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "invalid_identity_token"


async def test_a_forged_signature_is_refused_and_our_own_tokens_still_work(
    client: httpx.AsyncClient, app_idp: AppIdentityProvider
) -> None:
    forged = jwt.encode(
        app_idp.claims("user-1"),
        ec.generate_private_key(ec.SECP256R1()),
        algorithm="ES256",
        headers={"kid": "ec-1"},
    )
    assert (await client.get("/v1/me", headers=bearer(forged))).status_code == 401
    session = await register(client, "pat@example.com")
    assert (await client.get("/v1/me", headers=bearer(session))).status_code == 200


async def test_a_token_from_the_apps_issuer_opens_the_account_page_signed_in(
    client: httpx.AsyncClient, app_idp: AppIdentityProvider
) -> None:
    token = app_idp.rs256("user-42", email="pat@example.com")
    answer = await client.post("/v1/me/page-link", json={"page": "account"}, headers=bearer(token))
    assert answer.status_code == 200, answer.text
    opened = await client.get(answer.json()["url"].removeprefix("http://testserver"))
    assert opened.headers["location"] == "/account"
    assert "pat@example.com" in (await client.get("/account")).text


async def test_an_invalid_address_in_the_apps_token_is_no_address(
    client: httpx.AsyncClient, app_idp: AppIdentityProvider
) -> None:
    token = app_idp.rs256("user-7", email="a@example.com, b@example.com")
    me = await client.get("/v1/me", headers=bearer(token))
    assert me.status_code == 200, me.text
    assert me.json()["email"] is None
