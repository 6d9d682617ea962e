from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from entitle.context import AppContext
from entitle.core.subscriptions import Environment, Store, SubscriptionState, SubscriptionStatus
from entitle.services.access.subscriptions import apply_subscription_state
from tests.conftest import ADMIN_KEY
from tests.factories import bearer, register

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


def in_days(days: float) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).isoformat().replace("+00:00", "Z")


async def signed_up(
    client: httpx.AsyncClient, email: str = "person@example.com"
) -> tuple[str, dict[str, str]]:
    session = await register(client, email)
    return session["account"]["id"], bearer(session)


async def test_catalog_is_public_with_store_prices(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/catalog")

    assert response.status_code == 200
    assert response.headers["cache-control"] == "public, max-age=300"
    body = response.json()
    assert body["entitlements"] == [{"key": "pro", "description": "Everything in the app"}]
    monthly = body["products"][0]
    assert monthly == {
        "key": "pro_monthly",
        "name": "Pro, monthly",
        "type": "subscription",
        "entitlements": ["pro"],
        "grants": {},
        "max_quantity": 1,
        "duration_days": None,
        "stripe": {
            "lookup_key": "pro_monthly",
            "unit_amount": 999,
            "currency": "usd",
            "interval": "month",
            "interval_count": 1,
            "trial_days": None,
            "trial_requires_card": True,
        },
        "app_store": {"product_id": "com.example.app.pro.monthly"},
    }
    assert [p["key"] for p in body["products"]] == [
        "pro_monthly",
        "pro_yearly",
        "pro_lifetime",
        "credits_100",
    ]
    credits = body["products"][3]
    assert credits["type"] == "consumable" and credits["grants"] == {"credits": 100}
    assert credits["max_quantity"] == 10 and credits["entitlements"] == []
    assert credits["stripe"]["interval"] is None and credits["stripe"]["unit_amount"] == 499
    assert body["currencies"] == [{"key": "credits", "name": "Credits"}]


async def test_my_entitlements_needs_sign_in(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/me/entitlements")

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "missing_token"


async def test_new_account_has_every_entitlement_inactive(client: httpx.AsyncClient) -> None:
    _, auth = await signed_up(client)

    response = await client.get("/v1/me/entitlements", headers=auth)

    assert response.status_code == 200
    assert response.json() == {
        "entitlements": {
            "pro": {
                "active": False,
                "source": None,
                "store": None,
                "product": None,
                "expires_at": None,
                "will_renew": False,
                "management_url": None,
                "duplicate_subscriptions": [],
            }
        },
        "subscriptions": [],
        "purchases": [],
        "balances": {"credits": 0},
    }


async def test_grant_entitles_and_revoking_ends_it(client: httpx.AsyncClient) -> None:
    account_id, auth = await signed_up(client)

    created = await client.post(
        f"/v1/accounts/{account_id}/grants",
        headers=ADMIN,
        json={"entitlement": "pro", "expires_at": in_days(14), "reason": "beta tester"},
    )
    assert created.status_code == 201, created.text
    grant = created.json()
    assert grant["entitlement"] == "pro" and grant["in_force"] and grant["created_by"] == "api"
    assert grant["reason"] == "beta tester" and grant["revoked_at"] is None

    mine = (await client.get("/v1/me/entitlements", headers=auth)).json()
    assert mine["entitlements"]["pro"]["active"] and mine["entitlements"]["pro"]["store"] == "promotional"
    # The app's backend and the person's clients get the same answer.
    theirs = await client.get(f"/v1/accounts/{account_id}/entitlements", headers=ADMIN)
    assert theirs.status_code == 200 and theirs.json() == mine

    listed = await client.get(f"/v1/accounts/{account_id}/grants", headers=ADMIN)
    assert [g["id"] for g in listed.json()["grants"]] == [grant["id"]]

    revoked = await client.delete(f"/v1/accounts/{account_id}/grants/{grant['id']}", headers=ADMIN)
    assert revoked.status_code == 200
    assert revoked.json()["revoked_at"] is not None and not revoked.json()["in_force"]
    assert not (await client.get("/v1/me/entitlements", headers=auth)).json()["entitlements"]["pro"]["active"]

    events = (await client.get("/v1/me/events", params={"type": "entitlement.*"}, headers=auth)).json()
    types = [e["type"] for e in events["events"]]
    assert types == ["entitlement.revoked", "entitlement.granted"]
    assert events["events"][1]["data"]["store"] == "promotional"


async def test_scheduled_grant_starts_later(client: httpx.AsyncClient) -> None:
    account_id, auth = await signed_up(client)

    created = await client.post(
        f"/v1/accounts/{account_id}/grants",
        headers=ADMIN,
        json={"entitlement": "pro", "starts_at": in_days(1), "expires_at": in_days(3)},
    )

    assert created.status_code == 201 and not created.json()["in_force"]
    assert not (await client.get("/v1/me/entitlements", headers=auth)).json()["entitlements"]["pro"]["active"]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"entitlement": "platinum", "expires_at": in_days(3)}, 422, "unknown_entitlement"),
        ({"entitlement": "pro", "expires_at": in_days(-1)}, 422, "grant_expired"),
        ({"entitlement": "pro", "expires_at": "2031-01-01T00:00:00"}, 422, "invalid_grant_dates"),
        (
            {"entitlement": "pro", "expires_at": in_days(3), "starts_at": in_days(4)},
            422,
            "invalid_grant_dates",
        ),
        ({"entitlement": "pro", "expires_at": "9999-12-31T23:00:00-05:00"}, 422, "invalid_grant_dates"),
        ({"entitlement": "pro", "expires_at": "next tuesday"}, 422, None),
        ({"entitlement": "pro"}, 422, None),
        ({"entitlement": "pro", "expires_at": in_days(3), "account_id": "x"}, 422, None),
    ],
)
async def test_bad_grants_are_refused_with_a_code(
    client: httpx.AsyncClient, body: dict[str, Any], status: int, code: str | None
) -> None:
    account_id, _ = await signed_up(client)

    response = await client.post(f"/v1/accounts/{account_id}/grants", headers=ADMIN, json=body)

    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["message"]
    if code is not None:
        assert error["code"] == code


