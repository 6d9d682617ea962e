"""Web billing through Stripe: the use-cases behind /v1/billing/stripe/*.

Every function acts on the signed-in account it is given and nothing else: the Stripe customer is
looked up (or created) from that account, never taken from the client, and every subscription it
touches is found through that account's own rows. After a change at Stripe the answer Stripe gave
is stored at once, so the person sees the change without waiting for the webhook (which then
converges on the same truth).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from entitle.core.catalog import Product, ProductType
from entitle.core.entitlements import isoformat, management_url
from entitle.core.models.accounts import Account
from entitle.core.models.entitlements import Subscription
from entitle.core.models.purchases import Purchase
from entitle.core.subscriptions import Store, SubscriptionStatus
from entitle.db.types import utcnow
from entitle.errors import Conflict, EntitleError, InvalidRequest, NotFound, ProviderUnavailable
from entitle.providers.stripe.attempts import (
    close_other_attempts,
    open_sessions,
    purchase_lock,
    reusable_session,
)
from entitle.providers.stripe.client import SUBSCRIPTION_DETAIL
from entitle.providers.stripe.errors import StripeObjectMissing
from entitle.providers.stripe.mapping import (
    catalog_item,
    object_id,
    payment_method_summary,
    period_of,
)
from entitle.providers.stripe.mapping import product_key as product_of_price
from entitle.providers.stripe.models import StripeCustomer
from entitle.providers.stripe.promotions import Promotion
from entitle.providers.stripe.provider import StripeConfig, StripeProvider
from entitle.providers.stripe.purchases import PRODUCT_KEY, purchase_metadata
from entitle.providers.stripe.reconcile import live_subscriptions
from entitle.services.access.entitlements import read_entitlements
from entitle.services.access.purchases import find_purchase
from entitle.services.access.trials import trial_days_for
from entitle.services.billing import tax
from entitle.services.billing.promotions import (
    PROMOTION_CODE_ID_KEY,
    checked_promotion,
    checkout_discounts,
    discounted_amount,
    promotion_metadata,
)

log = logging.getLogger(__name__)

STORE_NAMES = {"stripe": "Stripe (on the web)", "app_store": "the App Store"}
PAID_STORES = frozenset({Store.STRIPE.value, Store.APP_STORE.value})
# Subscriptions Stripe will never bill again.
ENDED_STATUSES = (SubscriptionStatus.EXPIRED.value, SubscriptionStatus.REVOKED.value)


# --- customers ----------------------------------------------------------------------------------------
async def customer_id_for(db: AsyncSession, stripe: StripeProvider, account: Account) -> str:
    """The account's Stripe customer, created on first need; concurrent first calls get the same one."""
    row = await db.get(StripeCustomer, account.id)
    if row is not None and row.deleted_at is None:
        return row.customer_id
    # The same key for racing requests makes Stripe return one customer to all of them; a replaced
    # (deleted) customer gives a new key, hence a new customer.
    key = f"entitle-customer-{account.id}-{row.customer_id if row else 'first'}"
    customer = await stripe.gateway.create_customer(
        account_id=str(account.id), email=account.email, idempotency_key=key
    )
    values = {"customer_id": customer["id"], "livemode": bool(customer.get("livemode")), "deleted_at": None}
    insert = postgresql.insert if db.get_bind().dialect.name == "postgresql" else sqlite.insert
    await db.execute(
        insert(StripeCustomer)
        .values(account_id=account.id, created_at=utcnow(), **values)
        .on_conflict_do_update(index_elements=["account_id"], set_=values)
    )
    return str(customer["id"])


async def existing_customer_id(db: AsyncSession, account: Account) -> str:
    row = await db.get(StripeCustomer, account.id)
    if row is None or row.deleted_at is not None:
        raise NotFound("This account has never paid through Stripe.", code="no_stripe_customer")
    return row.customer_id


# --- starting a subscription ----------------------------------------------------------------------------
async def refuse_if_subscribed(db: AsyncSession, account: Account, product: Product) -> None:
    """One person, one paid subscription per entitlement, whichever store it came from."""
    answer = await read_entitlements(db, account.id)
    for key in product.entitlements:
        current = answer["entitlements"].get(key) or {}
        if current.get("active") and current.get("store") in PAID_STORES:
            store = STORE_NAMES.get(current["store"], current["store"])
            where = current.get("management_url")
            raise Conflict(
                f"This account already has '{key}' through a subscription in {store}"
                + (f"; manage it at {where}." if where else "."),
                code="already_subscribed",
                details={
                    "entitlement": key,
                    "store": current["store"],
                    "product": current.get("product"),
                    "management_url": where,
                },
            )


