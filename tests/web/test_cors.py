"""The React app on its own origin: CORS for the browser, and Stripe sending people back to it."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from entitle.context import AppContext
from entitle.providers.stripe.catalog_push import push_catalog
from tests.factories import bearer, register
from tests.providers.stripe.conftest import stripe_settings
from tests.standins.stripe import StripeStandin

WEB_APP = "https://app.example.com"


@pytest.fixture
def settings_overrides(standin: StripeStandin) -> dict[str, Any]:
    return {**stripe_settings(standin), "web_origins": f"{WEB_APP}/", "public_url": "https://api.example.com"}


async def test_the_web_app_may_call_from_its_origin_and_others_may_not(client: httpx.AsyncClient) -> None:
    preflight = await client.options(
        "/v1/me/entitlements",
        headers={
            "Origin": WEB_APP,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == WEB_APP
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()

    refused = await client.get("/v1/me/entitlements", headers={"Origin": WEB_APP})
    # Errors carry the headers too, so the browser lets the app read the 401 and sign in again.
    assert refused.status_code == 401 and refused.headers["access-control-allow-origin"] == WEB_APP

    elsewhere = await client.get("/v1/catalog", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in elsewhere.headers


async def test_checkout_returns_to_the_web_app(
    client: httpx.AsyncClient, context: AppContext, standin: StripeStandin
) -> None:
    await push_catalog(context.providers["stripe"].gateway, context.catalog)
    auth = bearer(await register(client, "web@example.com"))
    default = (
        await client.post("/v1/billing/stripe/checkout", json={"product": "pro_monthly"}, headers=auth)
    ).json()
    session = standin.state.get(default["id"], "checkout.session")
    assert session["success_url"].startswith(f"{WEB_APP}/billing/success")

    chosen = await client.post(
        "/v1/billing/stripe/checkout",
        json={"product": "pro_monthly", "success_url": f"{WEB_APP}/thanks", "cancel_url": f"{WEB_APP}/plans"},
        headers=auth,
    )
    assert chosen.status_code == 200
    assert standin.state.get(chosen.json()["id"], "checkout.session")["success_url"] == f"{WEB_APP}/thanks"
    elsewhere = await client.post(
        "/v1/billing/stripe/checkout",
        json={"product": "pro_monthly", "success_url": "https://app.example.com.evil.example/thanks"},
        headers=auth,
    )
    assert elsewhere.status_code == 422 and elsewhere.json()["error"]["code"] == "invalid_redirect_url"
