"""A Stripe-compatible server that implements less than Stripe: webhooks must still converge.

Listing a customer's subscriptions, invoice payments and Checkout Sessions, and `expand`, are
conveniences entitle uses for detail (the card, whether a refund was full) or for safety nets; a
server without them must neither fail an event forever nor stop a person from paying.
"""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from entitle.context import AppContext
from entitle.core.models.entitlements import Subscription
from entitle.core.models.events import InboxStatus, ProviderEvent
from entitle.providers.stripe.provider import StripeProvider
from entitle.services.access.entitlements import read_entitlements
from tests.providers.stripe.conftest import deliver, paid_checkout
from tests.standins.stripe import StripeStandin

pytestmark = pytest.mark.usefixtures("pushed")

UNIMPLEMENTED = {
    ("GET", "/v1/subscriptions"),
    ("GET", "/v1/invoice_payments"),
    ("GET", "/v1/checkout/sessions"),
}


async def test_events_converge_without_lists_or_expansion(
    client: httpx.AsyncClient,
    context: AppContext,
    db: AsyncSession,
    stripe_provider: StripeProvider,
    standin: StripeStandin,
) -> None:
    standin.state.unimplemented |= UNIMPLEMENTED
    standin.state.refuse_expand = True
    account, sub_id = await paid_checkout(db, stripe_provider, standin, "minimal@example.com")
    for event in standin.events.log:
        assert (await deliver(client, standin, event)).status_code == 200
    async with context.database.sessionmaker() as s:
        assert (await read_entitlements(s, account.id))["entitlements"]["pro"]["active"] is True

    seen = len(standin.events.log)
    standin.refund(sub_id)
    standin.cancel_now(sub_id)
    standin.delete_customer(standin.subscription(sub_id)["customer"])
    # Only the events that need a customer-wide re-read, in the worst order.
    for kind in ("customer.deleted", "charge.refunded"):
        for event in standin.events.of_type(kind):
            assert (await deliver(client, standin, event)).status_code == 200
    assert len(standin.events.log) > seen

    async with context.database.sessionmaker() as s:
        rows = (await s.scalars(select(ProviderEvent))).all()
        assert {r.status for r in rows} == {InboxStatus.PROCESSED}, [(r.type, r.last_error) for r in rows]
        status = await s.scalar(
            select(Subscription.status).where(Subscription.store_subscription_id == sub_id)
        )
        # Without the invoice payments the refund cannot be told full, so the end is "expired".
        assert status == "expired"
        assert (await read_entitlements(s, account.id))["entitlements"]["pro"]["active"] is False
