"""Trials that started without a card (`trial_requires_card = false`): the reminder and the way to add one.

Three days before such a trial ends Stripe sends `customer.subscription.trial_will_end`; when nothing
will pay for what follows, the Stripe provider calls `mail_trial_ending_without_card`, which mails the
person a link to `/account/payment-method`. That page, once signed in, opens the Billing Portal's
`payment_method_update` flow: Stripe makes the new card the customer's default, which is what a trial's
end charges. Coming back (`adopt_customer_card`), the card is also set on the trialing subscriptions that
had none, so the account page shows it at once. Without a card Stripe cancels at the trial's end,
uncharged (`trial_settings.end_behavior.missing_payment_method = cancel`), and access ends with it.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from entitle.core.catalog import Catalog
from entitle.core.models.accounts import Account
from entitle.core.models.entitlements import Subscription
from entitle.core.subscriptions import Store, SubscriptionStatus
from entitle.db.types import utcnow
from entitle.providers.stripe.provider import StripeProvider
from entitle.services.billing.billing_stripe import existing_customer_id
from entitle.services.delivery import mail

ADD_CARD_PATH = "/account/payment-method"
ADDED_PATH = "/account/payment-method/added"


async def mail_trial_ending_without_card(
    db: AsyncSession,
    account_id: uuid.UUID,
    subscription_id: str,
    trial_end: datetime | None,
    *,
    catalog: Catalog | None = None,
) -> None:
    """Queue the reminder in the webhook's transaction (`core.notices.TrialEndingWithoutCard`, with the
    catalog bound so the mail names the plan as the pricing page does)."""
    account = await db.get(Account, account_id)
    if account is None or account.is_deleted or not account.email:
        return  # nobody to write to (an Apple identity that shared no address): the app's event remains
    product = await db.scalar(
        select(Subscription.product).where(
            Subscription.store == Store.STRIPE.value, Subscription.store_subscription_id == subscription_id
        )
    )
    await mail.queue_mail(
        db,
        to=account.email,
        template="trial_ending_add_card",
        account_id=account.id,
        data={
            "product": _plan_name(catalog, product),
            "trial_end": f"{trial_end:%B} {trial_end.day}, {trial_end:%Y}" if trial_end else "soon",
            "subscription": subscription_id,
        },
    )


def _plan_name(catalog: Catalog | None, product_key: str | None) -> str:
    product = catalog.product(product_key) if catalog is not None and product_key else None
    return product.name if product is not None else "your plan"


async def add_card_url(db: AsyncSession, stripe: StripeProvider, account: Account) -> str:
    """Stripe's page for adding a card, returning to `ADDED_PATH` once one is added."""
    customer_id = await existing_customer_id(db, account)
    public = stripe.config.public_url.rstrip("/")
    session = await stripe.gateway.create_portal_session(
        customer_id=customer_id, return_url=f"{public}/account", add_card_then=f"{public}{ADDED_PATH}"
    )
    return str(session["url"])


async def adopt_customer_card(db: AsyncSession, stripe: StripeProvider, account: Account) -> int:
    """Put the customer's default card on the account's trialing subscriptions that have none; returns
    how many were changed. Stripe would charge the customer's default anyway: this makes the account page
    (which shows the subscription's card) and the trial-ending check agree at once."""
    customer_id = await existing_customer_id(db, account)
    trialing = await db.scalars(
        select(Subscription).where(
            Subscription.account_id == account.id,
            Subscription.store == Store.STRIPE.value,
            Subscription.status == SubscriptionStatus.TRIALING.value,
        )
    )
    # Compared in Python: a JSON null and SQL NULL both read back as None, but not both match IS NULL.
    waiting = [row.store_subscription_id for row in trialing.all() if row.payment_method is None]
    if not waiting:
        return 0
    customer = await stripe.gateway.retrieve_customer(customer_id)
    card = (customer.get("invoice_settings") or {}).get("default_payment_method")
    card_id = card.get("id") if isinstance(card, dict) else card
    if not card_id:
        return 0
    for subscription_id in waiting:
        read_at = utcnow()
        sub = await stripe.gateway.set_default_payment_method(subscription_id, str(card_id))
        await stripe.reconciler.subscription(db, subscription_id, fresh=sub, read_at=read_at)
    return len(waiting)