async def refuse_if_stalled(
    db: AsyncSession, stripe: StripeProvider, account: Account, product: Product
) -> None:
    """A Stripe subscription that grants nothing right now but is not over (past due beyond the grace
    days while Stripe still retries, or paused) would be billed again once the card works or it
    resumes: a second subscription then means two charges. The person fixes that one instead."""
    stalled = await db.scalars(
        select(Subscription).where(
            Subscription.account_id == account.id,
            Subscription.store == Store.STRIPE.value,
            Subscription.status.in_([SubscriptionStatus.PAST_DUE.value, SubscriptionStatus.PAUSED.value]),
        )
    )
    for row in stalled.all():
        shared = set(stripe.catalog.entitlements_of(row.product)) & set(product.entitlements)
        if shared:
            where = management_url(Store.STRIPE, stripe.config.public_url)
            raise Conflict(
                f"This account already has a {row.status.replace('_', ' ')} subscription in Stripe (on the "
                f"web) for '{sorted(shared)[0]}'; update the payment method or resume it at {where}.",
                code="already_subscribed",
                details={
                    "entitlement": sorted(shared)[0],
                    "store": Store.STRIPE.value,
                    "product": row.product,
                    "status": row.status,
                    "management_url": where,
                },
            )


def catalog_product(stripe: StripeProvider, product_key: str) -> Product:
    product = stripe.catalog.product(product_key)
    if product is None:
        raise InvalidRequest(f"There is no product '{product_key}' in the catalog.", code="unknown_product")
    if product.stripe is None:
        raise InvalidRequest(f"'{product_key}' is not sold on the web.", code="not_sold_on_web")
    return product


async def price_for(stripe: StripeProvider, product_key: str) -> tuple[Product, dict[str, Any]]:
    """The catalog product and the active Stripe price holding its lookup key."""
    product = catalog_product(stripe, product_key)
    assert product.stripe is not None
    prices = await stripe.gateway.prices_by_lookup_keys([product.stripe.lookup_key])
    live = [p for p in prices if p.get("active") and p.get("lookup_key") == product.stripe.lookup_key]
    if not live:
        raise ProviderUnavailable(
            f"Stripe has no price with lookup key '{product.stripe.lookup_key}'; run `entitle catalog push`.",
            code="stripe_price_missing",
        )
    return product, live[0]


async def price_id_for(stripe: StripeProvider, product_key: str) -> tuple[Product, str]:
    product, price = await price_for(stripe, product_key)
    return product, str(price["id"])


def checked_quantity(product: Product, quantity: int | None) -> int:
    """How many to buy: 1 unless asked, at most the product's `max_quantity` (1 for a subscription)."""
    count = 1 if quantity is None else quantity
    if not 1 <= count <= product.max_quantity:
        raise InvalidRequest(
            f"'{product.key}' can be bought 1"
            + (f" to {product.max_quantity}" if product.max_quantity > 1 else "")
            + " at a time.",
            code="invalid_quantity",
            details={"product": product.key, "max_quantity": product.max_quantity},
        )
    return count


async def refuse_if_owned(db: AsyncSession, account: Account, product: Product) -> None:
    """A non-consumable is bought once: a second purchase would charge for what the account has for good.
    (A live subscription to the same entitlement does not stop it: a lifetime unlock is how people leave
    a subscription, and /pricing tells them to cancel it.)"""
    if product.type is not ProductType.NON_CONSUMABLE:
        return
    owned = await db.scalar(
        select(Purchase.store_purchase_id)
        .where(
            Purchase.account_id == account.id,
            Purchase.product == product.key,
            Purchase.revoked_at.is_(None),
        )
        .limit(1)
    )
    if owned is not None:
        raise Conflict(
            f"This account already owns '{product.key}'.",
            code="already_purchased",
            details={"product": product.key, "purchase_id": owned},
        )


