"""Nothing a client can send produces a 5xx: every route, fed random bodies, paths and headers.

Every provider is configured (against local stand-ins), so a 5xx here can only come from input the
code did not expect. Each answer must also carry the one error shape.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import ADMIN_KEY
from tests.factories import register
from tests.providers.stripe.conftest import stripe_settings
from tests.standins.appstore.fixtures import (  # noqa: F401  (fixtures this module uses)
    appstore_chain,
    appstore_root_path,
    appstore_settings,
)
from tests.standins.jwks_server import JwksStandin
from tests.standins.stripe import StripeStandin

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
FIELD_NAMES = st.sampled_from(
    [
        "email",
        "password",
        "refresh_token",
        "id_token",
        "nonce",
        "name",
        "product",
        "signed_transaction",
        "signedPayload",
        "payload",
        "entitlement",
        "expires_at",
        "starts_at",
        "url",
        "event_types",
        "success_url",
        "token",
        "current_password",
        "authorization_code",
    ]
)
# Bodies that look like what the routes expect, with wrong or odd values.
ALMOST_RIGHT = st.dictionaries(FIELD_NAMES, JSON, max_size=5)
# Path segments as a client can send them: printable text, percent-encoded by the client.
PATH_PARTS = st.text(min_size=1, max_size=40).map(lambda s: quote(s, safe=""))


@pytest.fixture
def idp() -> Iterator[JwksStandin]:
    with JwksStandin() as running:
        yield running


@pytest.fixture
def settings_overrides(
    standin: StripeStandin,
    appstore_root_path: Path,  # noqa: F811  (the imported fixture)
    idp: JwksStandin,
) -> dict[str, Any]:
    return {
        **stripe_settings(standin),
        **appstore_settings(appstore_root_path),
        "apple_signin_client_ids": "com.example.app",
        "google_client_ids": "web-client.apps.googleusercontent.com",
        "apple_signin_jwks_url": idp.url,
        "google_jwks_url": idp.url,
        "external_auth_jwks_url": idp.url,
        "external_auth_issuer": "https://auth.example.com/",
        "external_auth_audience": "example-api",
    }


def fill_path(path: str, value: str) -> str:
    while "{" in path:
        start, end = path.index("{"), path.index("}")
        path = path[:start] + value + path[end + 1 :]
    return path


def assert_no_server_error(response: httpx.Response) -> None:
    assert response.status_code < 500, f"{response.request.method} {response.request.url}: {response.text}"
    if response.status_code >= 400:
        error = response.json()["error"]
        assert isinstance(error["code"], str) and isinstance(error["message"], str)


async def test_every_route_answers_garbage_with_a_4xx(client: httpx.AsyncClient) -> None:
    session = await register(client, "fuzz@example.com")
    headers_options = [
        {},
        {"Authorization": f"Bearer {session['access_token']}"},
        {"Authorization": f"Bearer {ADMIN_KEY}"},
        {"Authorization": "Bearer not.a.token", "Stripe-Signature": "t=1,v1=abc"},
    ]
    spec = (await client.get("/openapi.json")).json()
    all_routes = sorted((method.upper(), path) for path, item in spec["paths"].items() for method in item)
    assert ("POST", "/webhooks/stripe") in all_routes and (
        "POST",
        "/v1/billing/appstore/transactions",
    ) in all_routes

    # Hypothesis draws the requests (a dozen per route); they are sent afterwards, in this test's loop.
    drawn: list[tuple[tuple[str, str], bytes, str, dict[str, str]]] = []

    @settings(
        max_examples=12 * len(all_routes),
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
    )
    @given(
        body=st.one_of(
            ALMOST_RIGHT.map(lambda b: json.dumps(b).encode()),
            JSON.map(lambda b: json.dumps(b).encode()),
            st.binary(max_size=200),
        ),
        part=PATH_PARTS,
        headers=st.sampled_from(headers_options),
    )
    def draw(body: bytes, part: str, headers: dict[str, str]) -> None:
        # Round-robin over the routes, so every one gets its share whatever Hypothesis draws.
        drawn.append((all_routes[len(drawn) % len(all_routes)], body, part, headers))

    draw()
    assert {route for route, *_ in drawn} == set(all_routes)
    for (method, path), body, part, headers in drawn:
        if path == "/v1/me/entitlements/stream" and headers is headers_options[1]:
            # A signed-in stream never ends (the in-process client would wait for its last byte); its
            # refusals are fuzzed here with the other headers, and the stream itself is tested over
            # real HTTP in test_streams.py.
            continue
        response = await client.request(
            method,
            fill_path(path, part),
            content=body if method != "GET" else None,
            headers={**headers, "Content-Type": "application/json"},
        )
        assert_no_server_error(response)
