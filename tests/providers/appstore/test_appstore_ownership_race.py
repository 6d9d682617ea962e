"""Two writers recording the owner of one new purchase at once (the app's post and Apple's notification)."""

from __future__ import annotations

import asyncio
import datetime as dt

from sqlalchemy import func, select

from entitle.context import AppContext
from entitle.providers.appstore.ledger import find_owner, set_owner
from entitle.providers.appstore.models import AppStoreOwnershipChange
from tests.factories import make_account


async def test_both_writers_succeed_and_the_change_is_recorded_once(context: AppContext) -> None:
    async with context.database.transaction() as db:
        account = await make_account(db, email="race@example.com")

    async def record() -> None:
        async with context.database.transaction() as db:
            await set_owner(
                db,
                original_transaction_id="7000000000000001",
                owner=account.id,
                reason="app_account_token",
                environment="Sandbox",
                product_id="com.example.app.credits.100",
                purchase_token=account.app_account_token,
                ownership_type="PURCHASED",
                now=dt.datetime.now(dt.UTC),
            )

    await asyncio.gather(*(record() for _ in range(4)))
    async with context.database.sessionmaker() as db:
        row = await find_owner(db, "7000000000000001")
        assert row is not None and row.account_id == account.id
        changes = await db.scalar(select(func.count()).select_from(AppStoreOwnershipChange))
        assert changes == 1
