"""Promotion codes on web purchases: the code a person typed, checked at Stripe before anything is created.

Every path that sells through Stripe takes the customer-facing code (`promotion_code`), looks it up
through the paced gateway and refuses it with 422 `invalid_promotion_code` and a sentence saying why
(`providers.stripe.promotions.refusal`) before a Checkout Session, subscription or PaymentIntent exists:
a refused code must never leave a half-made purchase behind. Hosted Checkout and subscriptions carry it
as `discounts: [{promotion_code}]`; a PaymentIntent has no discounts, so its amount is reduced here and
the code is written in its metadata (`PROMOTION_CODE_KEY`), where a receipt or a support person finds it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from entitle.core.catalog import Product
from entitle.core.currencies import display_amount
from entitle.core.models.entitlements import Subscription
from entitle.core.models.purchases import Purchase
from entitle.core.subscriptions import Store, SubscriptionStatus
from entitle.db.types import utcnow
from entitle.errors import InvalidRequest, ProviderUnavailable
from entitle.providers.stripe.mapping import object_id
from entitle.providers.stripe.promotions import Promotion, choose, discounted, promotion_of, refusal
from entitle.providers.stripe.provider import StripeProvider

# Where the code rides on what entitle creates at Stripe (sessions, subscriptions, PaymentIntents).
PROMOTION_CODE_KEY = "entitle_promotion_code"
PROMOTION_CODE_ID_KEY = "entitle_promotion_code_id"
INVALID = "invalid_promotion_code"


def _refused(message: str, code: str) -> InvalidRequest:
    return InvalidRequest(message, code=INVALID, details={"promotion_code": code})


async def find_promotion(stripe: StripeProvider, code: str) -> Promotion:
    """The promotion code Stripe knows by `code`, with its coupon; 422 when Stripe knows none."""
    typed = code.strip()
    found = await stripe.gateway.promotion_codes(typed) if _well_formed(typed) else []
    chosen = choose(found)
    if chosen is None:
        raise _refused(f"There is no promotion code {typed}; check how it is spelled.", typed)
    promotion = promotion_of(chosen)
    if promotion is None:
        raise ProviderUnavailable(
            "Stripe returned the promotion code without its coupon.", code="stripe_rejected_request"
        )
    return promotion


def _well_formed(code: str) -> bool:
    # Stripe's codes are letters, digits and dashes; anything else cannot be one, so Stripe is not asked.
    return 0 < len(code) <= 200 and all(ch.isascii() and (ch.isalnum() or ch == "-") for ch in code)


async def first_purchase(db: AsyncSession, account_id: uuid.UUID | None) -> bool:
    """Whether the account has never paid through Stripe (Stripe's `first_time_transaction`); a visitor
    (no account yet) pays with the customer Checkout makes, so for Stripe it is a first purchase too."""
    if account_id is None:
        return True
    paid_subscription = await db.scalar(
        select(Subscription.id)
        .where(
            Subscription.account_id == account_id,
            Subscription.store == Store.STRIPE.value,
            Subscription.status != SubscriptionStatus.INCOMPLETE.value,
        )
        .limit(1)
    )
    if paid_subscription is not None:
        return False
    purchase = await db.scalar(
        select(Purchase.id)
        .where(Purchase.account_id == account_id, Purchase.store == Store.STRIPE.value)
        .limit(1)
    )
    return purchase is None


async def checked_promotion(
    db: AsyncSession,
    stripe: StripeProvider,
    account_id: uuid.UUID | None,
    code: str | None,
    *,
    price: dict[str, Any],
    quantity: int = 1,
    customer_id: str | None,
) -> Promotion | None:
    """The promotion for `code` if it applies to buying `quantity` of `price`; 422 with the reason if not."""
    if code is None:
        return None
    promotion = await find_promotion(stripe, code)
    reason = refusal(
        promotion,
        now=utcnow(),
        customer_id=customer_id,
        product_id=object_id(price.get("product")),
        amount=int(price.get("unit_amount") or 0) * quantity,
        currency=str(price.get("currency") or ""),
        first_purchase=await first_purchase(db, account_id),
    )
    if reason is not None:
        raise _refused(reason, promotion.code)
    return promotion


def checkout_discounts(promotion: Promotion | None) -> dict[str, Any]:
    """The Checkout Session parameters for a code: the discount itself, or, with none, the field where a
    person may type one on Stripe's page (Stripe refuses both at once)."""
    if promotion is None:
        return {"allow_promotion_codes": True}
    return {"discounts": [{"promotion_code": promotion.id}]}


def promotion_metadata(promotion: Promotion | None) -> dict[str, str]:
    if promotion is None:
        return {}
    return {PROMOTION_CODE_KEY: promotion.code, PROMOTION_CODE_ID_KEY: promotion.id}


def discounted_amount(promotion: Promotion | None, amount: int, currency: str) -> int:
    """A PaymentIntent's amount after the code; a code that makes it free is refused (a card payment
    needs something to charge; hosted Checkout takes such a code)."""
    if promotion is None:
        return amount
    after = discounted(amount, promotion, currency)
    if after <= 0:
        raise _refused(
            f"The code {promotion.code} makes this free; use hosted Checkout to redeem it.", promotion.code
        )
    return after


@dataclass(frozen=True)
class Offer:
    """What /pricing shows beside a price for a code: "20% off for 3 months" and the price after it."""

    headline: str
    price: str | None  # the first period's price after the code, "$7.99"; None when it does not apply
    refusal: str | None = None


def describe(promotion: Promotion, currency: str) -> str:
    """The code's effect in words: "20% off for 3 months", "$5.00 off the first payment"."""
    amount_off = promotion.amount_off(currency)
    if promotion.percent_off is not None:
        off = f"{promotion.percent_off:g}% off"
    else:
        off = f"{display_amount(amount_off or 0, currency)} off"
    months = promotion.duration_in_months
    if promotion.duration == "repeating" and months:
        return f"{off} for {months} month{'s' if months != 1 else ''}"
    if promotion.duration == "forever":
        return f"{off} for as long as you subscribe"
    return f"{off} the first payment"


def offer_for(
    promotion: Promotion,
    product: Product,
    *,
    product_id: str | None,
    customer_id: str | None,
    first: bool,
) -> Offer:
    """What the code does to `product`'s catalog price (the page shows catalog prices, not Stripe's)."""
    assert product.stripe is not None
    amount, currency = product.stripe.unit_amount, product.stripe.currency
    reason = refusal(
        promotion,
        now=utcnow(),
        customer_id=customer_id,
        product_id=product_id,
        amount=amount,
        currency=currency,
        first_purchase=first,
    )
    headline = describe(promotion, currency)
    if product.is_one_time:
        headline = headline.split(" for ")[0].removesuffix(" the first payment")
    if reason is not None:
        return Offer(headline=headline, price=None, refusal=reason)
    return Offer(headline=headline, price=display_amount(discounted(amount, promotion, currency), currency))
