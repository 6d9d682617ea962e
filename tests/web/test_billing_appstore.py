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
from entitle.core.models.purchases import BalanceTransaction
from entitle.core.subscriptions import Environment, Store, SubscriptionState, SubscriptionStatus
from entitle.providers.appstore.models import AppStoreOwnership, AppStoreOwnershipChange
from entitle.services.access import balances
from entitle.services.access.subscriptions import apply_subscription_state
from tests.factories import bearer, inbox_row, register
from tests.standins.appstore import (
    CONSUMABLE,
    NON_CONSUMABLE,
    NON_RENEWING,
    STATUS_ACTIVE,
    AppStoreSigner,
    OneTimePurchase,
    ms,
)
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
    client: httpx.AsyncClient, appstore_signer: AppStoreSigner, context: AppContext
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
    assert parked.status_code == 200 and parked.json()["status"] == "pending"
    assert (await inbox_row(context, provider="app_store")).status == "parked"
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


# -- a device copy never regresses what Apple already told us ---------------------------------------
# StoreKit signs a transaction's JWS when the device fetches it, so an old transaction (a past period, or
# one upgraded away) can reach us with a signedDate newer than the latest notification.


def _living_subscription(signer: AppStoreSigner, token: uuid.UUID, original: str, *, days_ago: int) -> Any:
    from tests.standins.appstore import SubscriptionSimulator

    return SubscriptionSimulator(
        signer=signer,
        original_transaction_id=original,
        product_id="com.example.app.pro.monthly",
        app_account_token=str(token),
        start=dt.datetime.now(dt.UTC) - dt.timedelta(days=days_ago),
    )


async def _notify(client: httpx.AsyncClient, note: Any) -> None:
    response = await client.post("/webhooks/appstore", json=note.body)
    assert response.status_code == 200, response.text


