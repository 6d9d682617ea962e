"""One Stripe read per subscription, not per event: a renewal's events, delivered together, settle on one
read that started after they were stored."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from entitle.context import AppContext
from entitle.core.models.entitlements import Subscription
from entitle.core.models.events import InboxStatus, ProviderEvent
from entitle.providers.stripe.provider import StripeProvider
from tests.providers.stripe.conftest import deliver, paid_checkout, stripe_settings
from tests.standins.stripe import StripeStandin

pytestmark = pytest.mark.usefixtures("pushed")


@pytest.fixture
def settings_overrides(standin: StripeStandin) -> dict[str, Any]:
    # One request a second, so a read visibly waits its turn while the other events arrive.
    return {**stripe_settings(standin), "stripe_max_requests_per_second": 1.0}


def subscription_reads(standin: StripeStandin, sub_id: str) -> int:
    return sum(
        1 for r in standin.requests if r["method"] == "GET" and r["path"] == f"/v1/subscriptions/{sub_id}"
    )


async def settled_subscription(
    http: httpx.AsyncClient,
    context: AppContext,
    db: AsyncSession,
    provider: StripeProvider,
    standin: StripeStandin,
    email: str,
) -> str:
    """A paid subscription whose events are all delivered and processed; the stand-in's log is emptied."""
    _, sub_id = await paid_checkout(db, provider, standin, email)
    for event in standin.events.log:
        await deliver(http, standin, event)
    await context.pipeline.wait_idle()
    standin.events.log.clear()
    return sub_id


async def test_a_renewals_events_arriving_while_the_read_waits_cost_one_read(
    acknowledging_client: httpx.AsyncClient,
    context: AppContext,
    db: AsyncSession,
    stripe_provider: StripeProvider,
    standin: StripeStandin,
) -> None:
    sub_id = await settled_subscription(
        acknowledging_client, context, db, stripe_provider, standin, "renews@example.com"
    )
    # A read just went out (the billing page, say): the next one must wait about a second for its turn.
    await stripe_provider.gateway.retrieve_subscription(sub_id)
    before = subscription_reads(standin, sub_id)

    standin.renew(sub_id)
    renewal = list(standin.events.log)
    assert len(renewal) >= 6 and {"invoice.paid", "customer.subscription.updated"} <= {
        e["type"] for e in renewal
    }
    # Delivered as Stripe does, all within a moment, in no particular order; each answered at once.
    for event in reversed(renewal):
        response = await deliver(acknowledging_client, standin, event)
        assert response.status_code == 200 and response.json()["status"] == "pending"
    await context.pipeline.wait_idle()

    assert subscription_reads(standin, sub_id) - before == 1
    async with context.database.sessionmaker() as check:
        rows = (
            await check.scalars(
                select(ProviderEvent).where(ProviderEvent.event_id.in_([e["id"] for e in renewal]))
            )
        ).all()
        stored = await check.scalar(select(Subscription).where(Subscription.store_subscription_id == sub_id))
    assert len(rows) == len(renewal) and {r.status for r in rows} == {InboxStatus.PROCESSED}
    assert stored is not None and stored.status == "active"
    assert stored.current_period_end is not None
    assert (
        int(stored.current_period_end.timestamp())
        == standin.subscription(sub_id)["items"]["data"][0]["current_period_end"]
    )


async def test_an_event_the_stored_state_already_reflects_is_not_read_again(
    acknowledging_client: httpx.AsyncClient,
    context: AppContext,
    db: AsyncSession,
    stripe_provider: StripeProvider,
    standin: StripeStandin,
) -> None:
    sub_id = await settled_subscription(
        acknowledging_client, context, db, stripe_provider, standin, "halves@example.com"
    )
    standin.renew(sub_id)
    renewal = list(standin.events.log)
    paid = [e for e in renewal if e["type"] == "invoice.paid"]
    rest = [e for e in renewal if e["type"] != "invoice.paid"]
    before = subscription_reads(standin, sub_id)
    # The invoice arrives first and is read; the subscription's own update arrives only after that read.
    for event in paid:
        await deliver(acknowledging_client, standin, event)
    await context.pipeline.wait_idle()
    assert subscription_reads(standin, sub_id) - before == 1
    for event in rest:
        await deliver(acknowledging_client, standin, event)
    await context.pipeline.wait_idle()
    assert subscription_reads(standin, sub_id) - before == 1  # its snapshot is what was already stored

    # A change the stored state does not show yet is read, whatever came before.
    standin.cancel_at_period_end(sub_id)
    await deliver(acknowledging_client, standin, standin.events.of_type("customer.subscription.updated")[-1])
    await context.pipeline.wait_idle()
    assert subscription_reads(standin, sub_id) - before == 2
    async with context.database.sessionmaker() as check:
        stored = await check.scalar(select(Subscription).where(Subscription.store_subscription_id == sub_id))
    assert stored is not None and stored.status == "canceled_at_period_end" and stored.will_renew is False
