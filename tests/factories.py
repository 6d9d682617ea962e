"""Small factories for tests: make what a test needs, with overrides."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from entitle.core.catalog import ProductType
from entitle.core.models.accounts import Account
from entitle.core.purchases import PurchaseState
from entitle.core.subscriptions import Environment, Store, SubscriptionState, SubscriptionStatus
from entitle.db.types import utcnow
from entitle.services.identity import accounts

DEFAULT_PASSWORD = "correct horse battery staple"


async def make_account(db: AsyncSession, *, email: str = "person@example.com", **overrides: Any) -> Account:
    """A password account, committed."""
    account = await accounts.register_with_password(
        db, email=email, password=overrides.pop("password", DEFAULT_PASSWORD)
    )
    for name, value in overrides.items():
        setattr(account, name, value)
    await db.commit()
    return account


async def register(
    http: httpx.AsyncClient, email: str = "person@example.com", password: str = DEFAULT_PASSWORD
) -> dict[str, Any]:
    """Register over HTTP; returns the session body (account, access_token, refresh_token)."""
    response = await http.post("/v1/auth/register", json={"email": email, "password": password})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def bearer(session_or_token: dict[str, Any] | str) -> dict[str, str]:
    token = session_or_token if isinstance(session_or_token, str) else session_or_token["access_token"]
    return {"Authorization": f"Bearer {token}"}


def app_store_subscription(account_id: uuid.UUID, **overrides: Any) -> SubscriptionState:
    """An active, renewing App Store subscription to `pro_monthly`, as the provider would report it."""
    values: dict[str, Any] = {
        "store": Store.APP_STORE,
        "store_subscription_id": "2000000000000001",
        "account_id": account_id,
        "product": "pro_monthly",
        "store_product_id": "com.example.app.pro.monthly",
        "status": SubscriptionStatus.ACTIVE,
        "current_period_end": utcnow() + timedelta(days=365),
        "will_renew": True,
        "environment": Environment.SANDBOX,
        "vendor_updated_at": utcnow(),
    }
    return SubscriptionState(**(values | overrides))


def stripe_subscription(account_id: uuid.UUID, **overrides: Any) -> SubscriptionState:
    """An active, renewing Stripe subscription to `pro_monthly`, as the provider would report it."""
    values: dict[str, Any] = {
        "store": Store.STRIPE,
        "store_subscription_id": "sub_1",
        "account_id": account_id,
        "product": "pro_monthly",
        "store_product_id": "price_pro_monthly",
        "status": SubscriptionStatus.ACTIVE,
        "current_period_end": utcnow() + timedelta(days=30),
        "will_renew": True,
        "environment": Environment.SANDBOX,
        "vendor_updated_at": utcnow(),
        "store_customer_id": "cus_1",
    }
    return SubscriptionState(**(values | overrides))


def one_time_purchase(account_id: uuid.UUID, **overrides: Any) -> PurchaseState:
    """A paid Stripe purchase of `pro_lifetime` ($199.99, production), as the provider would report it."""
    values: dict[str, Any] = {
        "store": Store.STRIPE,
        "store_purchase_id": "pi_lifetime_1",
        "account_id": account_id,
        "product": "pro_lifetime",
        "store_product_id": "pro_lifetime",
        "type": ProductType.NON_CONSUMABLE,
        "quantity": 1,
        "purchased_at": utcnow(),
        "environment": Environment.PRODUCTION,
        "vendor_updated_at": utcnow(),
        "amount": 19999,
        "currency": "usd",
        "store_customer_id": "cus_1",
    }
    return PurchaseState(**(values | overrides))


def credits_purchase(account_id: uuid.UUID, **overrides: Any) -> PurchaseState:
    """A paid App Store purchase of `credits_100` ($4.99 a pack), as the provider would report it."""
    values: dict[str, Any] = {
        "store": Store.APP_STORE,
        "store_purchase_id": "3000000000000001",
        "product": "credits_100",
        "store_product_id": "com.example.app.credits.100",
        "type": ProductType.CONSUMABLE,
        "amount": 499,
        "store_customer_id": None,
    }
    return one_time_purchase(account_id, **(values | overrides))


async def eventually(
    check: Any, *, timeout: float = 10.0, interval: float = 0.02, message: str = "never converged"
) -> Any:
    """Await `check()` until it returns something truthy (a client waiting for a change to land:
    provider events are processed off the request). Returns that value; fails after `timeout`."""
    import asyncio
    import time

    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(message)
        await asyncio.sleep(interval)


async def inbox_row(context: Any, **where: Any) -> Any:
    """The one provider-event row matching `where` (column=value), as stored now."""
    from sqlalchemy import select

    from entitle.core.models.events import ProviderEvent

    async with context.database.sessionmaker() as db:
        rows = list((await db.scalars(select(ProviderEvent).filter_by(**where))).all())
    assert len(rows) == 1, rows
    return rows[0]


# Shorter than a batch sent to a slow receiver takes: the case where two workers once sent a row twice.
# The worker's real lease is two minutes long.
SHORT_LEASE = timedelta(seconds=1)


async def run_two_workers(work: Any, left: Any, *, timeout: float = 60.0) -> None:
    """Two workers side by side, each running `work()` until `left()` (rows still to send) is 0."""
    import asyncio

    async def worker() -> None:
        while await left():
            await work()
            await asyncio.sleep(0.01)

    await asyncio.wait_for(asyncio.gather(worker(), worker()), timeout)
