"""The offer rules over an account's subscriptions in every store (services.billing.offers)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from entitle.context import AppContext
from entitle.core.catalog import OfferEligibility
from entitle.core.subscriptions import SubscriptionStatus
from entitle.db.types import utcnow
from entitle.services.access.subscriptions import apply_subscription_state
from entitle.services.billing.offers import SubscriptionHistory, subscription_history
from tests.factories import app_store_subscription, make_account, stripe_subscription

CATALOG = """
[entitlements.pro]
[entitlements.storage]

[products.pro_monthly]
name = "Pro, monthly"
entitlements = ["pro"]
stripe = { lookup_key = "pro_monthly", unit_amount = 999, currency = "usd", interval = "month" }
app_store = { product_id = "com.example.app.pro.monthly" }

[products.storage_monthly]
name = "Storage"
entitlements = ["storage"]
stripe = { lookup_key = "storage_monthly", unit_amount = 199, currency = "usd", interval = "month" }

[offers.winback]
product = "pro_monthly"
app_store_offer_id = "winback3"
eligible = "lapsed"
"""

RULES = [rule for rule in OfferEligibility]


@pytest.fixture
def settings_overrides(tmp_path: Path) -> dict[str, Any]:
    path = tmp_path / "catalog.toml"
    path.write_text(CATALOG)
    return {"catalog": path}


async def history(db: AsyncSession, context: AppContext, account_id: uuid.UUID) -> SubscriptionHistory:
    return await subscription_history(db, account_id, ("pro",), context.catalog, now=utcnow())


def allowed(found: SubscriptionHistory) -> set[str]:
    return {rule.value for rule in RULES if found.allows(rule)}


async def test_an_account_that_never_subscribed_is_new(db: AsyncSession, context: AppContext) -> None:
    account = await make_account(db)
    # A subscription to other entitlements does not count.
    await apply_subscription_state(db, stripe_subscription(account.id, product="storage_monthly"))
    await db.commit()
    assert allowed(await history(db, context, account.id)) == {"new", "anyone"}


@pytest.mark.parametrize(
    "state",
    [
        pytest.param(lambda a: stripe_subscription(a), id="paid on the web"),
        pytest.param(
            lambda a: app_store_subscription(a, status=SubscriptionStatus.TRIALING), id="trial in the app"
        ),
        pytest.param(
            lambda a: stripe_subscription(
                a, status=SubscriptionStatus.CANCELED_AT_PERIOD_END, will_renew=False
            ),
            id="cancelled, period not over",
        ),
    ],
)
async def test_an_account_with_a_live_subscription_is_subscribed(
    db: AsyncSession, context: AppContext, state: Any
) -> None:
    account = await make_account(db)
    await apply_subscription_state(db, state(account.id))
    await db.commit()
    assert allowed(await history(db, context, account.id)) == {"subscribed", "anyone"}


async def test_a_paid_subscription_that_ended_is_lapsed(db: AsyncSession, context: AppContext) -> None:
    account = await make_account(db)
    await apply_subscription_state(
        db,
        stripe_subscription(
            account.id,
            status=SubscriptionStatus.EXPIRED,
            will_renew=False,
            current_period_end=utcnow() - timedelta(days=3),
        ),
    )
    await db.commit()
    assert allowed(await history(db, context, account.id)) == {"lapsed", "anyone"}


async def test_a_paid_subscription_whose_period_ran_out_is_lapsed(
    db: AsyncSession, context: AppContext
) -> None:
    # The store has not said "expired" yet, but the period is over: nothing entitles any more.
    account = await make_account(db)
    await apply_subscription_state(
        db, app_store_subscription(account.id, current_period_end=utcnow() - timedelta(hours=1))
    )
    await db.commit()
    assert allowed(await history(db, context, account.id)) == {"lapsed", "anyone"}


async def test_a_failed_renewal_after_paying_is_lapsed(db: AsyncSession, context: AppContext) -> None:
    account = await make_account(db)
    await apply_subscription_state(
        db, app_store_subscription(account.id, status=SubscriptionStatus.IN_BILLING_RETRY)
    )
    await db.commit()
    assert allowed(await history(db, context, account.id)) == {"lapsed", "anyone"}


async def test_a_trial_that_ended_unpaid_is_still_new(db: AsyncSession, context: AppContext) -> None:
    account = await make_account(db)
    started = utcnow() - timedelta(days=10)
    trial_end = started + timedelta(days=7)
    await apply_subscription_state(
        db,
        stripe_subscription(
            account.id,
            status=SubscriptionStatus.TRIALING,
            trial_started_at=started,
            current_period_end=trial_end,
            vendor_updated_at=started,
        ),
    )
    await apply_subscription_state(
        db,
        stripe_subscription(
            account.id,
            status=SubscriptionStatus.EXPIRED,
            will_renew=False,
            current_period_end=trial_end,
            vendor_updated_at=trial_end,
        ),
    )
    await db.commit()
    assert allowed(await history(db, context, account.id)) == {"new", "anyone"}


async def test_a_trial_that_converted_and_then_ended_is_lapsed(db: AsyncSession, context: AppContext) -> None:
    account = await make_account(db)
    started = utcnow() - timedelta(days=60)
    trial_end = started + timedelta(days=7)
    paid_end = trial_end + timedelta(days=30)
    for status, period_end, at in [
        (SubscriptionStatus.TRIALING, trial_end, started),
        (SubscriptionStatus.ACTIVE, paid_end, trial_end),
        (SubscriptionStatus.EXPIRED, paid_end, paid_end),
    ]:
        await apply_subscription_state(
            db,
            app_store_subscription(
                account.id,
                status=status,
                current_period_end=period_end,
                vendor_updated_at=at,
                trial_started_at=started if status is SubscriptionStatus.TRIALING else None,
            ),
        )
    await db.commit()
    assert allowed(await history(db, context, account.id)) == {"lapsed", "anyone"}


async def test_the_jws_gets_one_of_the_accounts_app_store_transactions(
    db: AsyncSession, context: AppContext
) -> None:
    account = await make_account(db)
    assert (await history(db, context, account.id)).app_store_transaction_id is None
    await apply_subscription_state(db, stripe_subscription(account.id))
    await apply_subscription_state(
        db, app_store_subscription(account.id, store_subscription_id="2000000000000042")
    )
    await db.commit()
    found = await history(db, context, account.id)
    assert found.app_store_transaction_id == "2000000000000042"