def _fresh(transaction: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    return {**transaction, "signedDate": ms(dt.datetime.now(dt.UTC)), **overrides}


async def test_past_period_transaction_posted_later_does_not_end_a_renewed_subscription(
    client: httpx.AsyncClient, appstore_signer: AppStoreSigner
) -> None:
    headers, _, token = await _account(client, "renewed@example.com")
    sim = _living_subscription(appstore_signer, token, "1001", days_ago=40)
    first_period = sim.subscribe().transaction
    await _notify(client, sim.renew())
    response = await _post(client, headers, appstore_signer.sign(_fresh(first_period)))
    assert response.status_code == 200, response.text
    [subscription] = response.json()["subscriptions"]
    assert subscription["status"] == "active"
    assert response.json()["entitlements"]["pro"]["active"] is True


@pytest.mark.parametrize("revoked", [False, True], ids=["upgraded", "upgraded-and-revoked"])
async def test_upgraded_away_transaction_does_not_replace_the_upgrade(
    client: httpx.AsyncClient, appstore_signer: AppStoreSigner, revoked: bool
) -> None:
    headers, _, token = await _account(client, f"upgraded-{revoked}@example.com")
    sim = _living_subscription(appstore_signer, token, "1002", days_ago=10)
    monthly = sim.subscribe().transaction
    await _notify(client, sim.upgrade())
    extra: dict[str, Any] = {"isUpgraded": True}
    if revoked:
        extra.update(revocationDate=sim.clock, revocationReason=0)
    response = await _post(client, headers, appstore_signer.sign(_fresh(monthly, **extra)))
    assert response.status_code == 200, response.text
    [subscription] = response.json()["subscriptions"]
    assert (subscription["product"], subscription["status"]) == ("pro_yearly", "active")
    assert response.json()["entitlements"]["pro"]["product"] == "pro_yearly"


async def test_upgraded_away_transaction_alone_grants_nothing_forever(
    client: httpx.AsyncClient, appstore_signer: AppStoreSigner
) -> None:
    headers, _, token = await _account(client, "upgraded-first@example.com")
    payload = purchase(appstore_signer, original="1003", token=token, isUpgraded=True)
    response = await _post(client, headers, appstore_signer.sign(payload))
    assert response.status_code == 200, response.text
    # The upgrade's own transaction (same original id) is what grants; the old one is only ownership.
    assert response.json()["subscriptions"] == []


async def test_device_copy_of_the_same_transaction_keeps_the_grace_period(
    client: httpx.AsyncClient, appstore_signer: AppStoreSigner
) -> None:
    headers, _, token = await _account(client, "grace-copy@example.com")
    sim = _living_subscription(appstore_signer, token, "1004", days_ago=31)
    bought = sim.subscribe().transaction
    await _notify(client, sim.fail_to_renew(grace=True))
    response = await _post(client, headers, appstore_signer.sign(_fresh(bought)))
    assert response.status_code == 200, response.text
    [subscription] = response.json()["subscriptions"]
    assert subscription["status"] == "in_grace_period"
    assert response.json()["entitlements"]["pro"]["active"] is True


async def test_device_copy_of_the_same_transaction_keeps_auto_renew_off(
    client: httpx.AsyncClient, appstore_signer: AppStoreSigner
) -> None:
    headers, _, token = await _account(client, "renew-off-copy@example.com")
    sim = _living_subscription(appstore_signer, token, "1005", days_ago=5)
    bought = sim.subscribe().transaction
    await _notify(client, sim.set_auto_renew(False))
    response = await _post(client, headers, appstore_signer.sign(_fresh(bought)))
    [subscription] = response.json()["subscriptions"]
    assert (subscription["status"], subscription["will_renew"]) == ("canceled_at_period_end", False)


async def test_device_copy_that_carries_a_refund_still_revokes(
    client: httpx.AsyncClient, appstore_signer: AppStoreSigner
) -> None:
    # The REFUND notification was lost; the device's newer copy of the same transaction says so.
    headers, _, token = await _account(client, "refund-copy@example.com")
    sim = _living_subscription(appstore_signer, token, "1006", days_ago=5)
    bought = sim.subscribe().transaction
    await _notify(client, sim.set_auto_renew(False))
    refunded = _fresh(bought, revocationDate=ms(dt.datetime.now(dt.UTC)), revocationReason=0)
    response = await _post(client, headers, appstore_signer.sign(refunded))
    [subscription] = response.json()["subscriptions"]
    assert subscription["status"] == "revoked"
    assert response.json()["entitlements"]["pro"]["active"] is False


@pytest.mark.parametrize("settings_overrides", [{}, {"appstore_restore_policy": "transfer"}], indirect=True)
async def test_purchase_of_a_deleted_account_can_be_restored_into_a_new_one(
    client: httpx.AsyncClient, appstore_signer: AppStoreSigner, context: AppContext
) -> None:
    # Deleting the account cannot cancel the App Store subscription (only the person can, in Settings);
    # the same person signs up again and restores: there is no other live account the purchase was for.
    headers_old, old_id, token = await _account(client, "gone@example.com")
    signed = appstore_signer.sign(purchase(appstore_signer, original="1100", token=token))
    assert (await _post(client, headers_old, signed)).status_code == 200
    assert (await client.delete("/v1/me", headers=headers_old)).status_code == 204
    headers_new, new_id, _ = await _account(client, "gone@example.com")
    response = await _post(client, headers_new, signed)
    assert response.status_code == 200, response.text
    assert response.json()["entitlements"]["pro"]["active"] is True
    async with context.database.sessionmaker() as db:
        owner = await db.get(AppStoreOwnership, "1100")
        assert owner is not None and owner.account_id == new_id
        changes = (
            await db.scalars(select(AppStoreOwnershipChange).order_by(AppStoreOwnershipChange.created_at))
        ).all()
        assert [(c.from_account_id, c.to_account_id) for c in changes][-1] == (old_id, new_id)


async def test_token_of_no_account_is_claimed_like_a_purchase_without_one(
    client: httpx.AsyncClient, appstore_signer: AppStoreSigner
) -> None:
    headers, _, _ = await _account(client, "stray-token@example.com")
    stray = uuid.uuid4()  # set by another installation of the app, or a bug: no account here has it
    response = await _post(
        client, headers, appstore_signer.sign(purchase(appstore_signer, original="1101", token=stray))
    )
    assert response.status_code == 200, response.text
    [event] = await _events(client, headers, "appstore.ownership_changed")
    assert event["data"]["reason"] == "claimed_without_token"


async def test_refund_request_for_an_unknown_owner_waits_for_the_purchase(
    client: httpx.AsyncClient, appstore_signer: AppStoreSigner, context: AppContext
) -> None:
    # Apple asks about a refund request for an offer-code purchase the app has not posted yet: support
    # must still see the request once the owner is known, not lose it.
    headers, _, _ = await _account(client, "consumption@example.com")
    bought = purchase(appstore_signer, original="1200", token=None)
    request = appstore_signer.signed_notification(
        "CONSUMPTION_REQUEST",
        signed_date=ms(dt.datetime.now(dt.UTC)),
        transaction=bought,
        data_overrides={"consumptionRequestReason": "UNINTENDED_PURCHASE"},
    )
    parked = await client.post("/webhooks/appstore", json={"signedPayload": request})
    assert parked.status_code == 200 and parked.json()["status"] == "pending"
    assert (await inbox_row(context, provider="app_store")).status == "parked"
    assert (await _post(client, headers, appstore_signer.sign(bought))).status_code == 200
    [event] = await _events(client, headers, "appstore.consumption_requested")
    assert event["data"]["reason"] == "UNINTENDED_PURCHASE"
    # A subscription's request is for support: nothing is sent to Apple about it.
    assert (event["data"]["sent"], event["data"]["not_sent_because"]) == (False, "subscription")


# -- one-time purchases: non-consumables, consumables, non-renewing subscriptions -------------------
LIFETIME = "com.example.app.pro.lifetime"
CREDITS = "com.example.app.credits.100"
PASS_30 = "com.example.app.pro.pass30"
NON_RENEWING_CATALOG = """
[entitlements.pro]
description = "Everything in the app"

[products.pro_monthly]
name = "Pro, monthly"
entitlements = ["pro"]
app_store = { product_id = "com.example.app.pro.monthly" }

[products.pro_pass_30]
name = "Pro for 30 days"
type = "non_renewing"
duration_days = 30
entitlements = ["pro"]
app_store = { product_id = "com.example.app.pro.pass30" }

[products.pro_lifetime]
name = "Pro, lifetime"
type = "non_consumable"
entitlements = ["pro"]
app_store = { product_id = "com.example.app.pro.lifetime" }

[currencies.credits]
name = "Credits"

[products.credits_100]
name = "100 credits"
type = "consumable"
grants = { credits = 100 }
max_quantity = 10
app_store = { product_id = "com.example.app.credits.100" }
"""


def _one_time(
    signer: AppStoreSigner,
    token: uuid.UUID | None,
    transaction_id: str,
    product: str,
    kind: str,
    *,
    days_ago: float = 1,
    **kwargs: Any,
) -> OneTimePurchase:
    return OneTimePurchase(
        signer=signer,
        transaction_id=transaction_id,
        product_id=product,
        type=kind,
        app_account_token=str(token) if token is not None else None,
        bought_at=(dt.datetime.now(dt.UTC) - dt.timedelta(days=days_ago)).replace(microsecond=0),
        **kwargs,
    )


async def _me(client: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, Any]:
    response = await client.get("/v1/me/entitlements", headers=headers)
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


async def _ledger(context: AppContext, account_id: uuid.UUID) -> list[tuple[int, str, str]]:
    async with context.database.sessionmaker() as db:
        rows = await db.execute(
            select(BalanceTransaction.amount, BalanceTransaction.reason, BalanceTransaction.source)
            .where(BalanceTransaction.account_id == account_id)
            .order_by(BalanceTransaction.created_at, BalanceTransaction.balance_after)
        )
        return [(int(amount), str(reason), str(source)) for amount, reason, source in rows]


async def test_lifetime_purchase_grants_pro_for_good(
    client: httpx.AsyncClient, appstore_signer: AppStoreSigner
) -> None:
    headers, _, token = await _account(client, "lifetime@example.com")
    bought = _one_time(appstore_signer, token, "2000", LIFETIME, NON_CONSUMABLE, price=199990)
    response = await _post(client, headers, bought.signed_transaction())
    assert response.status_code == 200, response.text
    body = response.json()
    pro = body["entitlements"]["pro"]
    assert (pro["active"], pro["source"], pro["expires_at"]) == (True, "purchase", None)
    [listed] = body["purchases"]
    assert (listed["store"], listed["id"], listed["product"], listed["type"]) == (
        "app_store",
        "2000",
        "pro_lifetime",
        "non_consumable",
    )
    assert listed["expires_at"] is None and listed["refunded_at"] is None
    # StoreKit delivers the same transaction again (a restore, a relaunch): nothing is recorded twice.
    again = await _post(client, headers, bought.signed_transaction())
    assert again.status_code == 200 and again.json()["purchases"] == body["purchases"]
    [completed] = await _events(client, headers, "purchase.completed")
    assert completed["data"]["purchase_id"] == "2000"
    [paid] = await _events(client, headers, "payment.succeeded")
    assert (paid["data"]["amount"], paid["data"]["currency"]) == (19999, "usd")


async def test_consumable_credits_once_per_transaction(
    client: httpx.AsyncClient, appstore_signer: AppStoreSigner, context: AppContext
) -> None:
    headers, account_id, token = await _account(client, "credits@example.com")
    pack = _one_time(appstore_signer, token, "2100", CREDITS, CONSUMABLE, quantity=3)
    # Apple tells the server first; the app then posts the same transaction, twice.
    await _notify(client, pack.buy())
    for _ in range(2):
        response = await _post(client, headers, pack.signed_transaction())
        assert response.status_code == 200, response.text
        assert response.json()["balances"] == {"credits": 300}
    # A second pack is its own transaction: it credits again.
    second = _one_time(appstore_signer, token, "2101", CREDITS, CONSUMABLE)
    assert (await _post(client, headers, second.signed_transaction())).json()["balances"] == {"credits": 400}
    assert await _ledger(context, account_id) == [
        (300, "purchase", "purchase:app_store:2100"),
        (100, "purchase", "purchase:app_store:2101"),
    ]
    assert len(await _events(client, headers, "purchase.completed")) == 2


async def test_consumable_refund_takes_back_its_credits_and_a_reversal_gives_them_back(
    client: httpx.AsyncClient, appstore_signer: AppStoreSigner, context: AppContext
) -> None:
    headers, account_id, token = await _account(client, "refund-credits@example.com")
    pack = _one_time(appstore_signer, token, "2200", CREDITS, CONSUMABLE)
    assert (await _post(client, headers, pack.signed_transaction())).status_code == 200
    async with context.database.transaction() as db:
        await balances.post(db, account_id, "credits", -60, reason="spend", source="api")
    await _notify(client, pack.refund())
    me = await _me(client, headers)
    # What was spent is not given back by Apple's refund: the balance goes below zero.
    assert me["balances"] == {"credits": -60}
    assert me["purchases"][0]["refunded_at"] is not None
    [refunded] = await _events(client, headers, "purchase.refunded")
    assert refunded["data"]["reason"] == "refunded"
    [money_back] = await _events(client, headers, "payment.refunded")
    assert (money_back["data"]["amount_refunded"], money_back["data"]["currency"]) == (499, "usd")
    await _notify(client, pack.refund_reversed())
    me = await _me(client, headers)
    assert me["balances"] == {"credits": 40} and me["purchases"][0]["refunded_at"] is None


async def test_lifetime_refund_ends_access_and_a_reversal_restores_it(
    client: httpx.AsyncClient, appstore_signer: AppStoreSigner
) -> None:
    headers, _, token = await _account(client, "refund-lifetime@example.com")
    bought = _one_time(appstore_signer, token, "2300", LIFETIME, NON_CONSUMABLE)
    await _notify(client, bought.buy())
    assert (await _me(client, headers))["entitlements"]["pro"]["active"] is True
    await _notify(client, bought.refund())
    me = await _me(client, headers)
    assert me["entitlements"]["pro"]["active"] is False
    assert me["purchases"][0]["refunded_at"] is not None
    # The device still holds the pre-refund copy: posting it does not bring access back.
    stale = await _post(client, headers, bought.signed_transaction(signedDate=ms(bought.bought_at)))
    assert stale.json()["entitlements"]["pro"]["active"] is False
    await _notify(client, bought.refund_reversed())
    assert (await _me(client, headers))["entitlements"]["pro"]["active"] is True


async def test_one_time_purchase_notified_before_the_app_posts_waits_for_its_owner(
    client: httpx.AsyncClient, appstore_signer: AppStoreSigner, context: AppContext
) -> None:
    headers, _, _ = await _account(client, "no-token@example.com")
    bought = _one_time(appstore_signer, None, "2400", LIFETIME, NON_CONSUMABLE)
    parked = await client.post("/webhooks/appstore", json=bought.buy().body)
    assert parked.status_code == 200
    assert (await inbox_row(context, provider="app_store")).status == "parked"
    response = await _post(client, headers, bought.signed_transaction())
    assert response.json()["entitlements"]["pro"]["active"] is True
    assert (await inbox_row(context, provider="app_store")).status == "processed"
    assert len(await _events(client, headers, "purchase.completed")) == 1


async def test_family_shared_lifetime_grants_like_a_purchase_until_revoked(
    client: httpx.AsyncClient, appstore_signer: AppStoreSigner
) -> None:
    _, _, purchaser_token = await _account(client, "family-parent@example.com")
    headers, _, _ = await _account(client, "family-child@example.com")
    shared = _one_time(
        appstore_signer, purchaser_token, "2500", LIFETIME, NON_CONSUMABLE, ownership="FAMILY_SHARED"
    )
    response = await _post(client, headers, shared.signed_transaction())
    assert response.status_code == 200, response.text
    pro = response.json()["entitlements"]["pro"]
    assert (pro["active"], pro["source"]) == (True, "purchase")
    # The purchaser paid, not the family member: no payment in the member's log.
    assert await _events(client, headers, "payment.succeeded") == []
    await _notify(client, shared.family_revoke())
    assert (await _me(client, headers))["entitlements"]["pro"]["active"] is False
    [revoked] = await _events(client, headers, "purchase.refunded")
    assert revoked["data"]["reason"] == "revoked"
    assert await _events(client, headers, "payment.refunded") == []


@pytest.mark.parametrize("settings_overrides", [{"appstore_restore_policy": "transfer"}], indirect=True)
async def test_consumable_never_moves_to_another_account(
    client: httpx.AsyncClient, appstore_signer: AppStoreSigner
) -> None:
    headers_a, _, _ = await _account(client, "pack-a@example.com")
    headers_b, _, _ = await _account(client, "pack-b@example.com")
    pack = _one_time(appstore_signer, None, "2600", CREDITS, CONSUMABLE)
    assert (await _post(client, headers_a, pack.signed_transaction())).json()["balances"] == {"credits": 100}
    refused = await _post(client, headers_b, pack.signed_transaction())
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "purchase_belongs_to_another_account"
    assert (await _me(client, headers_b))["balances"] == {"credits": 0}
    assert (await _me(client, headers_a))["balances"] == {"credits": 100}


@pytest.fixture
def pass_catalog(tmp_path: Path, settings_overrides: dict[str, Any]) -> None:
    # Requested before `client`, so the app is built with this catalog.
    path = tmp_path / "catalog.toml"
    path.write_text(NON_RENEWING_CATALOG)
    settings_overrides["catalog"] = path


@pytest.mark.parametrize("days_ago", [2, 31])
async def test_non_renewing_subscription_lasts_the_catalog_duration(
    pass_catalog: None, client: httpx.AsyncClient, appstore_signer: AppStoreSigner, days_ago: int
) -> None:
    headers, _, token = await _account(client, f"pass-{days_ago}@example.com")
    bought = _one_time(appstore_signer, token, f"27{days_ago}", PASS_30, NON_RENEWING, days_ago=days_ago)
    response = await _post(client, headers, bought.signed_transaction())
    assert response.status_code == 200, response.text
    body = response.json()
    [listed] = body["purchases"]
    ends = bought.bought_at + dt.timedelta(days=30)
    assert (listed["type"], dt.datetime.fromisoformat(listed["expires_at"])) == ("non_renewing", ends)
    pro = body["entitlements"]["pro"]
    assert pro["active"] is (days_ago < 30)
    if pro["active"]:
        assert (pro["source"], dt.datetime.fromisoformat(pro["expires_at"])) == ("purchase", ends)


async def test_unknown_transaction_type_is_refused(
    client: httpx.AsyncClient, appstore_signer: AppStoreSigner
) -> None:
    headers, _, token = await _account(client, "odd-type@example.com")
    odd = _one_time(appstore_signer, token, "2800", LIFETIME, "Rental")
    response = await _post(client, headers, odd.signed_transaction())
    assert response.status_code == 422 and response.json()["error"]["code"] == "not_a_subscription"


# -- CONSUMPTION_REQUEST: Apple hears what entitle knows only with the person's consent -------------


@pytest.mark.parametrize("consented", [True, False, None])
async def test_consumption_request_is_answered_only_with_consent(
    client: httpx.AsyncClient,
    appstore_signer: AppStoreSigner,
    appstore_api: StandIn,
    context: AppContext,
    consented: bool | None,
) -> None:
    headers, account_id, token = await _account(client, f"consent-{consented}@example.com")
    pack = _one_time(appstore_signer, token, "2900", CREDITS, CONSUMABLE, quantity=2)
    appstore_api.state.record_one_time(pack.buy())
    body: dict[str, Any] = {"signed_transaction": pack.signed_transaction()}
    if consented is not None:
        body["consented"] = consented
    assert (await client.post(PATH, json=body, headers=headers)).status_code == 200
    async with context.database.transaction() as db:
        # A quarter of the 200 credits spent.
        await balances.post(db, account_id, "credits", -50, reason="spend", source="api")
    await _notify(client, pack.consumption_request())
    [event] = await _events(client, headers, "appstore.consumption_requested")
    assert event["data"]["reason"] == "UNINTENDED_PURCHASE"
    if consented:
        [(transaction_id, sent, version)] = appstore_api.state.consumption_sent
        assert (transaction_id, version) == ("2900", "v2")
        assert sent["customerConsented"] is True
        assert sent["consumptionPercentage"] == 25_000
        assert sent["deliveryStatus"] == "DELIVERED"
        assert event["data"]["sent"] is True
    else:
        assert appstore_api.state.consumption_sent == []
        assert (event["data"]["sent"], event["data"]["not_sent_because"]) == (False, "no_consent")


async def test_consent_given_later_is_the_one_kept(
    client: httpx.AsyncClient, appstore_signer: AppStoreSigner, appstore_api: StandIn
) -> None:
    headers, _, token = await _account(client, "consent-later@example.com")
    bought = _one_time(appstore_signer, token, "2950", LIFETIME, NON_CONSUMABLE)
    appstore_api.state.record_one_time(bought.buy())
    signed = bought.signed_transaction()
    for answer in (False, True):
        body = {"signed_transaction": signed, "consented": answer}
        assert (await client.post(PATH, json=body, headers=headers)).status_code == 200
    await _notify(client, bought.consumption_request())
    [(_, sent, _)] = appstore_api.state.consumption_sent
    # Nothing measures the use of a lifetime unlock: no percentage is claimed.
    assert "consumptionPercentage" not in sent and sent["deliveryStatus"] == "DELIVERED"


async def test_consumption_answer_refused_by_apple_is_recorded_not_retried(
    client: httpx.AsyncClient, appstore_signer: AppStoreSigner, appstore_api: StandIn, context: AppContext
) -> None:
    headers, _, token = await _account(client, "consent-refused@example.com")
    bought = _one_time(appstore_signer, token, "2960", LIFETIME, NON_CONSUMABLE)
    body = {"signed_transaction": bought.signed_transaction(), "consented": True}
    assert (await client.post(PATH, json=body, headers=headers)).status_code == 200
    # The stand-in never heard of this transaction: Apple answers 404 (errorCode 4040010).
    await _notify(client, bought.consumption_request())
    [event] = await _events(client, headers, "appstore.consumption_requested")
    assert (event["data"]["sent"], event["data"]["not_sent_because"]) == (False, "refused_by_apple")
    assert (await inbox_row(context, provider="app_store")).status == "processed"


async def test_consumption_request_without_the_server_api_is_recorded(
    client: httpx.AsyncClient, appstore_signer: AppStoreSigner
) -> None:
    headers, _, token = await _account(client, "consent-no-api@example.com")
    bought = _one_time(appstore_signer, token, "2970", LIFETIME, NON_CONSUMABLE)
    body = {"signed_transaction": bought.signed_transaction(), "consented": True}
    assert (await client.post(PATH, json=body, headers=headers)).status_code == 200
    await _notify(client, bought.consumption_request())
    [event] = await _events(client, headers, "appstore.consumption_requested")
    assert (event["data"]["sent"], event["data"]["not_sent_because"]) == (False, "no_server_api")


@pytest.mark.parametrize(
    ("product", "kind", "grants"),
    [(LIFETIME, NON_CONSUMABLE, False), (CREDITS, CONSUMABLE, True), (PASS_30, NON_RENEWING, False)],
    ids=["non_consumable", "consumable", "non_renewing"],
)
async def test_each_one_time_type_through_its_life(
    pass_catalog: None,
    client: httpx.AsyncClient,
    appstore_signer: AppStoreSigner,
    product: str,
    kind: str,
    grants: bool,
) -> None:
    headers, _, token = await _account(client, f"life-{product}@example.com")
    bought = _one_time(appstore_signer, token, "3000", product, kind, price=2990)

    def standing(me: dict[str, Any]) -> tuple[bool, int]:
        return me["entitlements"]["pro"]["active"], me["balances"]["credits"]

    on = (False, 100) if grants else (True, 0)
    off = (False, 0)
    await _notify(client, bought.buy())
    assert standing(await _me(client, headers)) == on
    for _ in range(2):
        posted = await _post(client, headers, bought.signed_transaction())
        assert posted.status_code == 200, posted.text
        assert standing(posted.json()) == on
    await _notify(client, bought.refund())
    assert standing(await _me(client, headers)) == off
    await _notify(client, bought.refund_reversed())
    me = await _me(client, headers)
    assert standing(me) == on
    [listed] = me["purchases"]
    assert (listed["id"], listed["quantity"], listed["refunded_at"]) == ("3000", 1, None)
    assert len(await _events(client, headers, "purchase.completed")) == 1
    [paid] = await _events(client, headers, "payment.succeeded")
    assert (paid["data"]["amount"], paid["data"]["currency"]) == (299, "usd")
    assert len(await _events(client, headers, "purchase.refunded")) == 1
    assert len(await _events(client, headers, "purchase.refund_reversed")) == 1


async def test_consumption_of_a_pass_is_the_share_of_its_days_gone(
    pass_catalog: None, client: httpx.AsyncClient, appstore_signer: AppStoreSigner, appstore_api: StandIn
) -> None:
    headers, _, token = await _account(client, "pass-consumption@example.com")
    bought = _one_time(appstore_signer, token, "3100", PASS_30, NON_RENEWING, days_ago=3)
    appstore_api.state.record_one_time(bought.buy())
    body = {"signed_transaction": bought.signed_transaction(), "consented": True}
    assert (await client.post(PATH, json=body, headers=headers)).status_code == 200
    await _notify(client, bought.consumption_request())
    [(_, sent, _)] = appstore_api.state.consumption_sent
    # Three of its thirty days: a tenth, in Apple's milli-units (a few seconds more while the test runs).
    assert 10_000 <= sent["consumptionPercentage"] <= 10_010


@pytest.mark.parametrize("settings_overrides", [{"appstore_restore_policy": "transfer"}], indirect=True)
async def test_lifetime_restore_moves_it_when_configured(
    client: httpx.AsyncClient, appstore_signer: AppStoreSigner
) -> None:
    headers_a, _, _ = await _account(client, "lifetime-a@example.com")
    headers_b, _, _ = await _account(client, "lifetime-b@example.com")
    bought = _one_time(appstore_signer, None, "3200", LIFETIME, NON_CONSUMABLE)
    assert (await _post(client, headers_a, bought.signed_transaction())).json()["entitlements"]["pro"][
        "active"
    ]
    # B restores with the same device copy (same signedDate): the purchase moves all the same.
    moved = await _post(client, headers_b, bought.signed_transaction())
    assert moved.status_code == 200, moved.text
    assert moved.json()["entitlements"]["pro"]["active"] is True
    assert [p["id"] for p in moved.json()["purchases"]] == ["3200"]
    me_a = await _me(client, headers_a)
    assert me_a["entitlements"]["pro"]["active"] is False and me_a["purchases"] == []
