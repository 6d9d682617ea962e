"""The operator's summary: the numbers a person would check by hand, on subscriptions driven through the
same door the stores use (`apply_subscription_state`, which writes the lifecycle events)."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from entitle.context import AppContext
from entitle.core.catalog import ProductType
from entitle.core.events import record_event
from entitle.core.models.events import AccountEvent
from entitle.core.purchases import PurchaseState
from entitle.core.subscriptions import Environment, SubscriptionState, SubscriptionStatus
from entitle.db.types import utcnow
from entitle.services.access.grants import create_grant
from entitle.services.access.purchases import apply_purchase_state
from entitle.services.access.subscriptions import apply_subscription_state
from entitle.services.reporting import reports
from tests.factories import (
    app_store_subscription,
    credits_purchase,
    make_account,
    one_time_purchase,
    stripe_subscription,
)

TODAY = utcnow().date()
START = TODAY - timedelta(days=9)


def later(state: SubscriptionState, **changes: Any) -> SubscriptionState:
    return replace(state, vendor_updated_at=state.vendor_updated_at + timedelta(seconds=1), **changes)


async def apply(db: AsyncSession, *states: SubscriptionState) -> None:
    """Apply `states` as production ones (the factories' are sandbox), which a summary counts by default."""
    for state in states:
        assert await apply_subscription_state(db, replace(state, environment=Environment.PRODUCTION))
    await db.commit()


async def move(db: AsyncSession, account_id: uuid.UUID, type: str, moment: datetime) -> None:
    """Say the account's `type` events happened at `moment` (the log is written at the real time)."""
    events = list(
        await db.scalars(
            select(AccountEvent).where(AccountEvent.account_id == account_id, AccountEvent.type == type)
        )
    )
    assert events, type
    for event in events:
        event.created_at = moment
    await db.commit()


def on(day: date, hour: int = 12, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), UTC)


async def test_mrr_prices_paying_stripe_subscriptions_from_the_catalog_and_normalizes_a_year(
    context: AppContext, db: AsyncSession
) -> None:
    monthly = await make_account(db, email="monthly@example.com")
    yearly = await make_account(db, email="yearly@example.com")
    trial = await make_account(db, email="trial@example.com")
    iphone = await make_account(db, email="iphone@example.com")
    lapsed = await make_account(db, email="lapsed@example.com")
    promo = await make_account(db, email="promo@example.com")
    await apply(
        db,
        stripe_subscription(monthly.id, store_subscription_id="sub_monthly"),
        stripe_subscription(
            yearly.id,
            store_subscription_id="sub_yearly",
            product="pro_yearly",
            current_period_end=utcnow() + timedelta(days=365),
        ),
        stripe_subscription(trial.id, store_subscription_id="sub_trial", status=SubscriptionStatus.TRIALING),
        app_store_subscription(iphone.id),
    )
    # Stored as active, but its period is over and nothing was heard since: the engine grants nothing.
    await apply(
        db,
        stripe_subscription(
            lapsed.id, store_subscription_id="sub_lapsed", current_period_end=utcnow() - timedelta(hours=1)
        ),
    )
    await create_grant(db, account_id=promo.id, entitlement="pro", expires_at=utcnow() + timedelta(days=7))
    await db.commit()

    report = await reports.summary(db, context.catalog, START, TODAY)

    # 999 a month + 9,999 a year / 12 = 1,832.25 cents; the trial pays nothing yet.
    assert report["mrr"] == {"usd": 1832}
    # An App Store subscription whose stored transaction carries no price: counted, not priced
    # (tests/web/test_reports_appstore.py prices signed transactions).
    assert report["mrr_unpriced"] == {"stripe": 0, "app_store": 1}
    assert report["active"] == {
        "total": 4,
        "trialing": 1,
        "by_store": {"stripe": 3, "app_store": 1},
        "by_product": {
            "stripe": {"pro_monthly": 2, "pro_yearly": 1},
            "app_store": {"pro_monthly": 1},
        },
        "promotional": {"pro": 1},
    }


