"""Sign in with Apple / Google and identity linking over HTTP, with tokens from the JWKS stand-in."""

from __future__ import annotations

import hashlib
import time
from typing import Any

import httpx
import pytest

from tests.factories import DEFAULT_PASSWORD, bearer, register
from tests.standins.jwks_server import APPLE_SERVICES_ID, GOOGLE_IOS_CLIENT_ID, JwksStandin, make_key


async def google_sign_in(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post("/v1/auth/google", json={"id_token": token})


async def apple_sign_in(client: httpx.AsyncClient, token: str, **extra: Any) -> httpx.Response:
    return await client.post("/v1/auth/apple", json={"id_token": token, **extra})


async def test_google_sign_in_creates_then_signs_in(client: httpx.AsyncClient, idp: JwksStandin) -> None:
    first = await google_sign_in(client, idp.google_token(sub="g-7", email="pat@gmail.com"))
    assert first.status_code == 201, first.text
    body = first.json()
    assert set(body) >= {"account", "access_token", "refresh_token", "expires_in"}
    assert body["account"]["identities"][0]["provider"] == "google"
    again = await google_sign_in(
        client, idp.google_token(sub="g-7", email="pat@gmail.com", aud=GOOGLE_IOS_CLIENT_ID)
    )
    assert again.status_code == 200
    assert again.json()["account"]["id"] == body["account"]["id"]
    me = await client.get("/v1/me", headers=bearer(again.json()))
    assert me.status_code == 200 and me.json()["app_account_token"] == body["account"]["app_account_token"]


async def test_apple_sign_in_with_hashed_nonce_and_first_time_name(
    client: httpx.AsyncClient, idp: JwksStandin
) -> None:
    nonce = "r4nd0m-n0nce"
    token = idp.apple_token(sub="001.a", nonce=hashlib.sha256(nonce.encode()).hexdigest())
    first = await apple_sign_in(client, token, nonce=nonce, name={"givenName": "Pat", "familyName": "Person"})
    assert first.status_code == 201, first.text
    assert first.json()["account"]["name"] == "Pat Person"
    # Apple sends the name only once; later sign-ins (from the web, raw nonce) must not erase it.
    again = await apple_sign_in(
        client, idp.apple_token(sub="001.a", aud=APPLE_SERVICES_ID, nonce="n2"), nonce="n2"
    )
    assert again.status_code == 200
    assert again.json()["account"]["name"] == "Pat Person"


async def test_apple_nonce_mismatch_is_401(client: httpx.AsyncClient, idp: JwksStandin) -> None:
    response = await apple_sign_in(client, idp.apple_token(nonce="one"), nonce="two")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_identity_token"


@pytest.mark.parametrize("provider", ["apple", "google"])
async def test_forged_expired_and_foreign_tokens_are_401(
    provider: str, client: httpx.AsyncClient, idp: JwksStandin
) -> None:
    mint = idp.apple_token if provider == "apple" else idp.google_token
    bad = [
        mint(key=make_key(kid=idp.current_key.kid)),
        mint(now=time.time() - 7200, lifetime=600),
        mint(aud="com.not.ours"),
        mint(iss="https://issuer.example"),
        "not-a-token",
    ]
    for token in bad:
        response = await client.post(f"/v1/auth/{provider}", json={"id_token": token})
        assert response.status_code == 401, (token, response.text)
        assert response.json()["error"]["code"] == "invalid_identity_token"


async def test_jwks_down_is_503(client: httpx.AsyncClient, idp: JwksStandin) -> None:
    idp.status = 503
    response = await google_sign_in(client, idp.google_token())
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "identity_provider_unavailable"


@pytest.mark.parametrize(
    "body", [{}, {"id_token": 5}, {"id_token": "x", "extra": 1}, {"id_token": "x", "name": [1]}]
)
async def test_bad_bodies_are_422(body: dict[str, Any], client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/auth/apple", json=body)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_request"


async def test_pre_account_takeover_through_a_password_account_fails(
    client: httpx.AsyncClient, idp: JwksStandin
) -> None:
    attacker = await register(client, "victim@example.com")
    victim = await google_sign_in(client, idp.google_token(sub="g-victim", email="Victim@Example.com"))
    # The owner lands in the account registered with their address (nothing it holds is orphaned)...
    assert victim.status_code == 200
    assert victim.json()["account"]["id"] == attacker["account"]["id"]
    assert [i["provider"] for i in victim.json()["account"]["identities"]] == ["google"]
    # ...and whoever registered it is out: the password no longer works, their session has ended.
    login = await client.post(
        "/v1/auth/login", json={"email": "victim@example.com", "password": DEFAULT_PASSWORD}
    )
    assert login.status_code == 401
    assert (await client.get("/v1/me", headers=bearer(attacker))).status_code == 401
    log = await client.get("/v1/me/events", params={"type": "account.secured"}, headers=bearer(victim.json()))
    assert log.json()["total"] == 1


async def test_unverified_google_email_never_links(client: httpx.AsyncClient, idp: JwksStandin) -> None:
    apple = await apple_sign_in(client, idp.apple_token(sub="001.b", email="pat@example.com"))
    google = await google_sign_in(
        client, idp.google_token(sub="g-b", email="pat@example.com", email_verified=False)
    )
    assert (apple.status_code, google.status_code) == (201, 201)
    assert apple.json()["account"]["id"] != google.json()["account"]["id"]


async def test_verified_emails_link_automatically(client: httpx.AsyncClient, idp: JwksStandin) -> None:
    apple = await apple_sign_in(client, idp.apple_token(sub="001.c", email="pat@example.com"))
    google = await google_sign_in(client, idp.google_token(sub="g-c", email="PAT@example.com"))
    assert google.status_code == 200
    assert google.json()["account"]["id"] == apple.json()["account"]["id"]
    assert {i["provider"] for i in google.json()["account"]["identities"]} == {"apple", "google"}


async def test_private_relay_never_auto_links(client: httpx.AsyncClient, idp: JwksStandin) -> None:
    relay = "x8q2@privaterelay.appleid.com"
    google = await google_sign_in(client, idp.google_token(sub="g-d", email=relay))
    apple = await apple_sign_in(client, idp.apple_token(sub="001.d", email=relay, is_private_email="true"))
    assert apple.status_code == 201
    assert apple.json()["account"]["id"] != google.json()["account"]["id"]


async def test_link_and_unlink_while_signed_in(client: httpx.AsyncClient, idp: JwksStandin) -> None:
    me = await register(client, "me@example.com")
    token = idp.google_token(sub="g-e", email="me@gmail.com")
    assert (await client.post("/v1/me/identities/google", json={"id_token": token})).status_code == 401
    linked = await client.post("/v1/me/identities/google", json={"id_token": token}, headers=bearer(me))
    assert linked.status_code == 201, linked.text
    google_id = linked.json()["identity"]["id"]
    again = await client.post("/v1/me/identities/google", json={"id_token": token}, headers=bearer(me))
    assert again.status_code == 200
    # Signing in with the linked Google account lands in the same account.
    signed_in = await google_sign_in(client, idp.google_token(sub="g-e", email="me@gmail.com"))
    assert signed_in.json()["account"]["id"] == me["account"]["id"]

    other = await register(client, "other@example.com")
    taken = await client.post("/v1/me/identities/google", json={"id_token": token}, headers=bearer(other))
    assert (taken.status_code, taken.json()["error"]["code"]) == (409, "identity_already_linked")
    foreign = await client.delete(f"/v1/me/identities/{google_id}", headers=bearer(other))
    assert (foreign.status_code, foreign.json()["error"]["code"]) == (404, "identity_not_found")
    assert (await client.delete("/v1/me/identities/not-a-uuid", headers=bearer(me))).status_code == 404

    apple = await client.post(
        "/v1/me/identities/apple", json={"id_token": idp.apple_token(sub="001.e")}, headers=bearer(me)
    )
    assert apple.status_code == 201
    password_id = next(i["id"] for i in me["account"]["identities"] if i["provider"] == "email")
    for identity_id in (google_id, password_id):
        assert (
            await client.delete(f"/v1/me/identities/{identity_id}", headers=bearer(me))
        ).status_code == 204
    last = await client.delete(f"/v1/me/identities/{apple.json()['identity']['id']}", headers=bearer(me))
    assert (last.status_code, last.json()["error"]["code"]) == (409, "last_identity")
    events = (await client.get("/v1/me/events", params={"type": "identity.*"}, headers=bearer(me))).json()
    assert [e["type"] for e in events["events"]].count("identity.unlinked") == 2


@pytest.mark.parametrize("settings_overrides", [{"rate_limit_per_ip": "3/minute"}], indirect=True)
async def test_sign_ins_are_rate_limited_per_ip(client: httpx.AsyncClient, idp: JwksStandin) -> None:
    statuses = [(await google_sign_in(client, idp.google_token())).status_code for _ in range(3)]
    assert statuses == [201, 200, 200]
    limited = await google_sign_in(client, idp.google_token())
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1


async def test_apple_sign_in_over_a_real_http_server(live_server: Any, idp: JwksStandin) -> None:
    async with httpx.AsyncClient(base_url=live_server.url) as http:
        response = await http.post("/v1/auth/apple", json={"id_token": idp.apple_token(sub="001.live")})
        assert response.status_code == 201, response.text
        me = await http.get("/v1/me", headers=bearer(response.json()))
        assert me.json()["identities"][0]["provider"] == "apple"


async def test_a_provider_address_is_read_as_a_typed_one(client: httpx.AsyncClient, idp: JwksStandin) -> None:
    # Two recipients in one claim: not an address, so the identity is made without one (never mailed).
    listed = await google_sign_in(
        client, idp.google_token(sub="g-list", email="a@example.com, b@example.com")
    )
    assert listed.status_code == 201, listed.text
    account = listed.json()["account"]
    assert account["email"] is None
    assert [(i["email"], i["email_verified"]) for i in account["identities"]] == [(None, False)]
    # A fullwidth domain is the address a person typing it would get.
    wide = await google_sign_in(client, idp.google_token(sub="g-wide", email="Pat@ｅｘａｍｐｌｅ．ｃｏｍ"))
    assert wide.json()["account"]["email"] == "pat@example.com"
