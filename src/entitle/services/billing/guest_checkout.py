"""Pay first, the account after: a visitor's Checkout, held unclaimed until someone proves the right to it.

Decisions this module owns:
- Who may claim. The browser that opened Checkout (a random cookie, of which only the SHA-256 is stored,
  bound to the Checkout Session), whoever opens the link mailed to the Checkout address (a single-use
  token, 7 days, hashed at rest), or an operator. An address typed into Stripe's page proves nothing:
  a purchase is never attached to the account that happens to have that address. The paying browser may
  create a *new* account with it; an existing account with it is asked to sign in.
- What claiming means. The one-paid-subscription rule and a lifetime product's buy-once rule apply as for
  any purchase (409, nothing moves); then the row is claimed in one conditional UPDATE (two tabs cannot
  both claim), the guest's Stripe customer becomes the account's (adopted when the account has none, else
  found through this table by `Reconciler.account_for`), and the subscription or PaymentIntent is read
  again through the ordinary reconcilers, so the answer, the events and the push happen as for any purchase.
- Recording the payment. The `checkout.session.completed` webhook and the success page (which may see the
  session complete first) both call `StoredGuestCheckouts.paid`; one conditional UPDATE makes it happen
  once, and that once queues the mail with the redemption link.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from entitle.constant_time import same_secret
from entitle.core.catalog import Catalog, Product, ProductType
from entitle.core.guests import GuestPayment
from entitle.core.models.accounts import Account, Identity
from entitle.core.models.guest import GuestCheckout, GuestCheckoutStatus
from entitle.core.subscriptions import Store
from entitle.db.types import utcnow
from entitle.errors import Conflict, EntitleError, NotFound
from entitle.providers.stripe.attempts import purchase_lock
from entitle.providers.stripe.errors import StripeObjectMissing
from entitle.providers.stripe.guests import guest_payment, guest_session_params
from entitle.providers.stripe.models import StripeCustomer
from entitle.providers.stripe.provider import StripeProvider
from entitle.services.access.entitlements import read_entitlements
from entitle.services.access.trials import had_trial, trial_days_for
from entitle.services.billing import billing_stripe, tax
from entitle.services.billing.promotions import checked_promotion, checkout_discounts, promotion_metadata
from entitle.services.delivery.mail import queue_mail
from entitle.services.identity.accounts import normalize_email

log = logging.getLogger(__name__)

# The browser's cookie: a random value per browser; each guest checkout stores the hash of it.
BROWSER_COOKIE = "entitle_guest"
BROWSER_COOKIE_SECONDS = 30 * 24 * 3600
LINK_LIFETIME = timedelta(days=7)
# Where the mailed link (and the universal link on an iPhone) opens.
REDEEM_PATH = "/redeem"


class RedemptionExpired(EntitleError):
    status_code = 410
    default_code = "redemption_expired"


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_browser_secret() -> str:
    return secrets.token_urlsafe(32)


def product_name(stripe: StripeProvider, key: str) -> str:
    product = stripe.catalog.product(key)
    return product.name if product is not None else key


# --- starting ---------------------------------------------------------------------------------------------
async def start_guest_checkout(
    db: AsyncSession,
    stripe: StripeProvider,
    product_key: str,
    *,
    browser_secret: str,
    success_url: str | None,
    cancel_url: str | None,
    quantity: int | None = None,
    promotion_code: str | None = None,
) -> dict[str, Any]:
    """Hosted Checkout for a visitor: Stripe collects the email; the browser's cookie is bound to it."""
    paths = billing_stripe.WEB_APP_PATHS if stripe.config.web_origins else billing_stripe.HOSTED_PATHS
    success = billing_stripe.redirect_url(stripe.config, success_url, paths.success)
    cancel = billing_stripe.redirect_url(stripe.config, cancel_url, paths.cancel)
    product = billing_stripe.catalog_product(stripe, product_key)
    count = billing_stripe.checked_quantity(product, quantity)
    product, price = await billing_stripe.price_for(stripe, product.key)
    # A visitor is shown the catalog's trial (trials.trial_days_for): one trial per person is checked
    # again when an account claims it (`_refuse_if_already_paid_for`).
    trial_days = await trial_days_for(db, None, product)
    promotion = await checked_promotion(
        db, stripe, None, promotion_code, price=price, quantity=count, customer_id=None
    )
    params = guest_session_params(product, str(price["id"]), count, success, cancel, trial_days)
    params.pop("allow_promotion_codes", None)
    params.update(checkout_discounts(promotion))
    params["metadata"].update(promotion_metadata(promotion))
    if trial_days and not product.is_one_time:
        params["subscription_data"].update(billing_stripe.cardless_trial_settings(product))
        params.update(billing_stripe.cardless_trial_collection(product))
    # Stripe Tax as on every Checkout, except `customer_update`: Checkout itself makes a guest's customer,
    # with the address typed on the page.
    params.update({k: v for k, v in tax.checkout_params(stripe).items() if k != "customer_update"})
    session = await stripe.gateway.create_checkout_session(params)  # type: ignore[arg-type]
    db.add(
        GuestCheckout(
            store=Store.STRIPE.value,
            checkout_id=str(session["id"]),
            browser_hash=digest(browser_secret),
            product=product.key,
            quantity=count,
            status=GuestCheckoutStatus.OPEN.value,
            created_at=utcnow(),
        )
    )
    await db.flush()
    return {"id": session["id"], "url": session["url"]}