async def _start_one_time_checkout(
    db: AsyncSession,
    stripe: StripeProvider,
    account: Account,
    product: Product,
    quantity: int,
    success: str,
    cancel: str,
    promotion_code: str | None = None,
) -> dict[str, Any]:
    product, price = await price_for(stripe, product.key)
    async with purchase_lock(db, account.id):
        await refuse_if_owned(db, account, product)
        customer_id = await customer_id_for(db, stripe, account)
        promotion = await checked_promotion(
            db, stripe, account.id, promotion_code, price=price, quantity=quantity, customer_id=customer_id
        )
        metadata = purchase_metadata(str(account.id), product.key, quantity) | promotion_metadata(promotion)
        same_product = [
            s
            for s in await open_sessions(stripe, customer_id)
            if (s.get("metadata") or {}).get(PRODUCT_KEY) == product.key
        ]
        for session in same_product:
            # A double click gets the page it already has (with the same code, or none).
            if (
                (session.get("metadata") or {}) == metadata
                and session.get("success_url") == success
                and session.get("cancel_url") == cancel
                and session.get("url")
            ):
                return {"id": session["id"], "url": session["url"]}
        # Another page for the same product (another quantity, another tab) could be paid too: close it.
        for session in same_product:
            try:
                await stripe.gateway.expire_checkout_session(str(session["id"]))
            except EntitleError as exc:  # paid or expired meanwhile: nothing left to pay there
                log.warning("could not expire Checkout Session %s: %s", session.get("id"), exc.code)
        session = await stripe.gateway.create_checkout_session(
            {
                "mode": "payment",
                "customer": customer_id,
                "client_reference_id": str(account.id),
                "line_items": [{"price": str(price["id"]), "quantity": quantity}],
                "payment_intent_data": {"metadata": metadata},
                # A paid invoice is the receipt, and lists the purchase beside subscription invoices.
                "invoice_creation": {"enabled": True, "invoice_data": {"metadata": metadata}},
                "metadata": metadata,
                **checkout_discounts(promotion),  # type: ignore[typeddict-item]
                "success_url": success,
                "cancel_url": cancel,
                **tax.checkout_params(stripe),
            }
        )
    return {"id": session["id"], "url": session["url"]}


async def start_payment(
    db: AsyncSession,
    stripe: StripeProvider,
    account: Account,
    product_key: str,
    quantity: int | None,
    promotion_code: str | None = None,
    tax_details: tax.TaxDetails | None = None,
) -> dict[str, Any]:
    """A PaymentIntent for a one-time product, confirmed in the app by the Payment Element."""
    product = catalog_product(stripe, product_key)
    if not product.is_one_time:
        raise InvalidRequest(
            f"'{product_key}' is a subscription; start it with /v1/billing/stripe/subscription.",
            code="not_one_time",
        )
    count = checked_quantity(product, quantity)
    product, price = await price_for(stripe, product_key)
    async with purchase_lock(db, account.id):
        await refuse_if_owned(db, account, product)
        customer_id = await customer_id_for(db, stripe, account)
        promotion = await checked_promotion(
            db, stripe, account.id, promotion_code, price=price, quantity=count, customer_id=customer_id
        )
        metadata = purchase_metadata(str(account.id), product.key, count) | promotion_metadata(promotion)
        # A PaymentIntent has no discounts: the code's share comes off the amount here.
        amount = discounted_amount(promotion, int(price["unit_amount"]) * count, str(price["currency"]))
        # With Stripe Tax, the amount is the calculation's total (tax on what is paid after the code's
        # share) and the PaymentIntent names it.
        calculation = await tax.payment_calculation(
            stripe,
            customer_id,
            tax_details,
            amount=amount,
            currency=str(price["currency"]),
            reference=product.key,
            quantity=count,
        )
        taxed: dict[str, Any] = {}
        if calculation is not None:
            amount = int(calculation["amount_total"])
            taxed = {"hooks": {"inputs": {"tax": {"calculation": calculation["id"]}}}}
        # A double click (or a retried request) confirms the same payment, not a second one.
        for intent in await _waiting_intents(stripe, customer_id):
            if intent.get("metadata") == metadata and intent.get("amount") == amount:
                return _payment_answer(intent, calculation)
        intent = await stripe.gateway.create_payment_intent(
            {
                "amount": amount,
                "currency": str(price["currency"]),
                "customer": customer_id,
                "metadata": metadata,
                "description": f"{count} × {product.name}" if count > 1 else product.name,
                "automatic_payment_methods": {"enabled": True},
                **taxed,  # type: ignore[typeddict-item]
            },
            idempotency_key=f"entitle-payment-{account.id}-{uuid.uuid4()}",
        )
    return _payment_answer(intent, calculation)


def _payment_answer(intent: dict[str, Any], calculation: dict[str, Any] | None) -> dict[str, Any]:
    answer = {"payment_intent_id": intent["id"], "client_secret": intent.get("client_secret")}
    if calculation is not None:
        # What the Payment Element charges, tax included, so the page can show it before paying.
        answer["amount"] = intent.get("amount")
        answer["tax"] = calculation.get("tax_amount_exclusive")
        answer["currency"] = intent.get("currency")
    return answer


# PaymentIntent statuses in which nobody has paid yet and the Payment Element can still confirm it.
_WAITING = ("requires_payment_method", "requires_confirmation", "requires_action")
# How far back an unpaid PaymentIntent is worth reusing.
_REUSE_SECONDS = 3600


