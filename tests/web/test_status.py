"""GET /v1/status: what both clients may offer, for every combination of configured stores and sign-ins."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

NOTHING: dict[str, Any] = {
    "stores": {
        "stripe": {"configured": False, "mode": None},
        "app_store": {"configured": False, "environment": None},
    },
    "sign_in": {"password": True, "apple": False, "google": False},
    "guest_checkout": False,
}

TEST_KEY = "sk_test_" + "t" * 24
LIVE_KEY = "sk_live_" + "l" * 24


def merged(**changes: Any) -> dict[str, Any]:
    body = json.loads(json.dumps(NOTHING))
    for path, value in changes.items():
        *parents, leaf = path.split("__")
        target = body
        for name in parents:
            target = target[name]
        target[leaf] = value
    return body


CASES = [
    pytest.param({}, NOTHING, id="nothing configured"),
    pytest.param(
        {"stripe_secret_key": TEST_KEY},
        merged(stores__stripe={"configured": True, "mode": "test"}),
        id="stripe test key",
    ),
    pytest.param(
        {"stripe_secret_key": "rk_test_" + "r" * 24},
        merged(stores__stripe={"configured": True, "mode": "test"}),
        id="stripe restricted test key",
    ),
    pytest.param(
        {"stripe_secret_key": LIVE_KEY},
        merged(stores__stripe={"configured": True, "mode": "live"}),
        id="stripe live key",
    ),
    pytest.param(
        {"apple_bundle_id": "com.example.app"},
        merged(stores__app_store={"configured": True, "environment": "sandbox"}),
        id="app store without the app id: sandbox",
    ),
    pytest.param(
        {"apple_bundle_id": "com.example.app", "apple_app_id": 1234},
        merged(stores__app_store={"configured": True, "environment": "production"}),
        id="app store with the app id: production",
    ),
    pytest.param(
        {"apple_app_id": 1234},
        NOTHING,
        id="app id without a bundle id verifies nothing",
    ),
    pytest.param(
        {"apple_signin_client_ids": "com.example.app"},
        merged(sign_in__apple=True),
        id="sign in with apple",
    ),
    pytest.param(
        {"google_client_ids": "123.apps.googleusercontent.com"},
        merged(sign_in__google=True),
        id="sign in with google",
    ),
    pytest.param(
        {"guest_checkout": True},
        NOTHING,
        id="guest checkout without stripe is off",
    ),
    pytest.param(
        {"guest_checkout": True, "stripe_secret_key": TEST_KEY},
        merged(stores__stripe={"configured": True, "mode": "test"}, guest_checkout=True),
        id="guest checkout with stripe",
    ),
    pytest.param(
        {
            "stripe_secret_key": LIVE_KEY,
            "apple_bundle_id": "com.example.app",
            "apple_app_id": 1234,
            "apple_signin_client_ids": "com.example.app",
            "google_client_ids": "123.apps.googleusercontent.com",
            "guest_checkout": True,
        },
        {
            "stores": {
                "stripe": {"configured": True, "mode": "live"},
                "app_store": {"configured": True, "environment": "production"},
            },
            "sign_in": {"password": True, "apple": True, "google": True},
            "guest_checkout": True,
        },
        id="everything",
    ),
]


@pytest.mark.parametrize(("settings_overrides", "expected"), CASES, indirect=["settings_overrides"])
async def test_status_says_what_is_configured(client: httpx.AsyncClient, expected: dict[str, Any]) -> None:
    response = await client.get("/v1/status")
    assert response.status_code == 200
    assert response.json() == expected
    assert response.headers["cache-control"] == "public, max-age=60"


@pytest.fixture
def settings_overrides(request: pytest.FixtureRequest) -> dict[str, Any]:
    return dict(getattr(request, "param", {}))


@pytest.mark.parametrize(
    "settings_overrides",
    [{"stripe_secret_key": LIVE_KEY, "apple_bundle_id": "com.example.app", "apple_app_id": 1234}],
    indirect=True,
)
async def test_status_reveals_no_secret_and_no_setting_name(client: httpx.AsyncClient) -> None:
    # Anyone may ask: nobody signs in, and the answer holds neither the key nor where it came from.
    response = await client.get("/v1/status")
    assert response.status_code == 200
    text = response.text
    assert LIVE_KEY not in text and "sk_live" not in text
    assert "ENTITLE_" not in text and "com.example.app" not in text and "1234" not in text
