from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from entitle.context import AppContext
from entitle.core.models.entitlements import AccountEntitlement, PromotionalGrant, Subscription
from entitle.core.models.events import AccountEvent
from entitle.core.subscriptions import Environment, Store, SubscriptionState, SubscriptionStatus
from entitle.errors import InvalidRequest, NotFound
from entitle.services.access import grants
from entitle.services.access.entitlements import (
    read_entitlements,
    refresh_due_entitlements,
    refresh_entitlements,
)
from entitle.services.access.subscriptions import (
    apply_subscription_state,
    find_subscription,
    list_subscriptions,
)
from tests.factories import make_account

NOW = datetime(2030, 3, 1, 12, 0, tzinfo=UTC)


def make_state(account_id: uuid.UUID, **overrides: Any) -> SubscriptionState:
    fields: dict[str, Any] = {
        "store": Store.STRIPE,
        "store_subscription_id": "sub_1",
        "account_id": account_id,
        "product": "pro_monthly",
        "store_product_id": "price_1",
        "status": SubscriptionStatus.ACTIVE,
        "current_period_end": NOW + timedelta(days=30),
        "will_renew": True,
        "environment": Environment.SANDBOX,
        "vendor_updated_at": NOW - timedelta(minutes=5),
        "raw": {"id": "sub_1", "object": "subscription", "created": NOW},
        "store_customer_id": "cus_1",
    }
    fields.update(overrides)
    return SubscriptionState(**fields)


async def event_types(db: AsyncSession, account_id: uuid.UUID, prefix: str = "") -> list[str]:
    rows = await db.scalars(
        select(AccountEvent.type)
        .where(AccountEvent.account_id == account_id, AccountEvent.type.startswith(prefix))
        .order_by(AccountEvent.created_at)
    )
    return list(rows)


async def test_new_subscription_is_stored_and_grants_in_the_same_transaction(db: AsyncSession) -> None:
    account = await make_account(db)

    assert await apply_subscription_state(db, make_state(account.id), now=NOW)
    await db.commit()

    row = await find_subscription(db, "stripe", "sub_1")
    assert row is not None and row.account_id == account.id and row.raw["created"] == NOW.isoformat()
    body = await read_entitlements(db, account.id, now=NOW)
    assert body["entitlements"]["pro"] == {
        "active": True,
        "source": "subscription",
        "store": "stripe",
        "product": "pro_monthly",
        "expires_at": "2030-03-31T12:00:00Z",
        "will_renew": True,
        "management_url": "http://testserver/v1/billing/stripe/portal",
        "duplicate_subscriptions": [],
    }
    assert body["subscriptions"] == [
        {
            "store": "stripe",
            "id": "sub_1",
            "product": "pro_monthly",
            "status": "active",
            "environment": "sandbox",
            "current_period_end": "2030-03-31T12:00:00Z",
            "grace_period_ends_at": None,
            "will_renew": True,
            "management_url": "http://testserver/v1/billing/stripe/portal",
            "payment_method": None,
            "discount": None,
        }
    ]
    granted = await db.scalar(select(AccountEvent).where(AccountEvent.type == "entitlement.granted"))
    assert granted is not None and granted.data["store"] == "stripe" and granted.data["entitlement"] == "pro"


async def test_older_snapshot_never_overwrites_newer_state(db: AsyncSession) -> None:
    account = await make_account(db)
    newer = make_state(account.id, status=SubscriptionStatus.EXPIRED, will_renew=False)
    older = replace(newer, status=SubscriptionStatus.ACTIVE, vendor_updated_at=NOW - timedelta(hours=1))

    assert await apply_subscription_state(db, newer, now=NOW)
    assert not await apply_subscription_state(db, older, now=NOW)
    await db.commit()

    [row] = await list_subscriptions(db, account.id)
    assert row.status == "expired"
    assert not (await read_entitlements(db, account.id, now=NOW))["entitlements"]["pro"]["active"]


async def test_equal_timestamp_is_applied_again_and_changes_nothing_twice(db: AsyncSession) -> None:
    account = await make_account(db)
    state = make_state(account.id)

    assert await apply_subscription_state(db, state, now=NOW)
    assert await apply_subscription_state(db, state, now=NOW)
    await db.commit()

    assert await event_types(db, account.id, "entitlement.") == ["entitlement.granted"]


