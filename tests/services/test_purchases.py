"""Purchases in and the ledger: each purchase credits once, refunds take back, spends never overdraw."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from entitle.context import AppContext
from entitle.core.catalog import ProductType
from entitle.core.models.events import AccountEvent
from entitle.core.models.purchases import Balance, BalanceTransaction
from entitle.core.purchases import PurchaseState
from entitle.core.subscriptions import Environment, Store, SubscriptionState, SubscriptionStatus
from entitle.services.access import balances
from entitle.services.access.entitlements import read_entitlements
from entitle.services.access.purchases import apply_purchase_state
from entitle.services.access.subscriptions import apply_subscription_state
from tests.factories import make_account

NOW = datetime.now(UTC).replace(microsecond=0)


def pack(account_id: uuid.UUID, **overrides: Any) -> PurchaseState:
    fields: dict[str, Any] = {
        "store": Store.STRIPE,
        "store_purchase_id": "pi_pack",
        "account_id": account_id,
        "product": "credits_100",
        "store_product_id": "credits_100",
        "type": ProductType.CONSUMABLE,
        "quantity": 2,
        "purchased_at": NOW - timedelta(minutes=5),
        "environment": Environment.SANDBOX,
        "vendor_updated_at": NOW - timedelta(minutes=5),
        "amount": 998,
        "currency": "usd",
    }
    fields.update(overrides)
    return PurchaseState(**fields)


async def ledger_sum(db: AsyncSession, account_id: uuid.UUID, currency: str = "credits") -> int:
    total = await db.scalar(
        select(func.coalesce(func.sum(BalanceTransaction.amount), 0)).where(
            BalanceTransaction.account_id == account_id, BalanceTransaction.currency == currency
        )
    )
    return int(total or 0)


async def event_types(db: AsyncSession, account_id: uuid.UUID) -> list[str]:
    rows = await db.scalars(
        select(AccountEvent.type)
        .where(AccountEvent.account_id == account_id)
        .order_by(AccountEvent.created_at)
    )
    return list(rows)


async def test_a_pack_credits_once_however_often_it_is_applied(db: AsyncSession) -> None:
    account = await make_account(db)
    state = pack(account.id)
    assert await apply_purchase_state(db, state)
    await apply_purchase_state(db, state)
    await apply_purchase_state(
        db, replace(state, vendor_updated_at=state.vendor_updated_at - timedelta(days=1))
    )
    await db.commit()

    body = await read_entitlements(db, account.id)
    assert body["balances"] == {"credits": 200}
    assert [p["id"] for p in body["purchases"]] == ["pi_pack"]
    assert body["purchases"][0]["quantity"] == 2 and body["purchases"][0]["refunded_at"] is None
    assert await ledger_sum(db, account.id) == 200
    types = await event_types(db, account.id)
    assert types.count("purchase.completed") == 1 and types.count("payment.succeeded") == 1
    payment = await db.scalar(select(AccountEvent).where(AccountEvent.type == "payment.succeeded"))
    assert payment is not None and payment.data["amount"] == 998 and payment.data["currency"] == "usd"


async def test_refunds_take_back_in_any_order_and_may_go_below_zero(db: AsyncSession) -> None:
    account = await make_account(db)
    state = pack(account.id)
    await apply_purchase_state(db, state)
    # 150 of the 200 credits are spent before the refunds arrive.
    await balances.post(db, account.id, "credits", -150, reason="spend", source="api")
    partial = replace(state, refunded_amount=499, vendor_updated_at=NOW - timedelta(minutes=3))
    full = replace(
        state,
        refunded_amount=998,
        revoked_at=NOW - timedelta(minutes=2),
        revocation_reason="refunded",
        vendor_updated_at=NOW - timedelta(minutes=2),
    )
    await apply_purchase_state(db, full)
    await apply_purchase_state(db, partial)  # late: older than what is stored, changes nothing
    await db.commit()

    body = await read_entitlements(db, account.id)
    assert body["balances"] == {"credits": -150}
    assert body["purchases"][0]["refunded_at"] is not None
    assert await ledger_sum(db, account.id) == -150
    with pytest.raises(balances.InsufficientBalance):
        await balances.post(db, account.id, "credits", -1, reason="spend", source="api")
    assert "purchase.refunded" in await event_types(db, account.id)


async def test_a_partial_refund_then_its_reversal_settle_to_the_purchase_worth(db: AsyncSession) -> None:
    account = await make_account(db)
    state = pack(account.id)
    await apply_purchase_state(db, state)
    await apply_purchase_state(
        db, replace(state, refunded_amount=250, vendor_updated_at=NOW - timedelta(minutes=4))
    )
    assert await balances.balance_of(db, account.id, "credits") == 150
    await apply_purchase_state(
        db, replace(state, refunded_amount=0, vendor_updated_at=NOW - timedelta(minutes=3))
    )
    await db.commit()
    assert await balances.balance_of(db, account.id, "credits") == 200
    reasons = list(
        await db.scalars(select(BalanceTransaction.reason).order_by(BalanceTransaction.created_at))
    )
    assert reasons == ["purchase", "refund", "refund_reversed"]


async def test_a_lifetime_unlock_is_in_the_answer_until_refunded(db: AsyncSession) -> None:
    account = await make_account(db)
    lifetime = pack(
        account.id,
        store_purchase_id="pi_life",
        product="pro_lifetime",
        store_product_id="pro_lifetime",
        type=ProductType.NON_CONSUMABLE,
        quantity=1,
        amount=19999,
    )
    await apply_purchase_state(db, lifetime)
    await db.commit()
    pro = (await read_entitlements(db, account.id))["entitlements"]["pro"]
    assert pro["active"] and pro["source"] == "purchase" and pro["expires_at"] is None

    await apply_purchase_state(
        db, replace(lifetime, revoked_at=NOW, revocation_reason="disputed", vendor_updated_at=NOW)
    )
    await db.commit()
    pro = (await read_entitlements(db, account.id))["entitlements"]["pro"]
    assert not pro["active"]


async def test_a_spend_is_idempotent_by_key_and_refused_when_short(db: AsyncSession) -> None:
    account = await make_account(db)
    await balances.post(db, account.id, "credits", 10, reason="welcome", source="operator:test")
    first = await balances.post(
        db, account.id, "credits", -4, reason="export", source="api", idempotency_key="k1"
    )
    again = await balances.post(
        db, account.id, "credits", -4, reason="export", source="api", idempotency_key="k1"
    )
    assert not first.replayed and again.replayed
    assert again.transaction.id == first.transaction.id and again.balance == 6
    with pytest.raises(balances.InsufficientBalance) as refused:
        await balances.post(
            db, account.id, "credits", -7, reason="export", source="api", idempotency_key="k2"
        )
    assert refused.value.code == "insufficient_balance" and refused.value.status_code == 409
    await db.commit()
    assert await balances.balance_of(db, account.id, "credits") == 6
    assert await ledger_sum(db, account.id) == 6
    assert await db.scalar(select(func.count()).select_from(BalanceTransaction)) == 2


async def test_racing_spends_never_overdraw(context: AppContext) -> None:
    async with context.database.sessionmaker() as db:
        account = await make_account(db)
        await balances.post(db, account.id, "credits", 100, reason="welcome", source="operator:test")
        await db.commit()

    async def spend(n: int) -> bool:
        async with context.database.sessionmaker() as db:
            try:
                await balances.post(
                    db, account.id, "credits", -7, reason="spend", source="api", idempotency_key=f"s{n}"
                )
                await db.commit()
                return True
            except balances.InsufficientBalance:
                await db.rollback()
                return False

    results = await asyncio.gather(*(spend(n % 20) for n in range(40)))
    async with context.database.sessionmaker() as db:
        balance = await balances.balance_of(db, account.id, "credits")
        assert balance >= 0
        assert balance == await ledger_sum(db, account.id)
        spends = await db.scalar(
            select(func.count()).select_from(BalanceTransaction).where(BalanceTransaction.amount < 0)
        )
        # 20 distinct keys: 14 fit in 100 credits, the rest are refused, repeats apply nothing.
        assert spends == 14 and balance == 100 - 14 * 7
        assert any(results) and not all(results)
        row = await db.get(Balance, (account.id, "credits"))
        assert row is not None and row.amount == balance


async def test_a_subscription_grants_its_credits_once_per_paid_period(
    db: AsyncSession, context: AppContext
) -> None:
    from entitle.core.catalog import parse_catalog
    from entitle.services.access.entitlements import bind_entitlement_rules

    catalog = parse_catalog(
        """
