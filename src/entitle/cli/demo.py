"""Sample data for a first look: a demo account (an operator, with a promotional grant and some of each
currency) and a month of sample customers for the dashboard."""

from __future__ import annotations

import random
import uuid
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from entitle.context import build_context
from entitle.core.catalog import Catalog
from entitle.core.models.accounts import Identity
from entitle.core.models.events import AccountEvent
from entitle.core.subscriptions import Environment, Store, SubscriptionState, SubscriptionStatus
from entitle.db.types import utcnow
from entitle.services.access import balances, grants
from entitle.services.access.subscriptions import apply_subscription_state
from entitle.services.identity import accounts, operators
from entitle.settings import Settings

DEMO_EMAIL = "demo@example.com"
DEMO_PASSWORD = "entitle-demo-password"


async def seed_demo_account(settings: Settings) -> bool:
    """Create the demo account (entitled to the catalog's first entitlement for 30 days) unless it exists."""
    context = build_context(settings)
    try:
        async with context.database.transaction() as db:
            exists = await db.scalar(
                select(Identity.id).where(
                    Identity.provider == accounts.EMAIL_PROVIDER, Identity.subject == DEMO_EMAIL
                )
            )
            if exists is not None:
                return False
            account = await accounts.register_with_password(db, email=DEMO_EMAIL, password=DEMO_PASSWORD)
            # The demo account opens the dashboard too (/admin), over a month of sample customers.
            await operators.add_operator(db, DEMO_EMAIL, added_by="entitle serve --demo")
            await seed_sample_customers(db, context.catalog)
            first_entitlement = next(iter(context.catalog.entitlements))
            await grants.create_grant(
                db,
                account_id=account.id,
                entitlement=first_entitlement,
                expires_at=utcnow() + timedelta(days=30),
                reason="demo account",
                created_by="entitle serve --demo",
            )
            # Something to spend, so /account and the balance routes show a ledger from the start.
            for currency in context.catalog.currencies:
                await balances.post(
                    db,
                    account.id,
                    currency,
                    250,
                    reason="demo account",
                    source="operator:entitle serve --demo",
                )
            return True
    finally:
        await context.aclose()


# --- a month of sample customers, so the dashboard's reports have something to show ---------------------
SAMPLE_CUSTOMERS = 60


async def seed_sample_customers(db: AsyncSession, catalog: Catalog) -> None:
    """Customers who subscribed over the last 30 days in both stores: some in a trial that converted,
    some who left, one refunded. Made through the same state changes the stores cause, with their
    events dated on the days they happened. Nothing here was paid: the Stripe ids are not real."""
    chooser = random.Random(2026)
    products = [p for p in catalog.products.values() if p.stripe is not None]
    if not products:
        return
    now = utcnow()
    for number in range(SAMPLE_CUSTOMERS):
        started = now - timedelta(days=chooser.uniform(0.5, 30))
        customer = await accounts.create_account(
            db, email=f"customer{number + 1:02d}@example.com", via="demo", created_at=started
        )
        await _dated(db, customer.id, started)
        product = chooser.choice(products)
        store = Store.STRIPE if chooser.random() < 0.6 else Store.APP_STORE
        trial = bool(product.stripe and product.stripe.trial_days) and chooser.random() < 0.5
        steps = [(started, SubscriptionStatus.TRIALING if trial else SubscriptionStatus.ACTIVE)]
        if trial and started + timedelta(days=7) < now:
            steps.append((started + timedelta(days=7), SubscriptionStatus.ACTIVE))
        fate = chooser.random()
        if fate < 0.12 and steps[-1][0] + timedelta(days=2) < now:
            steps.append((steps[-1][0] + timedelta(days=chooser.uniform(1, 2)), SubscriptionStatus.EXPIRED))
        elif fate < 0.15 and steps[-1][0] + timedelta(days=1) < now:
            steps.append((steps[-1][0] + timedelta(days=1), SubscriptionStatus.REVOKED))
        for moment, status in steps:
            state = SubscriptionState(
                store=store,
                store_subscription_id=f"sub_demo_{number:04d}"
                if store is Store.STRIPE
                else f"{2000000000 + number}",
                account_id=customer.id,
                product=product.key,
                store_product_id=product.store_product_ids.get(store.value, product.key),
                status=status,
                current_period_end=moment
                + timedelta(days=30 if status is not SubscriptionStatus.TRIALING else 7),
                will_renew=status not in (SubscriptionStatus.EXPIRED, SubscriptionStatus.REVOKED),
                # Shown where the dashboard's reports look first; the demo's database holds nothing real.
                environment=Environment.PRODUCTION,
                vendor_updated_at=moment,
                store_customer_id=f"cus_demo_{number:04d}" if store is Store.STRIPE else None,
                payment_method={"type": "card", "brand": "visa", "last4": "4242"}
                if store is Store.STRIPE
                else None,
            )
            before = utcnow()
            await apply_subscription_state(db, state, now=moment)
            await _dated(db, customer.id, moment, since=before)


async def _dated(
    db: AsyncSession, account_id: uuid.UUID, moment: datetime, since: datetime | None = None
) -> None:
    """Move the account's events written since `since` to `moment`, keeping their order."""
    query = update(AccountEvent).where(AccountEvent.account_id == account_id)
    if since is not None:
        query = query.where(AccountEvent.created_at >= since)
    await db.execute(query.values(created_at=moment))
