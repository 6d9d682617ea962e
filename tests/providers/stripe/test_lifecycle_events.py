"""Stripe's events become the same lifecycle events as the App Store's, each once."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from entitle.context import AppContext
from entitle.core.models.events import AccountEvent
from entitle.providers.stripe.provider import StripeProvider
from tests.providers.stripe.conftest import deliver, paid_checkout
from tests.standins.stripe import StripeStandin

pytestmark = pytest.mark.usefixtures("pushed")


async def lifecycle(context: AppContext, account_id: Any) -> list[str]:
    async with context.database.sessionmaker() as db:
        rows = await db.scalars(
            select(AccountEvent.type)
            .where(AccountEvent.account_id == account_id, AccountEvent.type.startswith("subscription."))
            .order_by(AccountEvent.created_at)
        )
        return [kind for kind in rows if kind != "subscription.duplicate_detected"]


async def test_a_subscription_lifecycle_over_webhooks(
    client: httpx.AsyncClient,
    context: AppContext,
    db: AsyncSession,
    stripe_provider: StripeProvider,
    standin: StripeStandin,
) -> None:
    account, sub_id = await paid_checkout(db, stripe_provider, standin, "life@example.com")
    delivered = 0

    async def deliver_new() -> None:
        nonlocal delivered
        for event in standin.events.log[delivered:]:
            assert (await deliver(client, standin, event)).status_code == 200
        delivered = len(standin.events.log)

    await deliver_new()
    standin.renew(sub_id)
    await deliver_new()
    standin.cancel_at_period_end(sub_id)
    await deliver_new()
    standin.cancel_at_period_end(sub_id, cancel=False)
    await deliver_new()
    standin.fail_renewal(sub_id)
    await deliver_new()
    standin.recover(sub_id)
    await deliver_new()
    standin.cancel_now(sub_id)
    await deliver_new()
    # Stripe redelivers everything: nothing is announced twice.
    for event in list(standin.events.log):
        await deliver(client, standin, event)
    assert await lifecycle(context, account.id) == [
        "subscription.started",
        "subscription.renewed",
        "subscription.will_not_renew",
        "subscription.will_renew",
        "subscription.billing_issue",
        "subscription.renewed",
        "subscription.expired",
    ]