[entitlements.pro]
[currencies.credits]
name = "Credits"
[products.pro_monthly]
name = "Pro"
entitlements = ["pro"]
grants = { credits = 50 }
stripe = { lookup_key = "pro_monthly", unit_amount = 999, currency = "usd", interval = "month" }
"""
    )
    bind_entitlement_rules(context.database, catalog, "http://testserver")
    async with context.database.sessionmaker() as db:
        account = await make_account(db)
        state = SubscriptionState(
            store=Store.STRIPE,
            store_subscription_id="sub_credits",
            account_id=account.id,
            product="pro_monthly",
            store_product_id="price_1",
            status=SubscriptionStatus.TRIALING,
            current_period_end=NOW + timedelta(days=7),
            will_renew=True,
            environment=Environment.SANDBOX,
            vendor_updated_at=NOW - timedelta(minutes=10),
        )
        await apply_subscription_state(db, state)  # a trial is not a paid period
        assert await balances.balance_of(db, account.id, "credits") == 0
        paid = replace(
            state,
            status=SubscriptionStatus.ACTIVE,
            current_period_end=NOW + timedelta(days=30),
            vendor_updated_at=NOW - timedelta(minutes=5),
        )
        await apply_subscription_state(db, paid)
        await apply_subscription_state(
            db, replace(paid, vendor_updated_at=NOW - timedelta(minutes=4), will_renew=False)
        )
        assert await balances.balance_of(db, account.id, "credits") == 50
        renewed = replace(
            paid, current_period_end=NOW + timedelta(days=60), vendor_updated_at=NOW - timedelta(minutes=1)
        )
        await apply_subscription_state(db, renewed)
        await apply_subscription_state(db, renewed)
        await db.commit()
        assert await balances.balance_of(db, account.id, "credits") == 100
        assert (await read_entitlements(db, account.id))["balances"] == {"credits": 100}


async def test_a_pack_that_moves_to_another_account_is_held_once(db: AsyncSession) -> None:
    first = await make_account(db, email="first@example.com")
    second = await make_account(db, email="second@example.com")
    state = pack(first.id)
    await apply_purchase_state(db, state)
    await apply_purchase_state(
        db,
        replace(
            state, account_id=second.id, vendor_updated_at=state.vendor_updated_at + timedelta(minutes=1)
        ),
    )
    await db.commit()
    assert await balances.balance_of(db, first.id, "credits") == 0
    assert await balances.balance_of(db, second.id, "credits") == 200
    assert await ledger_sum(db, first.id) == 0 and await ledger_sum(db, second.id) == 200
    assert (await read_entitlements(db, first.id))["balances"] == {"credits": 0}
