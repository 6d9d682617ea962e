"""Property: in whatever order Apple delivers a subscription's notifications, the newest state wins."""

from __future__ import annotations

import json
import random
import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from entitle.context import AppContext
from entitle.core.models.entitlements import Subscription
from entitle.db.types import utcnow
from entitle.providers.appstore.mapping import subscription_state
from entitle.providers.appstore.provider import AppStoreProvider
from tests.factories import make_account
from tests.standins.appstore import AppStoreSigner, random_history


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data(), seed=st.integers(min_value=0, max_value=2**32 - 1), steps=st.integers(1, 9))
async def test_any_delivery_order_ends_in_the_latest_signed_state(
    context: AppContext, signer: AppStoreSigner, data: st.DataObject, seed: int, steps: int
) -> None:
    provider: AppStoreProvider = context.providers["app_store"]
    async with context.database.sessionmaker() as db:
        account = await make_account(db, email=f"p-{uuid.uuid4().hex[:10]}@example.com")
        account_id, token = account.id, str(account.app_account_token)
    # The database is shared by every example of this test: each example is its own purchase.
    original = str(10**15 + uuid.uuid4().int % (9 * 10**15))
    history = random_history(
        signer, random.Random(seed), steps=steps, original_transaction_id=original, app_account_token=token
    ).history
    order = data.draw(st.permutations(history), label="delivery order")
    # Apple retries: some notifications arrive twice.
    repeats = data.draw(st.lists(st.sampled_from(history), max_size=3), label="redeliveries")
    for note in [*order, *repeats]:
        await context.pipeline.ingest(provider, json.dumps(note.body).encode(), {})
    await context.pipeline.wait_idle()

    latest = max(history, key=lambda note: note.signed_date)
    verified = provider.verifier.verify_notification(latest.signed_payload)
    assert verified.transaction is not None
    async with context.database.sessionmaker() as db:
        row = await db.scalar(select(Subscription).where(Subscription.store_subscription_id == original))
        expected = subscription_state(
            verified.transaction,
            verified.renewal_info,
            account_id=account_id,
            catalog=context.catalog,
            now=utcnow(),
            notification=verified,
        )
    assert row is not None
    assert row.vendor_updated_at == expected.vendor_updated_at
    assert (row.status, row.product, row.will_renew) == (
        expected.status.value,
        expected.product,
        expected.will_renew,
    )
    assert row.current_period_end == expected.current_period_end
    assert row.grace_period_ends_at == expected.grace_period_ends_at
    assert row.raw["notification"]["uuid"] == latest.notification_uuid
