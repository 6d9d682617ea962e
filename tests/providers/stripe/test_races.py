"""Reads that overlap: a read that started earlier must never overwrite one that started later.

Each test holds one read's answer back (a gateway that waits on an event after Stripe answered),
lets Stripe change and a second read store the change, then releases the first read. Whatever
order the answers arrive in, the stored state must be the later read's.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from entitle.cli.stripe import sync_stripe
from entitle.context import AppContext
from entitle.core.models.entitlements import Subscription
from entitle.providers.stripe.client import StripeDict, StripeGateway
from entitle.providers.stripe.provider import StripeProvider
from entitle.services.billing import billing_stripe
from tests.factories import make_account
from tests.standins.stripe import StripeStandin

pytestmark = pytest.mark.usefixtures("pushed")


class HeldGateway(StripeGateway):
    """A gateway whose `held` call gets Stripe's answer, then waits for `release` before returning it."""

    def __init__(self, standin: StripeStandin, held: str) -> None:
        super().__init__(standin.secret_key, api_base=standin.base_url)
        self.held = held
        self.answered = asyncio.Event()
        self.release = asyncio.Event()

    async def _hold(self) -> None:
        self.answered.set()
        await self.release.wait()

    async def retrieve_subscription(
        self, subscription_id: str, *, expand: list[str] | None = None
    ) -> StripeDict:
        answer = await super().retrieve_subscription(subscription_id, expand=expand)
        if self.held == "retrieve_subscription":
            await self._hold()
        return answer

    async def set_cancel_at_period_end(self, subscription_id: str, cancel: bool) -> StripeDict:
        answer = await super().set_cancel_at_period_end(subscription_id, cancel)
        if self.held == "set_cancel_at_period_end":
            await self._hold()
        return answer

    async def iter_subscription_pages(
        self, *, customer: str | None = None
    ) -> AsyncIterator[tuple[list[StripeDict], datetime]]:
        first = True
        async for page in super().iter_subscription_pages(customer=customer):
            if first and self.held == "iter_subscription_pages":
                await self._hold()
            first = False
            yield page


async def _paid_subscription(context: AppContext, provider: StripeProvider, standin: StripeStandin) -> Any:
    """An account with an active subscription, stored through a re-read."""
    async with context.database.sessionmaker() as db:
        account = await make_account(db, email="overlap@example.com")
        session = await billing_stripe.start_checkout(
            db, provider, account, "pro_monthly", success_url=None, cancel_url=None
        )
        await db.commit()
    standin.complete_checkout(session["id"])
    sub_id = standin.state.get(session["id"], "checkout.session")["subscription"]
    async with context.database.transaction() as db:
        await provider.reconciler.subscription(db, sub_id)
    return account, sub_id


async def _status(context: AppContext, sub_id: str) -> str | None:
    async with context.database.sessionmaker() as db:
        return await db.scalar(
            select(Subscription.status).where(Subscription.store_subscription_id == sub_id)
        )


async def _cancel_and_reread(
    context: AppContext, provider: StripeProvider, standin: StripeStandin, sub_id: str
) -> None:
    """Stripe cancels the subscription; a webhook's re-read (started later) stores it."""
    standin.cancel_now(sub_id)
    async with context.database.transaction() as db:
        await provider.reconciler.subscription(db, sub_id)
    assert await _status(context, sub_id) == "expired"


def with_gateway(provider: StripeProvider, gateway: StripeGateway) -> StripeProvider:
    """The same provider over another gateway."""
    return StripeProvider(
        config=provider.config,
        catalog=provider.catalog,
        sink=provider.sink,
        gateway=gateway,
        purchases=provider.purchases,
    )


async def test_a_webhook_read_that_started_first_but_answered_last_does_not_win(
    context: AppContext, stripe_provider: StripeProvider, standin: StripeStandin
) -> None:
    _, sub_id = await _paid_subscription(context, stripe_provider, standin)
    held = HeldGateway(standin, "retrieve_subscription")
    slow = with_gateway(stripe_provider, held)

    async def slow_reread() -> None:
        async with context.database.transaction() as db:
            await slow.reconciler.subscription(db, sub_id)

    task = asyncio.create_task(slow_reread())
    # It read `active`; its answer is still on the way.
    await asyncio.wait_for(held.answered.wait(), timeout=30)
    await _cancel_and_reread(context, stripe_provider, standin, sub_id)
    held.release.set()
    await task
    assert await _status(context, sub_id) == "expired"
    await held.aclose()


async def test_a_billing_route_answer_that_arrives_late_does_not_undo_a_later_read(
    context: AppContext, stripe_provider: StripeProvider, standin: StripeStandin
) -> None:
    account, sub_id = await _paid_subscription(context, stripe_provider, standin)
    held = HeldGateway(standin, "set_cancel_at_period_end")
    slow = with_gateway(stripe_provider, held)

    async def cancel_at_period_end() -> None:
        async with context.database.transaction() as db:
            await billing_stripe.set_cancel_at_period_end(db, slow, account, cancel=True)

    task = asyncio.create_task(cancel_at_period_end())
    # Stripe answered "active, cancels at period end".
    await asyncio.wait_for(held.answered.wait(), timeout=30)
    await _cancel_and_reread(context, stripe_provider, standin, sub_id)
    held.release.set()
    await task
    assert await _status(context, sub_id) == "expired"
    await held.aclose()


async def test_sync_stores_a_page_under_the_time_it_was_requested(
    context: AppContext, stripe_provider: StripeProvider, standin: StripeStandin
) -> None:
    _, sub_id = await _paid_subscription(context, stripe_provider, standin)
    held = HeldGateway(standin, "iter_subscription_pages")
    context.providers["stripe"] = with_gateway(stripe_provider, held)
    try:
        task = asyncio.create_task(sync_stripe(context))
        # The page says `active`; sync has not stored it yet. (Bounded: a sync that never reads its pages
        # through this method fails here instead of hanging.)
        await asyncio.wait_for(held.answered.wait(), timeout=30)
        await _cancel_and_reread(context, stripe_provider, standin, sub_id)
        held.release.set()
        summary = await task
    finally:
        context.providers["stripe"] = stripe_provider
        await held.aclose()
    assert summary.seen == 1 and summary.errors == []
    assert await _status(context, sub_id) == "expired"


async def test_a_stored_answer_needs_the_time_its_request_started(
    db: AsyncSession, context: AppContext, stripe_provider: StripeProvider, standin: StripeStandin
) -> None:
    _, sub_id = await _paid_subscription(context, stripe_provider, standin)
    with pytest.raises(ValueError):
        await stripe_provider.reconciler.subscription(db, sub_id, fresh=standin.subscription(sub_id))