async def test_a_subscription_the_session_holds_sees_the_state_just_applied(db: AsyncSession) -> None:
    account = await make_account(db)
    await apply_subscription_state(db, make_state(account.id), now=NOW)
    loaded = await find_subscription(db, "stripe", "sub_1")
    assert loaded is not None and loaded.status == "active"

    canceled = make_state(
        account.id, status=SubscriptionStatus.CANCELED_AT_PERIOD_END, will_renew=False, vendor_updated_at=NOW
    )
    assert await apply_subscription_state(db, canceled, now=NOW)

    # Written with a Core UPDATE, yet the object the session already held is not stale.
    assert (loaded.status, loaded.will_renew, loaded.vendor_updated_at) == (
        "canceled_at_period_end",
        False,
        NOW,
    )
    [listed] = await list_subscriptions(db, account.id)
    assert listed is loaded and listed.updated_at == NOW
    account_id = account.id
    await db.commit()
    db.expire_all()
    [reread] = await list_subscriptions(db, account_id)
    assert (reread.status, reread.will_renew, reread.raw["id"]) == ("canceled_at_period_end", False, "sub_1")


async def test_refresh_sees_a_source_the_caller_added_but_did_not_flush(db: AsyncSession) -> None:
    account = await make_account(db)
    db.add(PromotionalGrant(account_id=account.id, entitlement="pro", expires_at=NOW + timedelta(days=3)))

    change = await refresh_entitlements(db, account.id, now=NOW)

    assert change.granted == ["pro"]
    assert (await read_entitlements(db, account.id, now=NOW))["entitlements"]["pro"]["store"] == "promotional"


async def test_unchanged_answer_is_not_rewritten(db: AsyncSession) -> None:
    account = await make_account(db)
    await apply_subscription_state(db, make_state(account.id), now=NOW)
    stored = await db.get(AccountEntitlement, (account.id, "pro"))
    assert stored is not None and stored.updated_at == NOW

    account_id = account.id
    later = NOW + timedelta(minutes=1)
    change = await refresh_entitlements(db, account_id, now=later)
    db.expire_all()

    assert change.changed == [] and change.granted == []
    stored = await db.get(AccountEntitlement, (account_id, "pro"))
    assert stored is not None and stored.updated_at == NOW


async def test_expiry_and_cancellation_record_revocation_with_source(db: AsyncSession) -> None:
    account = await make_account(db)
    state = make_state(account.id)
    await apply_subscription_state(db, state, now=NOW)

    canceled = replace(
        state,
        status=SubscriptionStatus.REVOKED,
        will_renew=False,
        vendor_updated_at=NOW,
    )
    assert await apply_subscription_state(db, canceled, now=NOW)
    await db.commit()

    assert await event_types(db, account.id, "entitlement.") == ["entitlement.granted", "entitlement.revoked"]
    revoked = await db.scalar(select(AccountEvent).where(AccountEvent.type == "entitlement.revoked"))
    assert revoked is not None and revoked.data == {
        "entitlement": "pro",
        "store": "stripe",
        "source_id": "sub_1",
    }


async def test_duplicate_across_stores_is_reported_once(db: AsyncSession) -> None:
    account = await make_account(db)
    await apply_subscription_state(db, make_state(account.id), now=NOW)
    apple = make_state(
        account.id,
        store=Store.APP_STORE,
        store_subscription_id="2000000123",
        store_product_id="com.example.app.pro.monthly",
        store_customer_id=None,
    )

    await apply_subscription_state(db, apple, now=NOW)
    await apply_subscription_state(db, replace(apple, vendor_updated_at=NOW), now=NOW)
    await db.commit()

    assert await event_types(db, account.id, "subscription.duplicate") == ["subscription.duplicate_detected"]
    answer = (await read_entitlements(db, account.id, now=NOW))["entitlements"]["pro"]
    assert answer["duplicate_subscriptions"] == [
        {"store": "app_store", "id": "2000000123"},
        {"store": "stripe", "id": "sub_1"},
    ]


async def test_subscription_moving_accounts_takes_the_entitlement_along(db: AsyncSession) -> None:
    first = await make_account(db, email="first@example.com")
    second = await make_account(db, email="second@example.com")
    state = make_state(first.id, store=Store.APP_STORE, store_subscription_id="2000000777")
    await apply_subscription_state(db, state, now=NOW)

    await apply_subscription_state(db, replace(state, account_id=second.id, vendor_updated_at=NOW), now=NOW)
    await db.commit()

    assert not (await read_entitlements(db, first.id, now=NOW))["entitlements"]["pro"]["active"]
    assert (await read_entitlements(db, second.id, now=NOW))["entitlements"]["pro"]["active"]
    assert (await read_entitlements(db, first.id, now=NOW))["subscriptions"] == []