# --- recording the payment --------------------------------------------------------------------------------
async def account_with_email(db: AsyncSession, email: str | None) -> Account | None:
    """A live account that has this address (as its own, or on any of its ways in), if any."""
    if not email:
        return None
    address = normalize_email(email)
    return await db.scalar(
        select(Account)
        .outerjoin(Identity, Identity.account_id == Account.id)
        .where(Account.deleted_at.is_(None), or_(Account.email == address, Identity.email == address))
        .order_by(Account.created_at)
        .limit(1)
    )


class StoredGuestCheckouts:
    """The `GuestSink` the Stripe provider records paid guest checkouts through."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    async def paid(self, db: AsyncSession, payment: GuestPayment) -> bool:
        insert = postgresql.insert if db.get_bind().dialect.name == "postgresql" else sqlite.insert
        # A session made elsewhere than start_guest_checkout (or whose row was lost): held all the same,
        # claimable by the mailed link only.
        await db.execute(
            insert(GuestCheckout)
            .values(
                id=uuid.uuid4(),
                store=payment.store.value,
                checkout_id=payment.checkout_id,
                product=payment.product,
                quantity=payment.quantity,
                status=GuestCheckoutStatus.OPEN.value,
                created_at=utcnow(),
            )
            .on_conflict_do_nothing(index_elements=["store", "checkout_id"])
        )
        token = secrets.token_urlsafe(32)
        now = utcnow()
        result = await db.execute(
            update(GuestCheckout)
            .where(
                GuestCheckout.store == payment.store.value,
                GuestCheckout.checkout_id == payment.checkout_id,
                GuestCheckout.status.in_([GuestCheckoutStatus.OPEN.value, GuestCheckoutStatus.EXPIRED.value]),
            )
            .values(
                status=GuestCheckoutStatus.PAID.value,
                email=normalize_email(payment.email) if payment.email else None,
                store_customer_id=payment.store_customer_id,
                store_subscription_id=payment.store_subscription_id,
                store_purchase_id=payment.store_purchase_id,
                paid_at=now,
                token_hash=digest(token),
                token_expires_at=now + LINK_LIFETIME,
            )
            .execution_options(synchronize_session=False)
        )
        if not result.rowcount:  # type: ignore[attr-defined]
            return False  # already recorded (the webhook and the success page both try)
        if payment.email:
            email = normalize_email(payment.email)
            await _mail_link(db, email, token, name_of(self.catalog, payment.product, payment.quantity))
        return True


def name_of(catalog: Catalog, key: str, quantity: int) -> str:
    product = catalog.product(key)
    name = product.name if product is not None else key
    return f"{quantity} × {name}" if quantity > 1 else name


async def _mail_link(db: AsyncSession, email: str, token: str, product: str) -> None:
    """The redemption link; when an account already has the address, the mail asks to sign in to it."""
    existing = await account_with_email(db, email)
    await queue_mail(
        db,
        to=email,
        template="guest_paid_existing" if existing is not None else "guest_paid",
        data={"token": token, "email": email, "product": product},
    )


async def resend_link(db: AsyncSession, stripe: StripeProvider, token: str) -> GuestCheckout | None:
    """A fresh link for an expired one, mailed to the Checkout address again (never anywhere else, so
    whoever asks learns nothing and gains nothing); None when that link cannot be renewed."""
    row = await checkout_of_token(db, token)
    if row is None or link_state(row) != "expired" or not row.email:
        return None
    fresh = secrets.token_urlsafe(32)
    row.token_hash, row.token_expires_at = digest(fresh), utcnow() + LINK_LIFETIME
    await db.flush()
    await _mail_link(db, row.email, fresh, name_of(stripe.catalog, row.product, row.quantity))
    return row


async def refresh_from_stripe(db: AsyncSession, stripe: StripeProvider, row: GuestCheckout) -> GuestCheckout:
    """Read an open guest checkout from Stripe and record it paid (or expired) without waiting for the
    webhook, so the browser that just paid never waits on one."""
    if row.status != GuestCheckoutStatus.OPEN.value:
        return row
    try:
        session = await stripe.gateway.retrieve_checkout_session(row.checkout_id)
    except StripeObjectMissing:
        return row
    payment = guest_payment(session)
    if payment is not None:
        await StoredGuestCheckouts(stripe.catalog).paid(db, payment)
    elif session.get("status") == "expired":
        row.status = GuestCheckoutStatus.EXPIRED.value
        await db.flush()
    await db.refresh(row)
    return row


# --- finding what a browser or a link may claim -----------------------------------------------------------
async def checkout_of_browser(
    db: AsyncSession, checkout_id: str, browser_secret: str | None
) -> GuestCheckout | None:
    """The guest checkout `checkout_id` if this browser opened it; None for any other browser."""
    if not browser_secret or not checkout_id:
        return None
    row = await db.scalar(
        select(GuestCheckout).where(
            GuestCheckout.store == Store.STRIPE.value, GuestCheckout.checkout_id == checkout_id[:255]
        )
    )
    if row is None or row.browser_hash is None or not same_secret(digest(browser_secret), row.browser_hash):
        return None
    return row


async def checkout_of_token(db: AsyncSession, token: str) -> GuestCheckout | None:
    if not token or len(token) > 200:
        return None
    return await db.scalar(select(GuestCheckout).where(GuestCheckout.token_hash == digest(token)))


def link_state(row: GuestCheckout | None, now: datetime | None = None) -> str:
    """What a redemption link can do: `valid`, `claimed` (by anyone, any route), `expired`, `unknown`."""
    if row is None:
        return "unknown"
    if row.status == GuestCheckoutStatus.CLAIMED.value or row.token_used_at is not None:
        return "claimed"
    if row.status != GuestCheckoutStatus.PAID.value or row.token_expires_at is None:
        return "unknown"
    return "expired" if row.token_expires_at <= (now or utcnow()) else "valid"


async def guest_status(
    db: AsyncSession, stripe: StripeProvider, checkout_id: str, browser_secret: str | None
) -> dict[str, Any]:
    """GET /v1/billing/stripe/checkout/{id} for the guest's browser: 404 for any other browser."""
    row = await checkout_of_browser(db, checkout_id, browser_secret)
    if row is None:
        raise NotFound("This browser has no such Checkout Session.", code="checkout_session_not_found")
    session = await stripe.gateway.retrieve_checkout_session(row.checkout_id)
    payment = guest_payment(session)
    if payment is not None:
        await StoredGuestCheckouts(stripe.catalog).paid(db, payment)
    return {
        "id": session["id"],
        "status": session.get("status"),
        "payment_status": session.get("payment_status"),
        "product": row.product,
        # What a guest bought is in no answer until an account claims it.
        "fulfilled": False,
        "claimed": row.status == GuestCheckoutStatus.CLAIMED.value,
    }