@pytest.mark.parametrize("account_id", [str(uuid.uuid4()), "not-a-uuid"])
async def test_unknown_account_is_404(client: httpx.AsyncClient, account_id: str) -> None:
    grant = {"entitlement": "pro", "expires_at": in_days(3)}

    for response in (
        await client.get(f"/v1/accounts/{account_id}/entitlements", headers=ADMIN),
        await client.post(f"/v1/accounts/{account_id}/grants", headers=ADMIN, json=grant),
        await client.get(f"/v1/accounts/{account_id}/grants", headers=ADMIN),
        await client.delete(f"/v1/accounts/{account_id}/grants/{uuid.uuid4()}", headers=ADMIN),
    ):
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "account_not_found"


async def test_grant_of_another_account_cannot_be_revoked_through_this_one(client: httpx.AsyncClient) -> None:
    first, _ = await signed_up(client, "first@example.com")
    second, _ = await signed_up(client, "second@example.com")
    grant = (
        await client.post(
            f"/v1/accounts/{first}/grants",
            headers=ADMIN,
            json={"entitlement": "pro", "expires_at": in_days(3)},
        )
    ).json()

    for grant_id in (grant["id"], "nope"):
        response = await client.delete(f"/v1/accounts/{second}/grants/{grant_id}", headers=ADMIN)
        assert response.status_code == 404 and response.json()["error"]["code"] == "grant_not_found"


@pytest.mark.parametrize(
    ("headers", "code"),
    [({}, "missing_token"), ({"Authorization": "Bearer wrong-key"}, "invalid_server_key")],
)
async def test_server_key_is_required(client: httpx.AsyncClient, headers: dict[str, str], code: str) -> None:
    account_id, auth = await signed_up(client)

    for response in (
        await client.get(f"/v1/accounts/{account_id}/entitlements", headers=headers),
        await client.post(
            f"/v1/accounts/{account_id}/grants",
            headers=headers,
            json={"entitlement": "pro", "expires_at": in_days(1)},
        ),
        # A person's own access token is not a server key.
        await client.get(f"/v1/accounts/{account_id}/grants", headers=auth if not headers else headers),
    ):
        assert response.status_code == 401
    assert response.json()["error"]["code"] in {code, "invalid_server_key"}


async def test_store_subscriptions_show_in_the_answer(client: httpx.AsyncClient, context: AppContext) -> None:
    account_id, auth = await signed_up(client)
    now = datetime.now(UTC)
    async with context.database.transaction() as db:
        await apply_subscription_state(
            db,
            SubscriptionState(
                store=Store.APP_STORE,
                store_subscription_id="2000000100",
                account_id=uuid.UUID(account_id),
                product="pro_yearly",
                store_product_id="com.example.app.pro.yearly",
                status=SubscriptionStatus.CANCELED_AT_PERIOD_END,
                current_period_end=now + timedelta(days=100),
                will_renew=False,
                environment=Environment.PRODUCTION,
                vendor_updated_at=now,
            ),
        )

    body = (await client.get("/v1/me/entitlements", headers=auth)).json()

    pro = body["entitlements"]["pro"]
    assert pro["active"] and pro["store"] == "app_store" and pro["product"] == "pro_yearly"
    assert not pro["will_renew"] and pro["management_url"] == "https://apps.apple.com/account/subscriptions"
    assert [(s["store"], s["id"], s["status"]) for s in body["subscriptions"]] == [
        ("app_store", "2000000100", "canceled_at_period_end")
    ]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("expires_at", "9999-12-31T23:59:59Z"),
        ("expires_at", "9999-12-31T23:59:59-14:00"),
        ("expires_at", "9999-12-31T23:59:59+14:00"),
        ("starts_at", "0001-01-01T00:00:00+14:00"),
        ("starts_at", "0001-01-01T00:00:00Z"),
    ],
)
async def test_a_grant_at_the_ends_of_the_calendar_is_a_422_naming_the_field(
    client: httpx.AsyncClient, field: str, value: str
) -> None:
    account_id, _ = await signed_up(client)
    body = {"entitlement": "pro", "expires_at": in_days(14), field: value}
    response = await client.post(f"/v1/accounts/{account_id}/grants", headers=ADMIN, json=body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_grant_dates" and field in error["message"]