async def test_grace_period_entitles_until_it_ends(db: AsyncSession) -> None:
    account = await make_account(db)
    state = make_state(
        account.id,
        store=Store.APP_STORE,
        store_subscription_id="2000000999",
        status=SubscriptionStatus.IN_GRACE_PERIOD,
        current_period_end=NOW - timedelta(days=1),
        grace_period_ends_at=NOW + timedelta(days=5),
    )
    await apply_subscription_state(db, state, now=NOW)
    await db.commit()

    answer = (await read_entitlements(db, account.id, now=NOW))["entitlements"]["pro"]
    assert answer["active"] and answer["expires_at"] == "2030-03-06T12:00:00Z"
    assert answer["management_url"] == "https://apps.apple.com/account/subscriptions"
    later = (await read_entitlements(db, account.id, now=NOW + timedelta(days=5)))["entitlements"]["pro"]
    assert not later["active"]


async def test_stored_answer_past_its_expiry_reads_inactive_without_a_job(db: AsyncSession) -> None:
    account = await make_account(db)
    await apply_subscription_state(db, make_state(account.id), now=NOW)
    await db.commit()
    after = NOW + timedelta(days=31)

    assert not (await read_entitlements(db, account.id, now=after))["entitlements"]["pro"]["active"]
    # Reading wrote nothing; the sweep brings the stored row and the event log up to date.
    row = await db.get(AccountEntitlement, (account.id, "pro"))
    assert row is not None and row.active
    assert await refresh_due_entitlements(db, now=after) == 1
    await db.commit()
    await db.refresh(row)
    assert not row.active
    assert await event_types(db, account.id, "entitlement.") == ["entitlement.granted", "entitlement.revoked"]
    assert await refresh_due_entitlements(db, now=after) == 0


async def test_renewing_subscription_outranks_a_longer_grant(db: AsyncSession) -> None:
    account = await make_account(db)
    await grants.create_grant(
        db, account_id=account.id, entitlement="pro", expires_at=NOW + timedelta(days=90), now=NOW
    )
    await apply_subscription_state(db, make_state(account.id), now=NOW)
    await db.commit()

    answer = (await read_entitlements(db, account.id, now=NOW))["entitlements"]["pro"]
    assert answer["store"] == "stripe"
    # When the subscription's period ends unrenewed, the grant still holds and takes over.
    later = (await read_entitlements(db, account.id, now=NOW + timedelta(days=45)))["entitlements"]["pro"]
    assert later["active"] and later["store"] == "promotional"
    assert await event_types(db, account.id, "entitlement.") == ["entitlement.granted"]


async def test_grant_lifecycle(db: AsyncSession) -> None:
    account = await make_account(db)

    grant = await grants.create_grant(
        db,
        account_id=account.id,
        entitlement="pro",
        starts_at=NOW + timedelta(days=1),
        expires_at=NOW + timedelta(days=8),
        reason="conference",
        created_by="test",
        now=NOW,
    )
    await db.commit()
    assert not (await read_entitlements(db, account.id, now=NOW))["entitlements"]["pro"]["active"]
    during = (await read_entitlements(db, account.id, now=NOW + timedelta(days=2)))["entitlements"]["pro"]
    assert during["active"] and during["store"] == "promotional" and during["management_url"] is None

    await grants.revoke_grant(db, grant.id, now=NOW + timedelta(days=2))
    await grants.revoke_grant(db, grant.id, now=NOW + timedelta(days=3))  # again: a no-op
    await db.commit()
    assert grant.revoked_at == NOW + timedelta(days=2)
    assert not (await read_entitlements(db, account.id, now=NOW + timedelta(days=2)))["entitlements"]["pro"][
        "active"
    ]
    assert [g.id for g in await grants.list_grants(db, account.id)] == [grant.id]
    assert grants.grant_json(grant, now=NOW)["in_force"] is False


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"entitlement": "platinum"}, "unknown_entitlement"),
        ({"expires_at": NOW - timedelta(seconds=1)}, "grant_expired"),
        ({"expires_at": NOW.replace(tzinfo=None) + timedelta(days=1)}, "invalid_grant_dates"),
        ({"starts_at": NOW + timedelta(days=9)}, "invalid_grant_dates"),
        ({"expires_at": NOW + timedelta(days=366 * 101)}, "invalid_grant_dates"),
    ],
)
async def test_invalid_grants_are_refused(db: AsyncSession, overrides: dict[str, Any], code: str) -> None:
    account = await make_account(db)
    arguments: dict[str, Any] = {"entitlement": "pro", "expires_at": NOW + timedelta(days=7)} | overrides

    with pytest.raises(InvalidRequest) as caught:
        await grants.create_grant(db, account_id=account.id, now=NOW, **arguments)
    assert caught.value.code == code