async def _waiting_intents(stripe: StripeProvider, customer_id: str) -> list[dict[str, Any]]:
    since = int(utcnow().timestamp()) - _REUSE_SECONDS
    try:
        intents = await stripe.gateway.list_payment_intents(customer=customer_id, created_since=since)
    except EntitleError as exc:
        # Reuse spares a second PaymentIntent; a server that cannot list them must not stop a purchase.
        log.warning("could not list the PaymentIntents of %s: %s", customer_id, exc.code)
        return []
    return [i for i in intents if i.get("status") in _WAITING]


async def own_checkout_session(
    db: AsyncSession, stripe: StripeProvider, account: Account, session_id: str
) -> dict[str, Any]:
    """The Checkout Session, read from Stripe, if this account started it; 404 for anyone else's (the
    same answer as for an id that never existed)."""
    try:
        session = await stripe.gateway.retrieve_checkout_session(session_id)
    except StripeObjectMissing:
        session = None
    row = await db.get(StripeCustomer, account.id)
    metadata = (session or {}).get("metadata") or {}
    mine = session is not None and (
        (row is not None and object_id(session.get("customer")) == row.customer_id)
        or session.get("client_reference_id") == str(account.id)
        or metadata.get("account_id") == str(account.id)
    )
    if session is None or not mine:
        raise NotFound("This account has no such Checkout Session.", code="checkout_session_not_found")
    return session


async def checkout_status(
    db: AsyncSession, stripe: StripeProvider, account: Account, session_id: str
) -> dict[str, Any]:
    """A Checkout Session of this account's and whether what it sold is in the account's answer yet."""
    session = await own_checkout_session(db, stripe, account, session_id)
    metadata = session.get("metadata") or {}
    fulfilled = False
    if intent_id := object_id(session.get("payment_intent")):
        fulfilled = await find_purchase(db, Store.STRIPE, intent_id) is not None
    elif subscription_id := object_id(session.get("subscription")):
        fulfilled = (
            await db.scalar(
                select(Subscription.id).where(
                    Subscription.store == Store.STRIPE.value,
                    Subscription.store_subscription_id == subscription_id,
                    Subscription.status != SubscriptionStatus.INCOMPLETE.value,
                )
            )
            is not None
        )
    answer = {
        "id": session["id"],
        "status": session.get("status"),
        "payment_status": session.get("payment_status"),
        "product": metadata.get(PRODUCT_KEY),
        "fulfilled": fulfilled,
    }
    if stripe.config.automatic_tax:
        # As Stripe reports it: known once the buyer's address is (0 before).
        answer["amount_total"] = session.get("amount_total")
        answer["amount_tax"] = (session.get("total_details") or {}).get("amount_tax")
    return answer


def redirect_url(config: StripeConfig, given: str | None, default_path: str) -> str:
    """Where Stripe sends the person back: `given` only on an origin of ours, else our default.

    Ours are the web app's origins (ENTITLE_WEB_ORIGINS) and ENTITLE_PUBLIC_URL's; anything else would
    let a client turn a Stripe page into a redirect to a site of its choosing.
    """
    origins = [*config.web_origins, config.public_url]
    if given is None:
        return origins[0].rstrip("/") + default_path
    got = urlsplit(given)
    if not any((got.scheme, got.netloc) == _origin(allowed) for allowed in origins):
        raise InvalidRequest("Return URLs must be on this app's own origin.", code="invalid_redirect_url")
    return given


@dataclass(frozen=True)
class ReturnPaths:
    success: str
    cancel: str
    portal_return: str


# Where Stripe sends people back when the client names no URL: the web app's own pages when there is one
# (ENTITLE_WEB_ORIGINS), else entitle's hosted pages.
WEB_APP_PATHS = ReturnPaths("/billing/success?session_id={CHECKOUT_SESSION_ID}", "/billing/canceled", "/")
HOSTED_PATHS = ReturnPaths(
    "/checkout/success?session_id={CHECKOUT_SESSION_ID}", "/pricing?notice=checkout_canceled", "/account"
)


def _default_paths(config: StripeConfig) -> ReturnPaths:
    return WEB_APP_PATHS if config.web_origins else HOSTED_PATHS


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc


async def start_checkout(
    db: AsyncSession,
    stripe: StripeProvider,
    account: Account,
    product_key: str,
    *,
    success_url: str | None,
    cancel_url: str | None,
    quantity: int | None = None,
    promotion_code: str | None = None,
) -> dict[str, Any]:
    """Hosted Checkout: subscription mode for a subscription, payment mode for a one-time product; with
    `promotion_code` its discount is applied, else Stripe's page offers a field to type one."""
    success = redirect_url(stripe.config, success_url, _default_paths(stripe.config).success)
    cancel = redirect_url(stripe.config, cancel_url, _default_paths(stripe.config).cancel)
    product = catalog_product(stripe, product_key)
    count = checked_quantity(product, quantity)
    if product.is_one_time:
        return await _start_one_time_checkout(
            db, stripe, account, product, count, success, cancel, promotion_code
        )
    product, price = await price_for(stripe, product_key)
    price_id = str(price["id"])
    async with purchase_lock(db, account.id):
        await refuse_if_subscribed(db, account, product)
        await refuse_if_stalled(db, stripe, account, product)
        customer_id = await customer_id_for(db, stripe, account)
        promotion = await checked_promotion(
            db, stripe, account.id, promotion_code, price=price, customer_id=customer_id
        )
        trial_days = await trial_days_for(db, account.id, product)
        sessions = await open_sessions(stripe, customer_id)
        same_code = [s for s in sessions if _session_promotion(s) == (promotion.id if promotion else None)]
        if (reused := reusable_session(same_code, product, success, cancel, trial_days)) is not None:
            return {"id": reused["id"], "url": reused["url"]}
        await close_other_attempts(db, stripe, account, sessions)
        return await _create_checkout(
            stripe, account, product, price_id, customer_id, success, cancel, trial_days, promotion
        )


def _session_promotion(session: dict[str, Any]) -> str | None:
    return (session.get("metadata") or {}).get(PROMOTION_CODE_ID_KEY)


async def _create_checkout(
    stripe: StripeProvider,
    account: Account,
    product: Product,
    price_id: str,
    customer_id: str,
    success: str,
    cancel: str,
    trial_days: int | None,
    promotion: Promotion | None = None,
) -> dict[str, Any]:
    metadata = {"account_id": str(account.id), "entitle_product": product.key}
    session = await stripe.gateway.create_checkout_session(
        {
            "mode": "subscription",
            "customer": customer_id,
            "client_reference_id": str(account.id),
            "line_items": [{"price": price_id, "quantity": 1}],
            "subscription_data": {
                "metadata": metadata,
                **({"trial_period_days": trial_days} if trial_days else {}),
                **(cardless_trial_settings(product) if trial_days else {}),
            },
            **(cardless_trial_collection(product) if trial_days else {}),  # type: ignore[typeddict-item]
            # The trial the page offers, so a later request reuses it only while that is still right.
            "metadata": {**metadata, **(trial_session_metadata(trial_days)), **promotion_metadata(promotion)},
            **checkout_discounts(promotion),
            "success_url": success,
            "cancel_url": cancel,
            **tax.checkout_params(stripe),
        }
    )
    return {"id": session["id"], "url": session["url"]}


def cardless_trial_collection(product: Product) -> dict[str, Any]:
    """Checkout asks for no payment method when the catalog's trial does not need one (Stripe's default,
    `always`, asks for a card even when nothing is due)."""
    if product.stripe is None or product.stripe.trial_requires_card:
        return {}
    return {"payment_method_collection": "if_required"}


def cardless_trial_settings(product: Product) -> dict[str, Any]:
    """A trial that may start without a card ends, uncharged, when none was added: Stripe's default
    (`create_invoice`) would bill nobody's card and leave the subscription past due."""
    if product.stripe is None or product.stripe.trial_requires_card:
        return {}
    return {"trial_settings": {"end_behavior": {"missing_payment_method": "cancel"}}}