async def test_each_day_of_the_range_is_present_and_churn_lands_on_its_utc_day(
    context: AppContext, db: AsyncSession
) -> None:
    account = await make_account(db)
    active = stripe_subscription(account.id)
    await apply(db, active, later(active, status=SubscriptionStatus.EXPIRED, will_renew=False))
    await move(db, account.id, "subscription.started", on(START, 0, 0))
    # A minute before midnight UTC belongs to that day, whatever the database's own time zone.
    churn_day = TODAY - timedelta(days=3)
    await move(db, account.id, "subscription.expired", on(churn_day, 23, 59))

    report = await reports.summary(db, context.catalog, START, TODAY)

    assert [day["date"] for day in report["daily"]] == [
        (START + timedelta(days=n)).isoformat() for n in range(10)
    ]
    by_day = {day["date"]: day for day in report["daily"]}
    assert by_day[START.isoformat()]["new"] == 1
    assert by_day[churn_day.isoformat()] == {
        "date": churn_day.isoformat(),
        "new": 0,
        "churned": 1,
        "trials_started": 0,
        "trials_converted": 0,
        "refunds": 0,
    }
    assert sum(day["churned"] for day in report["daily"]) == 1
    assert report["totals"] == {
        "new": 1,
        "churned": 1,
        "trials_started": 0,
        "trials_converted": 0,
        "refunds": 0,
    }
    assert report["active"]["total"] == 0
    assert (report["from"], report["to"]) == (START.isoformat(), TODAY.isoformat())

    # Outside the range: the day after the churn is where a shorter report starts.
    after = await reports.summary(db, context.catalog, churn_day + timedelta(days=1), TODAY)
    assert after["totals"]["churned"] == 0
    assert len(after["daily"]) == 3


async def test_a_trial_that_converts_is_counted_once_and_an_ordinary_renewal_is_not(
    context: AppContext, db: AsyncSession
) -> None:
    trialist = await make_account(db, email="trial@example.com")
    regular = await make_account(db, email="regular@example.com")
    trial = stripe_subscription(
        trialist.id, status=SubscriptionStatus.TRIALING, current_period_end=utcnow() + timedelta(days=7)
    )
    paid = stripe_subscription(regular.id, store_subscription_id="sub_2")
    await apply(
        db,
        trial,
        paid,
        later(trial, status=SubscriptionStatus.ACTIVE, current_period_end=utcnow() + timedelta(days=37)),
        later(paid, current_period_end=utcnow() + timedelta(days=60)),
    )
    for account in (trialist, regular):
        await move(db, account.id, "subscription.started", on(START + timedelta(days=1)))
        await move(db, account.id, "subscription.renewed", on(START + timedelta(days=8)))

    report = await reports.summary(db, context.catalog, START, TODAY)

    assert report["totals"]["new"] == 2
    assert report["totals"]["trials_started"] == 1
    assert report["totals"]["trials_converted"] == 1
    assert report["daily"][8]["trials_converted"] == 1
    assert report["mrr"] == {"usd": 999 * 2}


async def test_a_refund_is_counted_as_churn_and_its_stripe_amount_once_per_charge(
    context: AppContext, db: AsyncSession
) -> None:
    account = await make_account(db)
    active = stripe_subscription(account.id)
    await apply(db, active, later(active, status=SubscriptionStatus.REVOKED, will_renew=False))
    refund_day = TODAY - timedelta(days=2)
    await move(db, account.id, "subscription.refunded", on(refund_day))
    # What the Stripe handler logs for charge.refunded: the charge's amount refunded so far. Two partial
    # refunds of one charge add up to its total, not to the sum of both reports.
    for amount in (300, 999):
        await record_event(
            db,
            account.id,
            "billing.refunded",
            {
                "charge": "ch_1",
                "amount_refunded": amount,
                "currency": "usd",
                "refunded_in_full": amount == 999,
            },
        )
    await record_event(
        db, account.id, "billing.refunded", {"charge": "ch_2", "amount_refunded": 500, "currency": "eur"}
    )
    await db.commit()
    await move(db, account.id, "billing.refunded", on(refund_day))

    report = await reports.summary(db, context.catalog, START, TODAY)

    assert report["totals"]["refunds"] == 1
    assert report["totals"]["churned"] == 1
    assert report["daily"][-3]["refunds"] == 1
    assert report["refunded"] == {"eur": 500, "usd": 999}
    assert report["mrr"] == {"usd": 0}


async def test_an_empty_database_gives_zeros_for_every_day(context: AppContext, db: AsyncSession) -> None:
    report = await reports.summary(db, context.catalog, TODAY, TODAY)
    assert report["daily"] == [
        {
            "date": TODAY.isoformat(),
            "new": 0,
            "churned": 0,
            "trials_started": 0,
            "trials_converted": 0,
            "refunds": 0,
        }
    ]
    assert report["mrr"] == {"usd": 0}
    assert report["refunded"] == {}
    assert report["active"]["by_store"] == {"stripe": 0, "app_store": 0}
    assert report["one_time_revenue"] == {"usd": 0}
    assert report["one_time_purchases"] == 0 and report["one_time_unpriced"] == 0
    assert report["one_time_daily"] == [{"date": TODAY.isoformat(), "purchases": 0, "revenue": {}}]


