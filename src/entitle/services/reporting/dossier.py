"""Everything support needs to see about one account, in one read (the dashboard's account view): who
it is, what it is entitled to and why (subscriptions, purchases, grants), and its balances with their
ledgers."""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from entitle.core.catalog import Catalog
from entitle.core.models.accounts import Account, Identity
from entitle.core.models.entitlements import PromotionalGrant, Subscription
from entitle.core.models.events import AccountEvent
from entitle.core.models.purchases import BalanceTransaction, Purchase
from entitle.core.purchases import purchase_expires_at
from entitle.db.types import utcnow
from entitle.models import AppStoreOwnershipChange, StripeCustomer
from entitle.services.access import balances
from entitle.services.access.entitlements import compute_body, entitlement_rules, purchase_state
from entitle.services.access.grants import is_in_force
from entitle.services.access.purchases import list_purchases
from entitle.services.identity.operators import is_operator
from entitle.services.reporting.lookups import require_account

# The history shown under each subscription: its newest transitions.
HISTORY_LIMIT = 500
# The newest rows of each currency's ledger shown (the API pages through the rest).
LEDGER_LIMIT = 50


@dataclass
class SubscriptionView:
    row: Subscription
    history: list[AccountEvent] = field(default_factory=list)
    # Where the store's own dashboard shows it (Stripe); None for stores without one per subscription.
    vendor_url: str | None = None


@dataclass
class PurchaseView:
    row: Purchase
    # When it stops granting its entitlements by itself (a pass); None for good or for a consumable.
    expires_at: datetime | None = None


@dataclass
class Ledger:
    """One currency's balance and its newest ledger rows (`more` when older ones are not shown)."""

    currency: str
    name: str
    balance: int
    transactions: list[BalanceTransaction]
    more: bool


@dataclass
class Dossier:
    account: Account
    identities: list[Identity]
    operator: bool
    answer: dict[str, Any]
    subscriptions: list[SubscriptionView]
    grants: list[tuple[PromotionalGrant, bool]]  # (grant, in force now)
    ownership_changes: list[AppStoreOwnershipChange]
    stripe_customer_id: str | None
    stripe_customer_url: str | None
    # Newest first, every store and environment (support sees sandbox purchases too).
    purchases: list[PurchaseView] = field(default_factory=list)
    # Every currency of the catalog and any other the account holds.
    ledgers: list[Ledger] = field(default_factory=list)

    @property
    def balances(self) -> dict[str, int]:
        return {ledger.currency: ledger.balance for ledger in self.ledgers}


def stripe_dashboard(live: bool) -> str:
    return "https://dashboard.stripe.com" + ("" if live else "/test")


async def ledgers(db: AsyncSession, catalog: Catalog, account_id: uuid.UUID) -> list[Ledger]:
    """Each currency's balance with its newest rows, the catalog's currencies first."""
    held = await balances.balances_of(db, account_id)
    found = []
    for currency in [*catalog.currencies, *sorted(set(held) - set(catalog.currencies))]:
        rows, after = await balances.ledger(db, account_id, currency, limit=LEDGER_LIMIT)
        named = catalog.currencies.get(currency)
        found.append(
            Ledger(
                currency=currency,
                name=named.name if named is not None else currency,
                balance=held.get(currency, 0),
                transactions=rows,
                more=after is not None,
            )
        )
    return found


async def dossier(db: AsyncSession, account_id: uuid.UUID, *, stripe_live: bool) -> Dossier:
    now = utcnow()
    account = await require_account(db, account_id)
    identities = list(
        await db.scalars(
            select(Identity).where(Identity.account_id == account_id).order_by(Identity.created_at)
        )
    )
    answer, _ = await compute_body(db, account_id, now=now)
    subscriptions = list(
        await db.scalars(
            select(Subscription)
            .where(Subscription.account_id == account_id)
            .order_by(Subscription.created_at.desc())
        )
    )
    transitions = await db.scalars(
        select(AccountEvent)
        .where(AccountEvent.account_id == account_id, AccountEvent.type.startswith("subscription."))
        .order_by(AccountEvent.created_at.desc())
        .limit(HISTORY_LIMIT)
    )
    history: dict[str, list[AccountEvent]] = defaultdict(list)
    for event in transitions:
        history[str(event.data.get("subscription_id"))].append(event)
    dashboard = stripe_dashboard(stripe_live)
    views = [
        SubscriptionView(
            row=row,
            history=history.get(row.store_subscription_id, []),
            vendor_url=(
                f"{dashboard}/subscriptions/{row.store_subscription_id}" if row.store == "stripe" else None
            ),
        )
        for row in subscriptions
    ]
    grants = list(
        await db.scalars(
            select(PromotionalGrant)
            .where(PromotionalGrant.account_id == account_id)
            .order_by(PromotionalGrant.created_at.desc())
        )
    )
    changes = list(
        await db.scalars(
            select(AppStoreOwnershipChange)
            .where(
                (AppStoreOwnershipChange.to_account_id == account_id)
                | (AppStoreOwnershipChange.from_account_id == account_id)
            )
            .order_by(AppStoreOwnershipChange.created_at.desc())
        )
    )
    customer_id = await db.scalar(
        select(StripeCustomer.customer_id).where(StripeCustomer.account_id == account_id)
    )
    catalog = entitlement_rules(db).catalog
    return Dossier(
        purchases=[
            PurchaseView(row, purchase_expires_at(purchase_state(row), catalog))
            for row in await list_purchases(db, account_id)
        ],
        ledgers=await ledgers(db, catalog, account_id),
        account=account,
        identities=identities,
        operator=await is_operator(db, account_id),
        answer=answer,
        subscriptions=views,
        grants=[(grant, is_in_force(grant, now)) for grant in grants],
        ownership_changes=changes,
        stripe_customer_id=customer_id,
        stripe_customer_url=f"{dashboard}/customers/{customer_id}" if customer_id else None,
    )
