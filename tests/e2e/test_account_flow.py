"""The main account flows over real HTTP: the app under uvicorn on a loopback port."""

from __future__ import annotations

import httpx
import jwt

from tests.conftest import LiveServer
from tests.factories import DEFAULT_PASSWORD, bearer


async def test_web_and_phone_share_one_account_over_real_http(live_server: LiveServer) -> None:
    async with (
        httpx.AsyncClient(base_url=live_server.url, timeout=10) as web,
        httpx.AsyncClient(base_url=live_server.url, timeout=10) as phone,
    ):
        assert (await web.get("/healthz")).json() == {"status": "ok"}
        registered = await web.post(
            "/v1/auth/register", json={"email": "ada@example.com", "password": DEFAULT_PASSWORD}
        )
        assert registered.status_code == 201
        web_session = registered.json()

        signed_in = await phone.post(
            "/v1/auth/login", json={"email": "ADA@example.com", "password": DEFAULT_PASSWORD}
        )
        assert signed_in.status_code == 200
        phone_session = signed_in.json()
        assert phone_session["account"]["id"] == web_session["account"]["id"]
        assert phone_session["account"]["app_account_token"] == web_session["account"]["app_account_token"]

        # The app's own backend verifies the access token offline with the published keys.
        jwks = jwt.PyJWKClient(f"{live_server.url}/.well-known/jwks.json")
        key = jwks.get_signing_key_from_jwt(phone_session["access_token"])
        claims = jwt.decode(phone_session["access_token"], key.key, algorithms=["ES256"], issuer="entitle")
        assert claims["sub"] == web_session["account"]["id"]

        rotated = (
            await phone.post("/v1/auth/refresh", json={"refresh_token": phone_session["refresh_token"]})
        ).json()
        me = await phone.get("/v1/me", headers=bearer(rotated))
        assert me.status_code == 200 and me.json()["email"] == "ada@example.com"

        events = (await web.get("/v1/me/events", headers=bearer(web_session))).json()["events"]
        assert [e["type"] for e in events] == ["account.created"]

        assert (await phone.post("/v1/auth/logout", headers=bearer(rotated))).status_code == 204
        assert (await phone.get("/v1/me", headers=bearer(rotated))).status_code == 401
        assert (await web.get("/v1/me", headers=bearer(web_session))).status_code == 200

        assert (await web.delete("/v1/me", headers=bearer(web_session))).status_code == 204
        gone = await web.post(
            "/v1/auth/login", json={"email": "ada@example.com", "password": DEFAULT_PASSWORD}
        )
        assert gone.status_code == 401


async def test_bad_input_over_real_http_is_never_a_500(live_server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=live_server.url, timeout=10) as http:
        cases = [
            http.post("/v1/auth/register", content=b"{", headers={"content-type": "application/json"}),
            http.post("/v1/auth/login", content=b"\xff\xfe", headers={"content-type": "application/json"}),
            http.post("/v1/auth/refresh", json={"refresh_token": 12}),
            http.post(
                "/v1/auth/register", content=b"x" * 400_000, headers={"content-type": "application/json"}
            ),
            http.get("/v1/me", headers={"Authorization": "Bearer \u00e9t\u00e9".encode("latin-1")}),
        ]
        for request in cases:
            response = await request
            assert 400 <= response.status_code < 500, response.text
            assert response.json()["error"]["code"]
