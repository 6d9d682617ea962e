"""Input shaped to break a parser or a date: deeply nested JSON, absurd expiry times. Never a 500."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from entitle.context import AppContext
from entitle.untrusted_json import JSONTooDeep, loads
from tests.factories import register
from tests.providers.stripe.conftest import stripe_settings
from tests.standins.appstore.fixtures import (  # noqa: F401  (fixtures this module uses)
    appstore_chain,
    appstore_root_path,
    appstore_settings,
    appstore_signer,
)
from tests.standins.appstore.signing import AppStoreSigner
from tests.standins.stripe import StripeStandin, sign

NESTED = "[" * 1000 + "]" * 1000
VERY_NESTED = "[" * 100_000


@pytest.fixture
def settings_overrides(
    standin: StripeStandin,
    appstore_root_path: Path,  # noqa: F811  (the imported fixture)
) -> dict[str, Any]:
    return {
        **stripe_settings(standin),
        **appstore_settings(appstore_root_path),
        "apple_signin_client_ids": "com.example.app",
    }


def _segment(value: bytes) -> str:
    return base64.urlsafe_b64encode(value).rstrip(b"=").decode()


def nested_jws(where: str) -> str:
    """A compact JWS whose header or payload is `[` x 1000: nobody can sign it, but it must be refused."""
    header = NESTED.encode() if where == "header" else b'{"alg":"ES256"}'
    payload = NESTED.encode() if where == "payload" else b"{}"
    return f"{_segment(header)}.{_segment(payload)}.{_segment(b'sig')}"


def test_the_parser_refuses_deep_documents_as_value_errors() -> None:
    assert loads('{"a": [[1]]}') == {"a": [[1]]}
    for document in (NESTED, VERY_NESTED, "[" * 65 + "]" * 65):
        with pytest.raises(JSONTooDeep):
            loads(document)
    assert issubclass(JSONTooDeep, ValueError)


@pytest.mark.parametrize("body", [NESTED, VERY_NESTED, '{"signedPayload": ' + NESTED + "}"])
@pytest.mark.parametrize("path", ["/webhooks/appstore", "/webhooks/apple/signin"])
async def test_nested_webhook_bodies_are_a_400(client: httpx.AsyncClient, path: str, body: str) -> None:
    response = await client.post(path, content=body.encode(), headers={"content-type": "application/json"})
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["error"]["code"]


@pytest.mark.parametrize("where", ["header", "payload"])
async def test_a_nested_signed_payload_is_refused(client: httpx.AsyncClient, where: str) -> None:
    response = await client.post("/webhooks/appstore", json={"signedPayload": nested_jws(where)})
    assert 400 <= response.status_code < 500, response.text


@pytest.mark.parametrize("where", ["header", "payload"])
async def test_a_nested_signed_transaction_is_refused(client: httpx.AsyncClient, where: str) -> None:
    session = await register(client)
    response = await client.post(
        "/v1/billing/appstore/transactions",
        json={"signed_transaction": nested_jws(where)},
        headers={"Authorization": f"Bearer {session['access_token']}"},
    )
    assert 400 <= response.status_code < 500, response.text


async def test_a_deeply_nested_json_body_on_a_typed_route_is_a_400(client: httpx.AsyncClient) -> None:
    session = await register(client)
    response = await client.post(
        "/v1/billing/appstore/transactions",
        content=('{"signed_transaction": ' + NESTED + "}").encode(),
        headers={"Authorization": f"Bearer {session['access_token']}", "content-type": "application/json"},
    )
    assert 400 <= response.status_code < 500, response.text


async def test_a_validly_signed_deeply_nested_stripe_event_is_a_400(
    client: httpx.AsyncClient, standin: StripeStandin
) -> None:
    for document in (NESTED, '{"id": "evt_1", "type": "x", "data": {"object": ' + NESTED + "}}"):
        body = document.encode()
        response = await client.post(
            "/webhooks/stripe", content=body, headers={"Stripe-Signature": sign(body, standin.webhook_secret)}
        )
        assert response.status_code == 400, response.text


async def test_an_access_token_expiring_in_the_year_3e12_is_refused(
    client: httpx.AsyncClient, context: AppContext
) -> None:
    session = await register(client)
    claims = jwt.decode(session["access_token"], options={"verify_signature": False})
    claims["exp"] = 1e20
    claims["iat"] = int(time.time())
    key = context.tokens.key
    forged = jwt.encode(claims, key.private_key, "ES256", headers={"kid": key.kid})
    response = await client.get("/v1/me", headers={"Authorization": f"Bearer {forged}"})
    assert response.status_code == 401, response.text


async def test_a_signed_notification_with_a_deep_claim_is_refused(
    client: httpx.AsyncClient,
    appstore_signer: AppStoreSigner,  # noqa: F811  (the imported fixture)
) -> None:
    deep: Any = []
    for _ in range(200):
        deep = [deep]
    signed = appstore_signer.sign({"notificationType": "TEST", "data": {"deep": deep}})
    response = await client.post("/webhooks/appstore", content=json.dumps({"signedPayload": signed}))
    assert 400 <= response.status_code < 500, response.text