async def start_subscription(
    db: AsyncSession,
    stripe: StripeProvider,
    account: Account,
    product_key: str,
    promotion_code: str | None = None,
    tax_details: tax.TaxDetails | None = None,
) -> dict[str, Any]:
    """A subscription waiting for its first payment through the Payment Element, or, when the account
    may have the product's trial, one in its trial waiting for a card (a SetupIntent's secret)."""
    product, price = await price_for(stripe, product_key)
    price_id = str(price["id"])
    async with purchase_lock(db, account.id):
        # A double click on "Start free trial": the trial already entitles, so it is not refused as a
        # second subscription but answered with the same SetupIntent while no card was added.
        read_at = utcnow()
        if (trial := await _trial_waiting_for_card(db, stripe, account.id, price_id)) is not None:
            await stripe.reconciler.subscription(db, trial["id"], fresh=trial, read_at=read_at)
            return _subscription_answer(stripe, product, trial)
        await refuse_if_subscribed(db, account, product)
        await refuse_if_stalled(db, stripe, account, product)
        customer_id = await customer_id_for(db, stripe, account)
        promotion = await checked_promotion(
            db, stripe, account.id, promotion_code, price=price, customer_id=customer_id
        )
        read_at = utcnow()
        sub = await _incomplete_subscription(db, stripe, account.id, price_id)
        if sub is not None and _subscription_promotion(sub) != (promotion.id if promotion else None):
            sub = None  # waiting for payment at another price (another code, or none): replaced below
        sessions = await open_sessions(stripe, customer_id)
        keep = str(sub["id"]) if sub else None
        await close_other_attempts(db, stripe, account, sessions, keep_subscription=keep)
        if sub is None:
            trial_days = await trial_days_for(db, account.id, product)
            taxed = await tax.subscription_params(stripe, customer_id, tax_details)
            read_at = utcnow()
            sub = await _create_incomplete(
                db, stripe, account, product, price_id, customer_id, trial_days, promotion, taxed
            )
        await stripe.reconciler.subscription(db, sub["id"], fresh=sub, read_at=read_at)
    return _subscription_answer(stripe, product, sub)


def _subscription_answer(stripe: StripeProvider, product: Product, sub: dict[str, Any]) -> dict[str, Any]:
    answer: dict[str, Any] = {"subscription_id": sub["id"], "client_secret": client_secret_of(sub)}
    if sub.get("status") == "trialing" and product.stripe and not product.stripe.trial_requires_card:
        # The trial runs without a card: the app may skip the card form (the SetupIntent stays usable).
        answer["card_required"] = False
    if stripe.config.automatic_tax:
        # What the first invoice comes to with Stripe's tax, so the page can show it before paying.
        answer["invoice"] = tax.tax_summary(sub.get("latest_invoice"))
    return answer


def client_secret_of(sub: dict[str, Any]) -> str | None:
    """What the Payment Element confirms: in a trial the SetupIntent that saves the card for the first
    charge (Stripe's `pending_setup_intent`), else the first invoice's payment."""
    setup = sub.get("pending_setup_intent")
    if sub.get("status") == "trialing" and isinstance(setup, dict):
        return setup.get("client_secret")
    return ((sub.get("latest_invoice") or {}).get("confirmation_secret") or {}).get("client_secret")


def trial_session_metadata(trial_days: int | None) -> dict[str, str]:
    return {"entitle_trial_days": str(trial_days)} if trial_days else {}


async def _create_incomplete(
    db: AsyncSession,
    stripe: StripeProvider,
    account: Account,
    product: Product,
    price_id: str,
    customer_id: str,
    trial_days: int | None,
    promotion: Promotion | None = None,
    taxed: dict[str, Any] | None = None,
) -> dict[str, Any]:
    # A retried request (flaky network, a second process) gets the same subscription. The key moves
    # on once an attempt has ended (paid, expired, canceled): reusing it then would replay Stripe's
    # first answer, a stale incomplete subscription, instead of making a new one.
    settled = await db.scalar(
        select(func.count())
        .select_from(Subscription)
        .where(
            Subscription.account_id == account.id,
            Subscription.store == Store.STRIPE.value,
            Subscription.status != SubscriptionStatus.INCOMPLETE.value,
        )
    )
    trial: dict[str, Any] = (
        {
            "trial_period_days": trial_days,
            # A trial started here has no card yet; if none is added it ends, uncharged, instead of
            # billing nobody's card and going past due.
            "trial_settings": {"end_behavior": {"missing_payment_method": "cancel"}},
        }
        if trial_days
        else {}
    )
    return await stripe.gateway.create_subscription(
        {
            "customer": customer_id,
            "items": [{"price": price_id}],
            "payment_behavior": "default_incomplete",
            "payment_settings": {"save_default_payment_method": "on_subscription"},
            "metadata": {
                "account_id": str(account.id),
                "entitle_product": product.key,
                **promotion_metadata(promotion),
            },
            **trial,  # type: ignore[typeddict-item]
            **(taxed or {}),
            **({"discounts": [{"promotion_code": promotion.id}]} if promotion else {}),
            "expand": [*SUBSCRIPTION_EXPAND, "pending_setup_intent"],
        },
        idempotency_key=(
            f"entitle-subscription-{account.id}-{customer_id}-{price_id}-{settled}"
            + (f"-trial{trial_days}" if trial_days else "")
            + (f"-{promotion.id}" if promotion else "")
            + ("-tax" if taxed else "")
        ),
    )


# What the Payment Element path reads back: the first payment's secret and the card.
SUBSCRIPTION_EXPAND = ["latest_invoice.confirmation_secret", *SUBSCRIPTION_DETAIL]


