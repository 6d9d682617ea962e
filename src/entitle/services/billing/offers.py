"""App Store promotional offers: who may have one, and the signature that lets StoreKit apply it.

The catalog's `[offers.<name>]` names the offer and its rule (`OfferEligibility`); the rule is decided
here over the account's subscriptions in every store, to the entitlements the offer's product grants
(so a person who paid on the web and let it lapse is won back in the app as well):

- "subscribed": a subscription to them entitles the account now (a trial and a grace period included);
- "lapsed": none does, and one was paid for at least once: its status shows a paid period, or it had no
  trial, or its trial converted (`subscription.renewed` in the account's events);
- "new": none does, and none was ever paid for (a trial that ended unpaid still counts as new).

Apple applies its own limits on top (how often one Apple account may redeem an offer); an account the
rule excludes is refused before anything is signed, so an app cannot grant an offer the business did not
mean it to have.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from entitle.core.catalog import Catalog, Offer, OfferEligibility
from entitle.core.entitlements import subscription_entitles
from entitle.core.models.accounts import Account
from entitle.core.models.entitlements import Subscription, Trial
from entitle.core.models.events import AccountEvent
from entitle.core.subscriptions import Store, SubscriptionState, SubscriptionStatus
from entitle.core.transitions import SUBSCRIPTION_RENEWED
from entitle.errors import Forbidden, NotFound
from entitle.providers.appstore.offers import SignedOffer
from entitle.providers.appstore.provider import AppStoreProvider
from entitle.services.access.entitlements import subscription_state

# Statuses that are never a paid period: not yet paid, or a trial still running.
_NEVER_PAID = frozenset({SubscriptionStatus.INCOMPLETE, SubscriptionStatus.TRIALING})
# Statuses that say the current period was paid for, whatever came before it.
_PAID_NOW = frozenset({SubscriptionStatus.ACTIVE, SubscriptionStatus.CANCELED_AT_PERIOD_END})


@dataclass(frozen=True)
class SubscriptionHistory:
    """What the offer rules ask about one account and one set of entitlements."""

    subscribed: bool
    ever_paid: bool
    # Any App Store transaction of the account's (an originalTransactionId), for the JWS form.
    app_store_transaction_id: str | None

    def allows(self, rule: OfferEligibility) -> bool:
        if rule is OfferEligibility.ANYONE:
            return True
        if rule is OfferEligibility.SUBSCRIBED:
            return self.subscribed
        if rule is OfferEligibility.LAPSED:
            return not self.subscribed and self.ever_paid
        return not self.subscribed and not self.ever_paid


async def subscription_history(
    db: AsyncSession, account_id: uuid.UUID, entitlements: Sequence[str], catalog: Catalog, *, now: datetime
) -> SubscriptionHistory:
    """The account's subscriptions, in any store, to any of `entitlements`, summed up for the offer rules."""
    products = {p.key for e in entitlements for p in catalog.products_granting(e)}
    # Newest first, so the JWS names the App Store subscription the person touched last.
    newest_first = Subscription.updated_at.desc(), Subscription.store_subscription_id
    rows = (
        await db.scalars(
            select(Subscription).where(Subscription.account_id == account_id).order_by(*newest_first)
        )
    ).all()
    states = [subscription_state(row) for row in rows if row.product in products]
    app_store_ids = [row.store_subscription_id for row in rows if row.store == Store.APP_STORE.value]
    subscribed = any(subscription_entitles(state, now) for state in states)
    return SubscriptionHistory(
        subscribed=subscribed,
        ever_paid=await _any_paid(db, account_id, states),
        app_store_transaction_id=app_store_ids[0] if app_store_ids else None,
    )


async def _any_paid(db: AsyncSession, account_id: uuid.UUID, states: Sequence[SubscriptionState]) -> bool:
    candidates = [s for s in states if s.status not in _NEVER_PAID]
    if any(s.status in _PAID_NOW for s in candidates):
        return True
    if not candidates:
        return False
    # The rest ended or failed to renew: each was paid unless all it ever had was its trial.
    trialed = set(
        (
            await db.execute(
                select(Trial.store, Trial.store_subscription_id).where(Trial.account_id == account_id)
            )
        ).all()
    )
    untried = [s for s in candidates if (s.store.value, s.store_subscription_id) not in trialed]
    if untried:
        return True
    converted = await db.scalars(
        select(AccountEvent.data).where(
            AccountEvent.account_id == account_id, AccountEvent.type == SUBSCRIPTION_RENEWED
        )
    )
    renewed = {data.get("subscription_id") for data in converted}
    return any(s.store_subscription_id in renewed for s in candidates)


async def sign_offer(
    db: AsyncSession,
    provider: AppStoreProvider,
    catalog: Catalog,
    account: Account,
    *,
    product_id: str,
    offer_id: str,
    now: datetime,
) -> SignedOffer:
    """The signed promotional offer `offer_id` on App Store product `product_id`, if `account` may have it."""
    signer = provider.offers
    offer = _find_offer(catalog, product_id, offer_id)
    product = catalog.products[offer.product]
    history = await subscription_history(db, account.id, product.entitlements, catalog, now=now)
    if not history.allows(offer.eligible):
        raise Forbidden(_REFUSALS[offer.eligible], code="offer_not_eligible")
    return signer.sign(
        product_id=product_id,
        offer_id=offer_id,
        app_account_token=account.app_account_token,
        transaction_id=history.app_store_transaction_id,
    )


def _find_offer(catalog: Catalog, product_id: str, offer_id: str) -> Offer:
    if catalog.product_by_app_store_id(product_id) is None:
        raise NotFound(
            f"No product in the catalog has the App Store id {product_id!r}.", code="unknown_product"
        )
    offer = catalog.app_store_offer(product_id, offer_id)
    if offer is None:
        raise NotFound(
            f"The catalog has no promotional offer {offer_id!r} for {product_id!r}.", code="unknown_offer"
        )
    return offer


_REFUSALS = {
    OfferEligibility.LAPSED: "This offer is for people whose subscription has ended.",
    OfferEligibility.NEW: "This offer is for people who have not subscribed before.",
    OfferEligibility.SUBSCRIBED: "This offer is for current subscribers.",
    OfferEligibility.ANYONE: "This offer is not available.",
}