async def test_grant_for_unknown_or_deleted_account_is_not_found(db: AsyncSession) -> None:
    with pytest.raises(NotFound):
        await grants.create_grant(
            db, account_id=uuid.uuid4(), entitlement="pro", expires_at=NOW + timedelta(days=1), now=NOW
        )
    with pytest.raises(NotFound):
        await grants.revoke_grant(db, uuid.uuid4())


async def test_find_account_by_id_or_email(db: AsyncSession) -> None:
    account = await make_account(db, email="Support.Case@Example.com")

    assert (await grants.find_account(db, str(account.id))).id == account.id
    assert (await grants.find_account(db, "support.case@example.com ")).id == account.id
    with pytest.raises(NotFound):
        await grants.find_account(db, "nobody@example.com")


async def test_removed_catalog_entitlement_is_dropped_from_stored_state(db: AsyncSession) -> None:
    account = await make_account(db)
    db.add(AccountEntitlement(account_id=account.id, entitlement="legacy", active=True, answer={}))
    await db.flush()

    await refresh_entitlements(db, account.id, now=NOW)
    await db.commit()

    assert await db.get(AccountEntitlement, (account.id, "legacy")) is None
    assert list((await read_entitlements(db, account.id, now=NOW))["entitlements"]) == ["pro"]


async def test_concurrent_deliveries_of_one_subscription_keep_the_newest(context: AppContext) -> None:
    async with context.database.transaction() as db:
        account = await make_account(db)
    base = make_state(account.id)
    snapshots = [
        replace(
            base,
            vendor_updated_at=NOW - timedelta(minutes=10 - i),
            current_period_end=NOW + timedelta(days=i),
        )
        for i in range(8)
    ]

    async def deliver(state: SubscriptionState) -> bool:
        async with context.database.transaction() as session:
            return await apply_subscription_state(session, state, now=NOW)

    await asyncio.gather(*(deliver(s) for s in reversed(snapshots)))

    async with context.database.transaction() as db:
        row = await db.scalar(select(Subscription))
        assert row is not None and row.current_period_end == NOW + timedelta(days=7)
        assert (await read_entitlements(db, account.id, now=NOW))["entitlements"]["pro"]["expires_at"] == (
            "2030-03-08T12:00:00Z"
        )
        assert len(await list_subscriptions(db, account.id)) == 1


async def test_concurrent_subscriptions_in_two_stores_both_count(context: AppContext) -> None:
    async with context.database.transaction() as db:
        account = await make_account(db)
    stripe = make_state(account.id)
    apple = make_state(account.id, store=Store.APP_STORE, store_subscription_id="2000000555")

    async def deliver(state: SubscriptionState) -> bool:
        async with context.database.transaction() as session:
            return await apply_subscription_state(session, state, now=NOW)

    assert await asyncio.gather(deliver(stripe), deliver(apple)) == [True, True]

    async with context.database.transaction() as db:
        answer = (await read_entitlements(db, account.id, now=NOW))["entitlements"]["pro"]
        # Whichever committed second saw the first: the stored answer knows about both.
        assert len(answer["duplicate_subscriptions"]) == 2
        assert await event_types(db, account.id, "entitlement.") == ["entitlement.granted"]


BUNDLE_CATALOG = """
[entitlements.pro]
[entitlements.storage]

[products.pro_monthly]
name = "Pro"
entitlements = ["pro"]
stripe = { lookup_key = "pro_monthly", unit_amount = 999, currency = "usd", interval = "month" }

[products.bundle]
name = "Pro and storage"
entitlements = ["pro", "storage"]
app_store = { product_id = "com.example.app.bundle" }
"""


class TestSeveralEntitlements:
    @pytest.fixture
    def settings_overrides(self, tmp_path: Path) -> dict[str, Any]:
        path = tmp_path / "catalog.toml"
        path.write_text(BUNDLE_CATALOG)
        return {"catalog": path}

    async def test_each_subscription_is_listed_once_beside_every_entitlement(self, db: AsyncSession) -> None:
        account = await make_account(db)
        await apply_subscription_state(db, make_state(account.id), now=NOW)
        bundle = make_state(
            account.id, store=Store.APP_STORE, store_subscription_id="2000000321", product="bundle"
        )
        await apply_subscription_state(db, bundle, now=NOW)
        await db.commit()

        body = await read_entitlements(db, account.id, now=NOW)

        assert list(body["entitlements"]) == ["pro", "storage"]
        assert body["entitlements"]["storage"]["store"] == "app_store"
        assert len(body["entitlements"]["pro"]["duplicate_subscriptions"]) == 2
        assert body["entitlements"]["storage"]["duplicate_subscriptions"] == []
        assert sorted((s["store"], s["id"]) for s in body["subscriptions"]) == [
            ("app_store", "2000000321"),
            ("stripe", "sub_1"),
        ]