async def _trial_waiting_for_card(
    db: AsyncSession, stripe: StripeProvider, account_id: uuid.UUID, price_id: str
) -> dict[str, Any] | None:
    """The account's trial on this price that started here and still waits for its card, if any."""
    row = await _newest_on_price(db, account_id, price_id, SubscriptionStatus.TRIALING)
    # A stored card means the person finished; JSON null and SQL NULL both read back as None here.
    if row is None or row.payment_method is not None:
        return None
    sub = await stripe.gateway.retrieve_subscription(
        row.store_subscription_id, expand=[*SUBSCRIPTION_EXPAND, "pending_setup_intent"]
    )
    setup = sub.get("pending_setup_intent")
    waiting = isinstance(setup, dict) and setup.get("status") in SETUP_WAITING
    return sub if sub.get("status") == "trialing" and waiting else None


def _subscription_promotion(sub: dict[str, Any]) -> str | None:
    return (sub.get("metadata") or {}).get(PROMOTION_CODE_ID_KEY)


# SetupIntent statuses in which the person has not finished adding a card.
SETUP_WAITING = ("requires_payment_method", "requires_confirmation", "requires_action")


async def _incomplete_subscription(
    db: AsyncSession, stripe: StripeProvider, account_id: uuid.UUID, price_id: str
) -> dict[str, Any] | None:
    row = await _newest_on_price(db, account_id, price_id, SubscriptionStatus.INCOMPLETE)
    if row is None:
        return None
    sub = await stripe.gateway.retrieve_subscription(row.store_subscription_id, expand=SUBSCRIPTION_EXPAND)
    return sub if sub.get("status") == "incomplete" else None


async def _newest_on_price(
    db: AsyncSession, account_id: uuid.UUID, price_id: str, status: SubscriptionStatus
) -> Subscription | None:
    """The account's most recent Stripe subscription on this price in this status, as last stored."""
    return await db.scalar(
        select(Subscription)
        .where(
            Subscription.account_id == account_id,
            Subscription.store == Store.STRIPE.value,
            Subscription.status == status.value,
            Subscription.store_product_id == price_id,
        )
        .order_by(Subscription.created_at.desc())
        .limit(1)
    )


# --- self-service -----------------------------------------------------------------------------------------
async def portal(
    db: AsyncSession, stripe: StripeProvider, account: Account, return_url: str | None
) -> dict[str, str]:
    customer_id = await existing_customer_id(db, account)
    back = redirect_url(stripe.config, return_url, _default_paths(stripe.config).portal_return)
    session = await stripe.gateway.create_portal_session(customer_id=customer_id, return_url=back)
    return {"url": session["url"]}


async def _own_subscription(
    db: AsyncSession, stripe: StripeProvider, account: Account, subscription_id: str | None
) -> dict[str, Any]:
    """The Stripe subscription the person named, read fresh from Stripe.

    Looked up among this account's own rows only, so an id of someone else's subscription finds nothing
    (404, the same answer as an id that never existed). The id may be left out only when there is no doubt:
    with two subscriptions (a plan and an add-on, say) guessing would act on the wrong one.
    """
    live = await live_subscriptions(db, account.id)
    if subscription_id is None:
        if len(live) > 1:
            candidates = [{"id": row.store_subscription_id, "product": row.product} for row in live]
            named = ", ".join(f"{c['id']} ({c['product'] or 'unknown product'})" for c in candidates)
            raise InvalidRequest(
                f"This account has {len(live)} subscriptions in Stripe; name one as subscription_id: "
                f"{named}.",
                code="subscription_required",
                details={"subscriptions": candidates},
            )
        if not live:
            raise NotFound(
                "This account has no Stripe subscription to change.", code="no_stripe_subscription"
            )
        subscription_id = live[0].store_subscription_id
    elif subscription_id not in {row.store_subscription_id for row in live}:
        raise NotFound(
            f"This account has no live Stripe subscription '{subscription_id}'.",
            code="no_stripe_subscription",
        )
    return await stripe.gateway.retrieve_subscription(subscription_id)


