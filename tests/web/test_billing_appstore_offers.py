"""POST /v1/billing/appstore/offer-signature: a signed promotional offer for an account the catalog allows."""

from __future__ import annotations

import base64
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from entitle.context import AppContext
from entitle.core.subscriptions import SubscriptionStatus
from entitle.db.types import utcnow
from entitle.services.access.subscriptions import apply_subscription_state
from tests.factories import app_store_subscription, bearer, register, stripe_subscription

PATH = "/v1/billing/appstore/offer-signature"
BUNDLE_ID = "com.example.app"
KEY_ID = "OFFERKEY42"
ISSUER_ID = "57246542-96fe-1a63-e053-0824d011072a"
MONTHLY = "com.example.app.pro.monthly"
KEY = ec.generate_private_key(ec.SECP256R1())

CATALOG = """
[entitlements.pro]

[products.pro_monthly]
name = "Pro, monthly"
entitlements = ["pro"]
stripe = { lookup_key = "pro_monthly", unit_amount = 999, currency = "usd", interval = "month" }
app_store = { product_id = "com.example.app.pro.monthly" }

[products.pro_lifetime]
name = "Pro, lifetime"
type = "non_consumable"
entitlements = ["pro"]
app_store = { product_id = "com.example.app.pro.lifetime" }

[offers.winback]
product = "pro_monthly"
app_store_offer_id = "winback3"
eligible = "lapsed"

[offers.welcome]
product = "pro_monthly"
app_store_offer_id = "welcome"
eligible = "new"

[offers.loyal]
product = "pro_monthly"
app_store_offer_id = "loyal"
eligible = "subscribed"
"""


