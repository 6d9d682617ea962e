"""Support lookups: find accounts by what support staff hold (an address, an id from the app, a
Stripe customer, an App Store transaction, a one-time purchase's id), and read an account's event log."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Select, func, select, union
from sqlalchemy.ext.asyncio import AsyncSession

from entitle.core.models.accounts import Account, Identity
from entitle.core.models.entitlements import Subscription
from entitle.core.models.events import AccountEvent
from entitle.core.models.purchases import Purchase
from entitle.core.subscriptions import Store
from entitle.email_addresses import InvalidEmailAddress, canonical_email
from entitle.errors import InvalidRequest, NotFound
from entitle.providers.appstore.models import AppStoreOwnership
from entitle.providers.stripe.models import StripeCustomer
from entitle.services.identity.accounts import normalize_email

MAX_RESULTS = 50
# Stores a one-time purchase can come from (a promotional grant is no purchase).
PURCHASE_STORES = tuple(store.value for store in Store if store is not Store.PROMOTIONAL)


async def find_accounts(
    db: AsyncSession,
    *,
    email: str | None = None,
    external_id: str | None = None,
    stripe_customer_id: str | None = None,
    original_transaction_id: str | None = None,
    purchase_id: str | None = None,
) -> list[Account]:
    """Accounts matching every given criterion (at least one), oldest first, deleted ones included."""
    if not any((email, external_id, stripe_customer_id, original_transaction_id, purchase_id)):
        raise InvalidRequest(
            "Give one of email, external_id, stripe_customer_id, original_transaction_id or purchase_id.",
            code="missing_lookup",
        )
    query = lookup_query(
        email=email,
        external_id=external_id,
        stripe_customer_id=stripe_customer_id,
        original_transaction_id=original_transaction_id,
        purchase_id=purchase_id,
    )
    rows = await db.scalars(query)
    return list(rows.all())


def lookup_query(
    *,
    email: str | None = None,
    external_id: str | None = None,
    stripe_customer_id: str | None = None,
    original_transaction_id: str | None = None,
    purchase_id: str | None = None,
) -> Select[Account]:
    """The statement `find_accounts` runs (benchmarks print its plan).

    Each criterion that two tables can answer is a UNION of the two indexed lookups, not an OR of two
    `IN (subquery)`: PostgreSQL cannot turn such an OR into index probes and filters every account
    with both subqueries instead (a sequential scan, 130 ms at 1,000,000 accounts).
    """
    query = select(Account)
    if email:
        try:
            # Exactly as sign-in reads it, so a lookup finds every address sign-in finds.
            address = canonical_email(email)
        except InvalidEmailAddress:
            # Not an address anyone could sign in with, but one stored before addresses were checked
            # (a provider's, say) can still be found.
            address = normalize_email(email)
        # The primary address, or any way in that carries it (an Apple or Google identity's address).
        query = query.where(
            Account.id.in_(
                union(
                    select(Account.id).where(Account.email == address),
                    select(Identity.account_id).where(Identity.email == address),
                )
            )
        )
    if external_id:
        query = query.where(Account.external_id == external_id)
    if stripe_customer_id:
        query = query.where(
            Account.id.in_(
                union(
                    select(StripeCustomer.account_id).where(StripeCustomer.customer_id == stripe_customer_id),
                    select(Subscription.account_id).where(
                        Subscription.store == "stripe", Subscription.store_customer_id == stripe_customer_id
                    ),
                )
            )
        )
    if original_transaction_id:
        query = query.where(
            Account.id.in_(
                union(
                    select(AppStoreOwnership.account_id).where(
                        AppStoreOwnership.original_transaction_id == original_transaction_id
                    ),
                    select(Subscription.account_id).where(
                        Subscription.store == "app_store",
                        Subscription.store_subscription_id == original_transaction_id,
                    ),
                )
            )
        )
    if purchase_id:
        # One probe per store on the (store, store_purchase_id) unique index: a Stripe `pi_...` or an
        # App Store transaction id, whichever store it is from.
        query = query.where(
            Account.id.in_(
                union(
                    *(
                        select(Purchase.account_id).where(
                            Purchase.store == store, Purchase.store_purchase_id == purchase_id
                        )
                        for store in PURCHASE_STORES
                    )
                )
            )
        )
    return query.order_by(Account.created_at, Account.id).limit(MAX_RESULTS)


async def require_account(db: AsyncSession, account_id: uuid.UUID) -> Account:
    """Any account by id, deleted ones included (support looks at those too)."""
    account = await db.get(Account, account_id)
    if account is None:
        raise NotFound("No account has this id.", code="account_not_found")
    return account


async def event_log(
    db: AsyncSession, account_id: uuid.UUID, *, limit: int, offset: int, type: str | None
) -> dict[str, Any]:
    query = _account_events(account_id, type)
    total = await db.scalar(select(func.count()).select_from(query.subquery()))
    rows = await db.scalars(event_page_query(account_id, limit=limit, offset=offset, type=type))
    return {
        "events": [
            {"id": str(e.id), "type": e.type, "data": e.data, "created_at": e.created_at.isoformat()}
            for e in rows
        ],
        "total": total,
        "limit": limit,
        "offset": offset,
    }


def event_page_query(
    account_id: uuid.UUID, *, limit: int, offset: int, type: str | None
) -> Select[AccountEvent]:
    """One page of the account's events, newest first (benchmarks print its plan)."""
    return (
        _account_events(account_id, type)
        .order_by(AccountEvent.created_at.desc(), AccountEvent.id.desc())
        .limit(limit)
        .offset(offset)
    )


def _account_events(account_id: uuid.UUID, type: str | None) -> Select[AccountEvent]:
    query = select(AccountEvent).where(AccountEvent.account_id == account_id)
    if type is not None:
        if type.endswith("*"):
            query = query.where(AccountEvent.type.startswith(type[:-1], autoescape=True))
        else:
            query = query.where(AccountEvent.type == type)
    return query
