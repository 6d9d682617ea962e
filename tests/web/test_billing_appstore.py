"""POST /v1/billing/appstore/transactions: the iPhone app posts StoreKit 2 purchases for its account."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select

from entitle.context import AppContext
from entitle.core.subscriptions import Environment, Store, SubscriptionState, SubscriptionStatus
from entitle.providers.appstore.models import AppStoreOwnership, AppStoreOwnershipChange
from entitle.services.subscriptions import apply_subscription_state
from tests.factories import bearer, register
from tests.standins.appstore import STATUS_ACTIVE, AppStoreSigner, ms
from tests.standins.appstore import fixtures as appstore_fixtures
from tests.standins.appstore.fixtures import StandIn, appstore_settings, purchase

appstore_chain = appstore_fixtures.appstore_chain
appstore_root_path = appstore_fixtures.appstore_root_path
appstore_signer = appstore_fixtures.appstore_signer
appstore_api = appstore_fixtures.appstore_api

PATH = "/v1/billing/appstore/transactions"


@pytest.fixture
def settings_overrides(request: pytest.FixtureRequest, appstore_root_path: Path) -> dict[str, Any]:
    return appstore_settings(appstore_root_path, **getattr(request, "param", {}))


@pytest.fixture(autouse=True)
def _wire_api(request: pytest.FixtureRequest, settings_overrides: dict[str, Any]) -> None:
    # When a test asks for the stand-in, point the app's settings at it before the context is built.
    if "appstore_api" in request.fixturenames:
        stand_in: StandIn = request.getfixturevalue("appstore_api")
        settings_overrides.update(stand_in.settings(Path(settings_overrides["apple_root_certs"])))


async def _account(client: httpx.AsyncClient, email: str) -> tuple[dict[str, str], uuid.UUID, uuid.UUID]:
    session = await register(client, email)
    account = session["account"]
    return bearer(session), uuid.UUID(account["id"]), uuid.UUID(account["app_account_token"])


async def _post(client: httpx.AsyncClient, headers: dict[str, str], signed: str) -> httpx.Response:
    return await client.post(PATH, json={"signed_transaction": signed}, headers=headers)


async def _events(client: httpx.AsyncClient, headers: dict[str, str], type: str) -> list[dict[str, Any]]:
    response = await client.get("/v1/me/events", params={"type": type}, headers=headers)
    assert response.status_code == 200
    events: list[dict[str, Any]] = response.json()["events"]
    return events


async def test_purchase_grants_the_entitlement(
    client: httpx.AsyncClient, appstore_signer: AppStoreSigner
) -> None:
    headers, account_id, token = await _account(client, "buyer@example.com")
    signed = appstore_signer.sign(purchase(appstore_signer, original="100", token=token))
    response = await _post(client, headers, signed)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["entitlements"]["pro"]["active"] is True
    assert body["entitlements"]["pro"]["store"] == "app_store"
    assert [(s["store"], s["id"], s["status"]) for s in body["subscriptions"]] == [
        ("app_store", "100", "active")
    ]
    [event] = await _events(client, headers, "appstore.ownership_changed")
    assert event["data"]["reason"] == "purchase" and event["data"]["to_account_id"] == str(account_id)
    # Posting the same transaction again (StoreKit re-delivers) changes nothing.
    again = await _post(client, headers, signed)
    assert again.status_code == 200 and again.json()["entitlements"] == body["entitlements"]
    assert len(await _events(client, headers, "appstore.ownership_changed")) == 1


async def test_purchase_made_for_another_account_is_refused(
    client: httpx.AsyncClient, appstore_signer: AppStoreSigner
) -> None:
    _, _, token_a = await _account(client, "a@example.com")
    headers_b, _, _ = await _account(client, "b@example.com")
    response = await _post(
        client, headers_b, appstore_signer.sign(purchase(appstore_signer, original="200", token=token_a))
    )
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "purchase_belongs_to_another_account"
    me = await client.get("/v1/me/entitlements", headers=headers_b)
    assert me.json()["entitlements"]["pro"]["active"] is False


@pytest.mark.parametrize(
    ("mutate", "code"),
    [
        ("forged", "invalid_signed_data"),
        ("no_x5c", "invalid_signed_data"),
        ("wrong_bundle", "signed_data_wrong_app"),
        ("xcode", "signed_data_wrong_environment"),
        ("garbage", "invalid_signed_data"),
    ],
)
async def test_unverifiable_purchases_are_refused(
    client: httpx.AsyncClient, appstore_signer: AppStoreSigner, mutate: str, code: str
) -> None:
    headers, _, token = await _account(client, "c@example.com")
    payload = purchase(appstore_signer, original="300", token=token)
    signed = {
        "forged": lambda: appstore_signer.sign(payload, key=ec.generate_private_key(ec.SECP256R1())),
        "no_x5c": lambda: appstore_signer.sign(payload, x5c=None),
        "wrong_bundle": lambda: appstore_signer.sign({**payload, "bundleId": "com.example.other"}),
        "xcode": lambda: appstore_signer.sign({**payload, "environment": "Xcode"}),
        "garbage": lambda: "this.is.not-a-jws",
    }[mutate]()
    response = await _post(client, headers, signed)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code


async def test_posting_requires_sign_in(client: httpx.AsyncClient) -> None:
    assert (await client.post(PATH, json={"signed_transaction": "x"})).status_code == 401


async def test_non_subscription_is_refused(
    client: httpx.AsyncClient, appstore_signer: AppStoreSigner
) -> None:
    headers, _, token = await _account(client, "d@example.com")
    payload = purchase(appstore_signer, original="301", token=token, type="Consumable")
    response = await _post(client, headers, appstore_signer.sign(payload))
    assert response.status_code == 422 and response.json()["error"]["code"] == "not_a_subscription"


async def test_restore_without_token_keeps_the_first_owner(
    client: httpx.AsyncClient, appstore_signer: AppStoreSigner, context: AppContext
) -> None:
    headers_a, account_a, _ = await _account(client, "keep-a@example.com")
    headers_b, _, _ = await _account(client, "keep-b@example.com")
    signed = appstore_signer.sign(purchase(appstore_signer, original="400", token=None))
    assert (await _post(client, headers_a, signed)).status_code == 200
    refused = await _post(client, headers_b, signed)
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "purchase_belongs_to_another_account"
    async with context.database.sessionmaker() as db:
        owner = await db.get(AppStoreOwnership, "400")
        assert owner is not None and owner.account_id == account_a
    assert (await client.get("/v1/me/entitlements", headers=headers_a)).json()["entitlements"]["pro"][
        "active"
    ]


@pytest.mark.parametrize("settings_overrides", [{"appstore_restore_policy": "transfer"}], indirect=True)
async def test_restore_transfers_when_configured(
    client: httpx.AsyncClient, appstore_signer: AppStoreSigner, context: AppContext
) -> None:
    headers_a, account_a, _ = await _account(client, "move-a@example.com")
    headers_b, account_b, _ = await _account(client, "move-b@example.com")
    newer = appstore_signer.sign(purchase(appstore_signer, original="500", token=None))
    older = appstore_signer.sign(
        purchase(
            appstore_signer,
            original="500",
            token=None,
            signed_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=3),
        )
    )
    assert (await _post(client, headers_a, newer)).status_code == 200
    # B restores with an older copy of the transaction: the purchase (and its newest state) still moves.
    moved = await _post(client, headers_b, older)
    assert moved.status_code == 200, moved.text
    assert moved.json()["entitlements"]["pro"]["active"] is True
    assert (await client.get("/v1/me/entitlements", headers=headers_a)).json()["entitlements"]["pro"][
        "active"
    ] is False
    for headers in (headers_a, headers_b):
        reasons = [e["data"]["reason"] for e in await _events(client, headers, "appstore.ownership_changed")]
        assert "restore_transfer" in reasons
    async with context.database.sessionmaker() as db:
        changes = (
            await db.scalars(select(AppStoreOwnershipChange).order_by(AppStoreOwnershipChange.created_at))
        ).all()
        assert [(c.from_account_id, c.to_account_id, c.reason) for c in changes] == [
            (None, account_a, "claimed_without_token"),
            (account_a, account_b, "restore_transfer"),
        ]


async def test_family_shared_purchase_belongs_to_the_family_member(
    client: httpx.AsyncClient, appstore_signer: AppStoreSigner
) -> None:
    _, _, purchaser_token = await _account(client, "parent@example.com")
    headers_child, _, _ = await _account(client, "child@example.com")
    shared = purchase(
        appstore_signer, original="600", token=purchaser_token, inAppOwnershipType="FAMILY_SHARED"
    )
    response = await _post(client, headers_child, appstore_signer.sign(shared))
    assert response.status_code == 200, response.text
    assert response.json()["entitlements"]["pro"]["active"] is True


async def test_app_store_purchase_on_top_of_stripe_is_reported(
    client: httpx.AsyncClient, appstore_signer: AppStoreSigner, context: AppContext
) -> None:
    headers, account_id, token = await _account(client, "both@example.com")
    now = dt.datetime.now(dt.UTC)
    async with context.database.transaction() as db:
        await apply_subscription_state(
            db,
            SubscriptionState(
                store=Store.STRIPE,
                store_subscription_id="sub_123",
                account_id=account_id,
                product="pro_monthly",
                store_product_id="price_123",
                status=SubscriptionStatus.ACTIVE,
                current_period_end=now + dt.timedelta(days=20),
                will_renew=True,
                environment=Environment.SANDBOX,
                vendor_updated_at=now,
                store_customer_id="cus_123",
            ),
            now=now,
        )
    response = await _post(
        client, headers, appstore_signer.sign(purchase(appstore_signer, original="700", token=token))
    )
    assert response.status_code == 200
    duplicates = response.json()["entitlements"]["pro"]["duplicate_subscriptions"]
    assert {d["store"] for d in duplicates} == {"stripe", "app_store"}
    assert await _events(client, headers, "subscription.duplicate_detected")


async def test_parked_notification_is_applied_once_the_app_posts_the_purchase(
    client: httpx.AsyncClient, appstore_signer: AppStoreSigner
) -> None:
    headers, _, _ = await _account(client, "offer-code@example.com")
    # Bought with an offer code in the App Store: no token, and Apple tells us before the app does.
    bought = purchase(appstore_signer, original="800", token=None)
    later = ms(dt.datetime.now(dt.UTC))
    renewal = appstore_signer.renewal_info(
        original_transaction_id="800", product_id=bought["productId"], signed_date=later, auto_renew=False
    )
    notification = appstore_signer.signed_notification(
        "DID_CHANGE_RENEWAL_STATUS",
        "AUTO_RENEW_DISABLED",
        signed_date=later,
        transaction={**bought, "signedDate": later},
        renewal_info=renewal,
        status=STATUS_ACTIVE,
    )
    parked = await client.post("/webhooks/appstore", json={"signedPayload": notification})
    assert parked.status_code == 200 and parked.json()["status"] == "parked"
    response = await _post(client, headers, appstore_signer.sign(bought))
    assert response.status_code == 200
    [subscription] = response.json()["subscriptions"]
    assert subscription["status"] == "canceled_at_period_end" and subscription["will_renew"] is False


async def test_posted_purchase_is_refreshed_from_the_server_api(
    client: httpx.AsyncClient,
    appstore_signer: AppStoreSigner,
    appstore_api: StandIn,
    context: AppContext,
) -> None:
    headers, _, token = await _account(client, "api@example.com")
    bought = purchase(appstore_signer, original="900", token=token)
    # Apple already knows more than the device: auto-renew was switched off.
    appstore_api.state.put_subscription(
        STATUS_ACTIVE,
        bought,
        appstore_signer.renewal_info(
            original_transaction_id="900",
            product_id=bought["productId"],
            signed_date=bought["signedDate"],
            auto_renew=False,
        ),
    )
    appstore_api.state.rate_limit_next = 2  # Apple asks us to slow down twice; the client backs off
    response = await _post(client, headers, appstore_signer.sign(bought))
    assert response.status_code == 200
    assert response.json()["subscriptions"][0]["will_renew"] is False
    assert ("GET", "/inApps/v1/subscriptions/900") in appstore_api.state.requests
    assert appstore_api.state.tokens_set == []  # bought in the app, with the right token already


async def test_purchase_made_outside_the_app_gets_the_owner_token(
    client: httpx.AsyncClient, appstore_signer: AppStoreSigner, appstore_api: StandIn
) -> None:
    headers, _, token = await _account(client, "outside@example.com")
    bought = purchase(appstore_signer, original="901", token=None)
    appstore_api.state.put_subscription(
        STATUS_ACTIVE,
        bought,
        appstore_signer.renewal_info(
            original_transaction_id="901", product_id=bought["productId"], signed_date=1
        ),
    )
    assert (await _post(client, headers, appstore_signer.sign(bought))).status_code == 200
    assert appstore_api.state.tokens_set == [("901", str(token))]
