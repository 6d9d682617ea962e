"""A provider that is not configured answers 503, and the message names the setting to set."""

from __future__ import annotations

import httpx
import pytest

from tests.factories import bearer, register


@pytest.mark.parametrize(
    ("method", "path", "body", "setting"),
    [
        ("POST", "/webhooks/stripe", b'{"id": "evt_1"}', "ENTITLE_STRIPE_WEBHOOK_SECRET"),
        ("POST", "/v1/auth/apple", b'{"id_token": "a.b.c"}', "ENTITLE_APPLE_SIGNIN_CLIENT_IDS"),
        ("POST", "/v1/auth/google", b'{"id_token": "a.b.c"}', "ENTITLE_GOOGLE_CLIENT_IDS"),
        ("POST", "/v1/billing/stripe/checkout", b'{"product": "pro_monthly"}', "ENTITLE_STRIPE_SECRET_KEY"),
        ("POST", "/webhooks/appstore", b'{"signedPayload": "a.b.c"}', "ENTITLE_APPLE_BUNDLE_ID"),
        (
            "POST",
            "/v1/billing/appstore/offer-signature",
            b'{"product_id": "com.example.app.pro.monthly", "offer_id": "winback3"}',
            "ENTITLE_APPLE_PRIVATE_KEY_PATH",
        ),
    ],
)
async def test_unconfigured_providers_name_the_missing_setting(
    client: httpx.AsyncClient, method: str, path: str, body: bytes, setting: str
) -> None:
    headers = {"content-type": "application/json", "Stripe-Signature": "t=1,v1=x"}
    if path.startswith("/v1/billing"):
        headers |= bearer(await register(client))
    response = await client.request(method, path, content=body, headers=headers)
    assert response.status_code == 503, response.text
    assert setting in response.json()["error"]["message"]
