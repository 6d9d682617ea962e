"""Support lookups with the server key: by email, external id, Stripe customer, App Store transaction,
purchase id."""

from __future__ import annotations

import uuid

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from entitle.providers.stripe.models import StripeCustomer
from entitle.services.access.purchases import apply_purchase_state
from entitle.services.access.subscriptions import apply_subscription_state
from tests.conftest import ADMIN_KEY
from tests.factories import (
    DEFAULT_PASSWORD,
    app_store_subscription,
    bearer,
    credits_purchase,
    one_time_purchase,
    register,
)

SERVER = {"Authorization": f"Bearer {ADMIN_KEY}"}


async def find(client: httpx.AsyncClient, **params: str) -> list[str]:
    answer = await client.get("/v1/accounts", params=params, headers=SERVER)
    assert answer.status_code == 200, answer.text
    return [account["id"] for account in answer.json()["accounts"]]


async def test_find_by_what_support_holds(client: httpx.AsyncClient, db: AsyncSession) -> None:
    pat = (await register(client, "pat@example.com"))["account"]["id"]
    sam = (await register(client, "sam@example.com"))["account"]["id"]
    db.add(StripeCustomer(account_id=uuid.UUID(pat), customer_id="cus_PAT"))
    await apply_subscription_state(
        db, app_store_subscription(uuid.UUID(sam), store_subscription_id="2000000000000777")
    )
    await db.commit()
    assert await find(client, email="PAT@example.com") == [pat]
    assert await find(client, stripe_customer_id="cus_PAT") == [pat]
    assert await find(client, original_transaction_id="2000000000000777") == [sam]
    assert await find(client, email="nobody@example.com") == []
    assert await find(client, external_id="nobody") == []


async def test_find_by_a_purchase_id_from_either_store(client: httpx.AsyncClient, db: AsyncSession) -> None:
    pat = (await register(client, "pat@example.com"))["account"]["id"]
    sam = (await register(client, "sam@example.com"))["account"]["id"]
    await apply_purchase_state(db, one_time_purchase(uuid.UUID(pat), store_purchase_id="pi_PAT"))
    await apply_purchase_state(db, credits_purchase(uuid.UUID(sam), store_purchase_id="3000000000000042"))
    await db.commit()
    assert await find(client, purchase_id="pi_PAT") == [pat]
    assert await find(client, purchase_id="3000000000000042") == [sam]
    assert await find(client, purchase_id="pi_nobody") == []
    # With another criterion, both must match.
    assert await find(client, purchase_id="pi_PAT", email="sam@example.com") == []


async def test_read_an_account_and_its_log(client: httpx.AsyncClient) -> None:
    session = await register(client, "pat@example.com")
    account_id = session["account"]["id"]
    account = await client.get(f"/v1/accounts/{account_id}", headers=SERVER)
    assert account.status_code == 200
    body = account.json()
    assert (body["email"], body["email_verified"], body["external_id"], body["deleted_at"]) == (
        "pat@example.com",
        False,
        None,
        None,
    )
    assert [i["provider"] for i in body["identities"]] == ["email"]
    log = await client.get(f"/v1/accounts/{account_id}/events", params={"type": "account.*"}, headers=SERVER)
    assert [e["type"] for e in log.json()["events"]] == ["account.created"]
    # Deleted accounts stay findable by id for support, anonymized.
    assert (await client.delete("/v1/me", headers=bearer(session))).status_code == 204
    gone = (await client.get(f"/v1/accounts/{account_id}", headers=SERVER)).json()
    assert gone["email"] is None and gone["deleted_at"] is not None


async def test_lookups_need_the_server_key_and_a_criterion(client: httpx.AsyncClient) -> None:
    session = await register(client, "pat@example.com")
    assert (await client.get("/v1/accounts", params={"email": "pat@example.com"})).status_code == 401
    as_user = await client.get("/v1/accounts", params={"email": "pat@example.com"}, headers=bearer(session))
    assert as_user.status_code == 401
    nothing = await client.get("/v1/accounts", headers=SERVER)
    assert (nothing.status_code, nothing.json()["error"]["code"]) == (422, "missing_lookup")
    for path in (
        "/v1/accounts/not-a-uuid",
        f"/v1/accounts/{uuid.uuid4()}",
        f"/v1/accounts/{uuid.uuid4()}/events",
    ):
        missing = await client.get(path, headers=SERVER)
        assert (missing.status_code, missing.json()["error"]["code"]) == (404, "account_not_found")


async def test_an_address_is_found_as_sign_in_reads_it(client: httpx.AsyncClient) -> None:
    pat = (await register(client, "pat@example.com"))["account"]["id"]
    wide = "Pat@ｅｘａｍｐｌｅ．ｃｏｍ"
    login = await client.post("/v1/auth/login", json={"email": wide, "password": DEFAULT_PASSWORD})
    assert login.status_code == 200
    assert await find(client, email=wide) == [pat]
    assert await find(client, email=" PAT@EXAMPLE.COM ") == [pat]