@pytest.fixture
def settings_overrides(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    catalog = tmp_path / "catalog.toml"
    catalog.write_text(CATALOG)
    key_path = tmp_path / "AuthKey_OFFERKEY42.p8"
    key_path.write_bytes(
        KEY.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    settings = {
        "catalog": catalog,
        "apple_bundle_id": BUNDLE_ID,
        "apple_key_id": KEY_ID,
        "apple_issuer_id": ISSUER_ID,
        "apple_private_key_path": key_path,
    }
    if getattr(request, "param", None) == "no key":
        for name in ("apple_key_id", "apple_issuer_id", "apple_private_key_path"):
            del settings[name]
    return settings


async def _account(client: httpx.AsyncClient, email: str) -> tuple[dict[str, str], uuid.UUID, str]:
    session = await register(client, email)
    return bearer(session), uuid.UUID(session["account"]["id"]), session["account"]["app_account_token"]


def _verify_older_form(body: dict[str, Any]) -> None:
    payload = "\u2063".join(
        [
            BUNDLE_ID,
            body["key_id"],
            body["product_id"],
            body["offer_id"],
            body["app_account_token"],
            body["nonce"],
            str(body["timestamp"]),
        ]
    )
    KEY.public_key().verify(base64.b64decode(body["signature"]), payload.encode(), ec.ECDSA(hashes.SHA256()))


async def test_a_lapsed_subscriber_gets_the_winback_offer_signed(
    client: httpx.AsyncClient, context: AppContext
) -> None:
    headers, account_id, token = await _account(client, "lapsed@example.com")
    async with context.database.sessionmaker() as db:
        ended = utcnow() - timedelta(days=20)
        await apply_subscription_state(
            db,
            app_store_subscription(
                account_id,
                store_subscription_id="2000000000000777",
                status=SubscriptionStatus.EXPIRED,
                will_renew=False,
                current_period_end=ended,
            ),
        )
        await db.commit()
    response = await client.post(PATH, json={"product_id": MONTHLY, "offer_id": "winback3"}, headers=headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {
        "product_id",
        "offer_id",
        "key_id",
        "nonce",
        "timestamp",
        "signature",
        "app_account_token",
        "jws",
    }
    assert (body["product_id"], body["offer_id"], body["key_id"]) == (MONTHLY, "winback3", KEY_ID)
    # The older form is bound to the account: its appAccountToken is the application username signed.
    assert body["app_account_token"] == token.lower()
    _verify_older_form(body)
    assert jwt.get_unverified_header(body["jws"])["kid"] == KEY_ID
    claims = jwt.decode(body["jws"], KEY.public_key(), algorithms=["ES256"], audience="promotional-offer")
    assert (claims["bid"], claims["iss"]) == (BUNDLE_ID, ISSUER_ID)
    assert (claims["productId"], claims["offerIdentifier"]) == (MONTHLY, "winback3")
    assert claims["transactionId"] == "2000000000000777"
    # A second request is a second, different signature (a fresh nonce each time).
    again = await client.post(PATH, json={"product_id": MONTHLY, "offer_id": "winback3"}, headers=headers)
    assert again.status_code == 200 and again.json()["nonce"] != body["nonce"]


async def test_a_new_account_gets_the_welcome_offer_but_not_the_winback(client: httpx.AsyncClient) -> None:
    headers, _, _ = await _account(client, "new@example.com")
    welcome = await client.post(PATH, json={"product_id": MONTHLY, "offer_id": "welcome"}, headers=headers)
    assert welcome.status_code == 200, welcome.text
    _verify_older_form(welcome.json())
    assert "transactionId" not in jwt.decode(welcome.json()["jws"], options={"verify_signature": False})
    winback = await client.post(PATH, json={"product_id": MONTHLY, "offer_id": "winback3"}, headers=headers)
    assert winback.status_code == 403
    assert winback.json()["error"] == {
        "code": "offer_not_eligible",
        "message": "This offer is for people whose subscription has ended.",
    }


async def test_a_subscriber_on_the_web_is_refused_the_winback_and_the_welcome(
    client: httpx.AsyncClient, context: AppContext
) -> None:
    headers, account_id, _ = await _account(client, "subscriber@example.com")
    async with context.database.sessionmaker() as db:
        await apply_subscription_state(db, stripe_subscription(account_id))
        await db.commit()
    for offer_id in ("winback3", "welcome"):
        response = await client.post(
            PATH, json={"product_id": MONTHLY, "offer_id": offer_id}, headers=headers
        )
        assert response.status_code == 403, offer_id
        assert response.json()["error"]["code"] == "offer_not_eligible"
    loyal = await client.post(PATH, json={"product_id": MONTHLY, "offer_id": "loyal"}, headers=headers)
    assert loyal.status_code == 200, loyal.text


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"product_id": "com.example.unknown", "offer_id": "winback3"}, 404, "unknown_product"),
        ({"product_id": MONTHLY, "offer_id": "nope"}, 404, "unknown_offer"),
        # An offer is looked up on its own product: the same id on another product is not it.
        ({"product_id": "com.example.app.pro.lifetime", "offer_id": "winback3"}, 404, "unknown_offer"),
        ({"product_id": MONTHLY}, 422, "invalid_request"),
        ({"product_id": MONTHLY, "offer_id": ""}, 422, "invalid_request"),
        ({"product_id": MONTHLY, "offer_id": "x" * 65}, 422, "invalid_request"),
        ({"product_id": MONTHLY, "offer_id": "welcome", "account": "someone"}, 422, "invalid_request"),
    ],
)
async def test_unknown_and_malformed_requests_are_refused(
    client: httpx.AsyncClient, body: dict[str, Any], status: int, code: str
) -> None:
    headers, _, _ = await _account(client, "asker@example.com")
    response = await client.post(PATH, json=body, headers=headers)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code


async def test_only_signed_in_accounts_get_offers(client: httpx.AsyncClient) -> None:
    response = await client.post(PATH, json={"product_id": MONTHLY, "offer_id": "welcome"})
    assert response.status_code == 401


@pytest.mark.parametrize("settings_overrides", ["no key"], indirect=True)
async def test_without_the_in_app_purchase_key_offers_are_not_configured(client: httpx.AsyncClient) -> None:
    headers, _, _ = await _account(client, "early@example.com")
    response = await client.post(PATH, json={"product_id": MONTHLY, "offer_id": "welcome"}, headers=headers)
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "appstore_not_configured"
    assert "ENTITLE_APPLE_PRIVATE_KEY_PATH" in error["message"]