def _item_to_change(stripe: StripeProvider, sub: dict[str, Any], product: Product, price_id: str) -> str:
    """The plan's item (the one whose price is a catalog product), not whatever item comes first.

    A change stays within products that grant the same entitlements (monthly to yearly): moving to another
    set would take away what the person pays for and grant something they would then pay for twice or
    never chose, so that is a new purchase, not a change.
    """
    plan_item = catalog_item(sub, stripe.catalog)
    current = product_of_price(plan_item["price"], stripe.catalog) if plan_item is not None else None
    if set(stripe.catalog.entitlements_of(current)) != set(product.entitlements):
        raise Conflict(
            f"'{product.key}' grants something else than this subscription's plan"
            f" ({current or 'not in the catalog'}); buy it as a subscription of its own.",
            code="not_a_plan_change",
            details={"subscription_id": sub["id"], "product": current, "requested": product.key},
        )
    item = plan_item or sub["items"]["data"][0]
    price = item.get("price")
    if (price.get("id") if isinstance(price, dict) else price) == price_id:
        raise Conflict("The subscription is already on this plan.", code="same_plan")
    return str(item["id"])


async def preview_change(
    db: AsyncSession,
    stripe: StripeProvider,
    account: Account,
    product_key: str,
    subscription_id: str | None = None,
) -> dict[str, Any]:
    """What changing plan now would charge (or credit), prorated to the second."""
    product, price_id = await price_id_for(stripe, product_key)
    sub = await _own_subscription(db, stripe, account, subscription_id)
    item_id = _item_to_change(stripe, sub, product, price_id)
    proration_date = int(utcnow().timestamp())
    preview = await stripe.gateway.preview_price_change(
        customer_id=str(object_id(sub.get("customer"))),
        subscription_id=sub["id"],
        item_id=item_id,
        price_id=price_id,
        proration_date=proration_date,
    )
    return {
        "subscription_id": sub["id"],
        "product": product_key,
        "amount_due": preview.get("amount_due"),
        "total": preview.get("total"),
        "currency": preview.get("currency"),
        "proration_date": proration_date,
        "lines": [
            {"description": line.get("description"), "amount": line.get("amount")}
            for line in (preview.get("lines") or {}).get("data", [])
        ],
    }


async def change_plan(
    db: AsyncSession,
    stripe: StripeProvider,
    account: Account,
    product_key: str,
    proration_date: int | None,
    subscription_id: str | None = None,
) -> dict[str, Any]:
    product, price_id = await price_id_for(stripe, product_key)
    sub = await _own_subscription(db, stripe, account, subscription_id)
    item_id = _item_to_change(stripe, sub, product, price_id)
    read_at = utcnow()
    updated = await stripe.gateway.change_price(
        sub["id"],
        item_id=item_id,
        price_id=price_id,
        proration_date=proration_date or int(read_at.timestamp()),
    )
    return await _store(db, stripe, updated, read_at)


async def set_cancel_at_period_end(
    db: AsyncSession,
    stripe: StripeProvider,
    account: Account,
    *,
    cancel: bool,
    subscription_id: str | None = None,
) -> dict[str, Any]:
    sub = await _own_subscription(db, stripe, account, subscription_id)
    read_at = utcnow()
    updated = await stripe.gateway.set_cancel_at_period_end(sub["id"], cancel)
    return await _store(db, stripe, updated, read_at)


async def _store(
    db: AsyncSession, stripe: StripeProvider, sub: dict[str, Any], read_at: datetime
) -> dict[str, Any]:
    """Store Stripe's answer under the moment the request *started* (see `Reconciler.subscription`):
    these calls run outside the per-customer lock the webhooks hold, and a webhook's read that
    started after ours may already be stored; taking the answer's arrival time would let ours win."""
    await stripe.reconciler.subscription(db, sub["id"], fresh=sub, read_at=read_at)
    row = await db.scalar(
        select(Subscription).where(
            Subscription.store == Store.STRIPE.value, Subscription.store_subscription_id == sub["id"]
        )
    )
    _, period_end = period_of(sub)
    return {
        "subscription_id": sub["id"],
        "status": row.status if row else None,
        "product": row.product if row else None,
        "current_period_end": isoformat(period_end),
        "will_renew": row.will_renew if row else None,
        "payment_method": payment_method_summary(sub),
    }


# --- account deletion ---------------------------------------------------------------------------------
async def cancel_for_deleted_account(db: AsyncSession, account: Account, *, stripe: StripeProvider) -> None:
    """Stop billing an account that is being deleted: a person who deletes their account expects no
    more charges. Runs inside the deletion's transaction, so if Stripe cannot be reached the deletion
    fails too (and can be retried) rather than leaving a subscription that bills nobody's account."""
    live = await db.scalars(
        select(Subscription.store_subscription_id).where(
            Subscription.account_id == account.id,
            Subscription.store == Store.STRIPE.value,
            Subscription.status.not_in(ENDED_STATUSES),
        )
    )
    for subscription_id in live.all():
        read_at = utcnow()
        await _store(db, stripe, await stripe.gateway.cancel_subscription(subscription_id), read_at)
