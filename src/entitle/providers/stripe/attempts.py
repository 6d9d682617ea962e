"""Starting a Stripe purchase safely: one payable page per account at a time.

Two Checkout Sessions paid are two subscriptions, charged twice, and Stripe will happily create both.
So starting a purchase is serialized per account (`purchase_lock`), a repeated request gets the page
it already has (`reusable_session`), and every other open page or half-done Payment Element
subscription is made unpayable first (`close_other_attempts`).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from entitle.core.catalog import Product
from entitle.core.models.accounts import Account
from entitle.core.models.entitlements import Subscription
from entitle.core.subscriptions import Store, SubscriptionStatus
from entitle.db.locks import KeyedLocks, advisory_xact_lock
from entitle.db.types import utcnow
from entitle.errors import EntitleError
from entitle.providers.stripe.provider import StripeProvider

log = logging.getLogger(__name__)
_purchase_locks = KeyedLocks()


@asynccontextmanager
async def purchase_lock(db: AsyncSession, account_id: uuid.UUID) -> AsyncIterator[None]:
    """Serialize starting purchases for one account, so two tabs or a double click cannot both leave
    a payable page behind (two Checkout Sessions paid = two subscriptions, charged twice).

    Within a process an asyncio lock; across processes on PostgreSQL a transaction advisory lock,
    which is held until the request's transaction ends. SQLite is one process by design.
    """
    async with _purchase_locks(account_id):
        await advisory_xact_lock(db, f"entitle-stripe-purchase:{account_id}")
        yield


async def open_sessions(stripe: StripeProvider, customer_id: str) -> list[dict[str, Any]]:
    try:
        return await stripe.gateway.open_checkout_sessions(customer_id)
    except EntitleError as exc:
        # Closing older pages is a safeguard, not the purchase: a server that cannot list them must
        # not stop a person from paying.
        log.warning("could not list open Checkout Sessions of %s: %s", customer_id, exc.code)
        return []


async def close_other_attempts(
    db: AsyncSession,
    stripe: StripeProvider,
    account: Account,
    sessions: list[dict[str, Any]],
    *,
    keep_subscription: str | None = None,
) -> None:
    """Make every other way to pay for a new subscription unpayable: open Checkout Sessions expire
    and incomplete subscriptions (a Payment Element left half done) are canceled, so a page left
    open in another tab can never start a second subscription."""
    for session in sessions:
        try:
            await stripe.gateway.expire_checkout_session(str(session["id"]))
        except EntitleError as exc:  # completed or expired meanwhile: nothing left to pay there
            log.warning("could not expire Checkout Session %s: %s", session.get("id"), exc.code)
    incomplete = await db.scalars(
        select(Subscription.store_subscription_id).where(
            Subscription.account_id == account.id,
            Subscription.store == Store.STRIPE.value,
            Subscription.status == SubscriptionStatus.INCOMPLETE.value,
        )
    )
    for subscription_id in incomplete.all():
        if subscription_id == keep_subscription:
            continue
        read_at = utcnow()
        sub = await stripe.gateway.retrieve_subscription(subscription_id)
        if sub.get("status") == "incomplete":  # paid meanwhile: that one is a real subscription now
            read_at = utcnow()
            sub = await stripe.gateway.cancel_subscription(subscription_id)
        await stripe.reconciler.subscription(db, subscription_id, fresh=sub, read_at=read_at)


def reusable_session(
    sessions: list[dict[str, Any]], product: Product, success: str, cancel: str, trial_days: int | None
) -> dict[str, Any] | None:
    """An open session for the same product, trial and pages: a double click gets the page it already
    has (but not a page that still offers a trial the account has had since)."""
    for session in sessions:
        metadata = session.get("metadata") or {}
        if (
            metadata.get("entitle_product") == product.key
            and metadata.get("entitle_trial_days") == (str(trial_days) if trial_days else None)
            and session.get("success_url") == success
            and session.get("cancel_url") == cancel
            and session.get("url")
        ):
            return session
    return None