# --- claiming ---------------------------------------------------------------------------------------------
async def _refuse_if_already_paid_for(
    db: AsyncSession, stripe: StripeProvider, account: Account, product: Product | None, *, in_trial: bool
) -> None:
    if product is None:
        return
    if product.type is ProductType.SUBSCRIPTION:
        await billing_stripe.refuse_if_subscribed(db, account, product)
        await billing_stripe.refuse_if_stalled(db, stripe, account, product)
        if in_trial and await had_trial(db, account.id, product.entitlements):
            # One trial per person: a second one, started as a guest, does not move into this account.
            raise Conflict(
                f"This account has already had its free trial of {product.name}.",
                code="trial_already_used",
                details={"product": product.key},
            )
    else:
        await billing_stripe.refuse_if_owned(db, account, product)


async def _in_trial(stripe: StripeProvider, row: GuestCheckout) -> bool:
    if not row.store_subscription_id:
        return False
    sub = await stripe.gateway.retrieve_subscription(row.store_subscription_id)
    return sub.get("status") == "trialing"


async def _adopt_customer(db: AsyncSession, account: Account, customer_id: str | None) -> None:
    """The guest's customer becomes the account's Stripe customer when the account has none (or only a
    deleted one); otherwise `Reconciler.account_for` finds the account through the claimed row."""
    if customer_id is None:
        return
    row = await db.get(StripeCustomer, account.id)
    if row is not None and row.deleted_at is None:
        return
    taken = await db.scalar(
        select(StripeCustomer.account_id).where(StripeCustomer.customer_id == customer_id)
    )
    if taken is not None:
        return
    if row is None:
        db.add(StripeCustomer(account_id=account.id, customer_id=customer_id, created_at=utcnow()))
    else:
        row.customer_id, row.deleted_at = customer_id, None
    await db.flush()


