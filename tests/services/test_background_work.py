"""The worker's loop: retried events, answers that time changed, and outbound webhooks, in one pass."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from entitle.app import run_background_work
from entitle.context import AppContext
from entitle.core.models.events import AccountEvent
from entitle.db.types import utcnow
from entitle.services.access import grants
from tests.factories import make_account


async def test_a_lapsed_grant_is_recorded_as_revoked_by_the_worker(
    context: AppContext, db: AsyncSession
) -> None:
    account = await make_account(db, email="lapse@example.com")
    ends = utcnow() + timedelta(seconds=1)
    await grants.create_grant(db, account_id=account.id, entitlement="pro", expires_at=ends)
    await db.commit()
    # Time passes: the grant ends, and nothing writes to the account afterwards.
    while utcnow() <= ends:
        await asyncio.sleep(0.1)

    await run_background_work(context, once=True)

    types = (
        await db.scalars(
            select(AccountEvent.type)
            .where(AccountEvent.account_id == account.id)
            .order_by(AccountEvent.created_at)
        )
    ).all()
    assert types.count("entitlement.granted") == 1
    assert types[-1] == "entitlement.revoked"
