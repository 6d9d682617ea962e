"""The App Store's notifications become the same lifecycle events as Stripe's, each once."""

from __future__ import annotations

import datetime as dt

import httpx
from sqlalchemy import select

from entitle.context import AppContext
from entitle.core.models.events import AccountEvent
from tests.factories import register
from tests.standins.appstore import AppStoreSigner, SubscriptionSimulator


async def lifecycle(context: AppContext) -> list[str]:
    async with context.database.sessionmaker() as db:
        rows = await db.scalars(
            select(AccountEvent.type)
            .where(AccountEvent.type.startswith("subscription."))
            .order_by(AccountEvent.created_at)
        )
        return [kind for kind in rows if kind != "subscription.duplicate_detected"]


async def test_a_subscription_lifecycle_over_notifications(
    client: httpx.AsyncClient, context: AppContext, signer: AppStoreSigner
) -> None:
    session = await register(client, "life@example.com")
    sim = SubscriptionSimulator(
        signer=signer,
        original_transaction_id="3000000000000077",
        product_id="com.example.app.pro.monthly",
        app_account_token=session["account"]["app_account_token"],
        start=dt.datetime.now(dt.UTC) - dt.timedelta(days=10),
    )
    notes = [
        sim.subscribe(),
        sim.renew(),
        sim.set_auto_renew(False),
        sim.set_auto_renew(True),
        sim.upgrade(),
        sim.fail_to_renew(grace=True),
        sim.refund(),
    ]
    for note in notes:
        response = await client.post("/webhooks/appstore", json=note.body)
        assert response.status_code == 200, response.text
    # Apple retries: the same notifications again change nothing and announce nothing.
    for note in notes:
        assert (await client.post("/webhooks/appstore", json=note.body)).json()["duplicate"] is True
    assert await lifecycle(context) == [
        "subscription.started",
        "subscription.renewed",
        "subscription.will_not_renew",
        "subscription.will_renew",
        "subscription.plan_changed",
        "subscription.billing_issue",
        "subscription.refunded",
    ]