async def test_one_time_revenue_is_net_of_refunds_per_day_and_currency_and_keeps_the_sandbox_apart(
    context: AppContext, db: AsyncSession
) -> None:
    buyer = await make_account(db, email="buyer@example.com")
    day_2, day_5 = START + timedelta(days=2), START + timedelta(days=5)

    def bought(purchase_id: str, **changes: Any) -> PurchaseState:
        return one_time_purchase(buyer.id, store_purchase_id=purchase_id, **changes)

    pack = {"product": "credits_100", "type": ProductType.CONSUMABLE, "amount": 499}
    for state in [
        bought("pi_lifetime", purchased_at=on(day_2, 0, 5)),
        # Two packs in one purchase, late in the same UTC day.
        bought("pi_packs", purchased_at=on(day_2, 23, 59), **pack | {"quantity": 2, "amount": 998}),
        # Paid in euros: never added to dollars.
        bought("pi_euro", purchased_at=on(day_5), **pack | {"currency": "eur"}),
        # Partly refunded: counts what was kept.
        bought("pi_partly", purchased_at=on(day_5), **pack | {"refunded_amount": 200}),
        # Refunded by Apple, which says it was refunded but not how much: counts nothing.
        replace(
            credits_purchase(buyer.id, store_purchase_id="3000000000000009", purchased_at=on(day_5)),
            revoked_at=on(day_5, 13),
            revocation_reason="refunded",
        ),
        # No price from the store: counted apart, not as zero revenue.
        bought("pi_unpriced", purchased_at=on(day_5), amount=None, currency=None),
        # A family member's copy pays nothing; a purchase before the range is not in it.
        bought("pi_family", purchased_at=on(day_5), family_shared=True),
        bought("pi_before", purchased_at=on(START - timedelta(days=1))),
        # The sandbox is reported apart.
        bought("pi_sandbox", purchased_at=on(day_5), environment=Environment.SANDBOX),
    ]:
        assert await apply_purchase_state(db, state)
    await db.commit()

    report = await reports.summary(db, context.catalog, START, TODAY)
    assert report["one_time_revenue"] == {"eur": 499, "usd": 19999 + 998 + 299}
    assert report["one_time_purchases"] == 6 and report["one_time_unpriced"] == 1
    by_day = {day["date"]: day for day in report["one_time_daily"]}
    assert len(by_day) == 10
    assert by_day[day_2.isoformat()] == {"date": day_2.isoformat(), "purchases": 2, "revenue": {"usd": 20997}}
    assert by_day[day_5.isoformat()]["revenue"] == {"eur": 499, "usd": 299}
    assert by_day[day_5.isoformat()]["purchases"] == 4
    assert by_day[START.isoformat()] == {"date": START.isoformat(), "purchases": 0, "revenue": {}}
    # Beside MRR, never in it; and the report keeps every key it had.
    assert report["mrr"] == {"usd": 0}
    assert {"active", "mrr", "mrr_unpriced", "totals", "refunded", "daily"} <= set(report)

    sandbox = await reports.summary(db, context.catalog, START, TODAY, Environment.SANDBOX)
    assert sandbox["one_time_revenue"] == {"usd": 19999} and sandbox["one_time_purchases"] == 1


async def test_a_refund_after_the_day_lowers_that_days_revenue(context: AppContext, db: AsyncSession) -> None:
    buyer = await make_account(db, email="buyer@example.com")
    state = one_time_purchase(buyer.id, purchased_at=on(START))
    assert await apply_purchase_state(db, state)
    await db.commit()
    before = await reports.summary(db, context.catalog, START, TODAY)
    assert before["one_time_revenue"] == {"usd": 19999}
    assert await apply_purchase_state(
        db,
        replace(
            state,
            vendor_updated_at=state.vendor_updated_at + timedelta(seconds=1),
            refunded_amount=19999,
            revoked_at=utcnow(),
            revocation_reason="refunded",
        ),
    )
    await db.commit()
    after = await reports.summary(db, context.catalog, START, TODAY)
    assert after["one_time_revenue"] == {"usd": 0} and after["one_time_purchases"] == 1
    assert after["one_time_daily"][0]["revenue"] == {"usd": 0}