async def claim(
    db: AsyncSession, stripe: StripeProvider, row: GuestCheckout, account: Account, *, via: str
) -> dict[str, Any]:
    """Move a paid guest checkout to `account`; returns the account's entitlements answer."""
    if row.status == GuestCheckoutStatus.CLAIMED.value:
        if row.claimed_account_id == account.id:
            return await read_entitlements(db, account.id)
        raise Conflict("This purchase was already added to an account.", code="already_claimed")
    if row.status != GuestCheckoutStatus.PAID.value:
        raise Conflict("This purchase is not paid yet.", code="not_paid")
    product = stripe.catalog.product(row.product)
    async with purchase_lock(db, account.id):
        await _refuse_if_already_paid_for(db, stripe, account, product, in_trial=await _in_trial(stripe, row))
        now = utcnow()
        values: dict[str, Any] = {
            "status": GuestCheckoutStatus.CLAIMED.value,
            "claimed_account_id": account.id,
            "claimed_at": now,
            "claimed_by": via,
        }
        if via == "link":
            values["token_used_at"] = now
        result = await db.execute(
            update(GuestCheckout)
            .where(GuestCheckout.id == row.id, GuestCheckout.status == GuestCheckoutStatus.PAID.value)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        if not result.rowcount:  # type: ignore[attr-defined]
            raise Conflict("This purchase was already added to an account.", code="already_claimed")
        await _adopt_customer(db, account, row.store_customer_id)
        # The ordinary reconcilers now find the account, store the purchase, and announce it.
        if row.store_subscription_id:
            await stripe.reconciler.subscription(db, row.store_subscription_id)
        if row.store_purchase_id and stripe.purchase_reconciler is not None:
            await stripe.purchase_reconciler.payment_intent(db, row.store_purchase_id)
        if row.email:
            await queue_mail(
                db,
                to=row.email,
                template="guest_claimed",
                account_id=account.id,
                data={"product": product_name(stripe, row.product), "account_email": account.email or ""},
            )
    await db.refresh(row)
    return await read_entitlements(db, account.id)


async def redeem(db: AsyncSession, stripe: StripeProvider, token: str, account: Account) -> dict[str, Any]:
    """POST /v1/me/redemptions: the mailed link's token moves its purchase to this account."""
    row = await checkout_of_token(db, token)
    state = link_state(row)
    if row is None or state != "valid":
        raise RedemptionExpired(
            "This redemption link was already used or has expired."
            if state in ("claimed", "expired")
            else "This redemption link is not valid.",
        )
    return await claim(db, stripe, row, account, via="link")


async def claim_for_browser(
    db: AsyncSession, stripe: StripeProvider, checkout_id: str, browser_secret: str | None, account: Account
) -> dict[str, Any]:
    row = await checkout_of_browser(db, checkout_id, browser_secret)
    if row is None:
        raise NotFound("This browser has no such Checkout Session.", code="checkout_session_not_found")
    row = await refresh_from_stripe(db, stripe, row)
    return await claim(db, stripe, row, account, via="browser")


# --- operators --------------------------------------------------------------------------------------------
async def unclaimed(db: AsyncSession, limit: int = 100) -> list[GuestCheckout]:
    """Paid guest checkouts nobody has claimed yet, newest first."""
    rows = await db.scalars(
        select(GuestCheckout)
        .where(GuestCheckout.status == GuestCheckoutStatus.PAID.value)
        .order_by(GuestCheckout.paid_at.desc())
        .limit(limit)
    )
    return list(rows.all())


async def count_unclaimed(db: AsyncSession) -> int:
    found = await db.scalar(
        select(func.count()).where(GuestCheckout.status == GuestCheckoutStatus.PAID.value)
    )
    return int(found or 0)


async def get(db: AsyncSession, checkout_row_id: uuid.UUID) -> GuestCheckout:
    row = await db.get(GuestCheckout, checkout_row_id)
    if row is None:
        raise NotFound("There is no such unclaimed purchase.", code="guest_checkout_not_found")
    return row
