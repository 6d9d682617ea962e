"""A promotion code on /pricing: what it takes off each plan, or why it does not apply.

`/pricing?promo=CODE` (a link in a mail, a tweet) and the page's own code field land here. The code is
looked up at Stripe through the paced gateway once per page view; a code Stripe does not know, or one
that no longer applies, is a sentence on the page, never an error page. Each option shows the price after
the code ("20% off for 3 months", "$7.99") and its form carries the code into Checkout only where it
applies, so pressing the button never meets a refusal the page could have shown.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession

from entitle.core.catalog import Catalog
from entitle.errors import EntitleError
from entitle.providers.stripe.mapping import object_id
from entitle.providers.stripe.models import StripeCustomer
from entitle.providers.stripe.provider import StripeProvider
from entitle.services.billing.promotions import Offer, find_promotion, first_purchase, offer_for
from entitle.web.pages.sentences import customer_sentence
from entitle.web.pages.visits import PageVisit

# Longer than any code Stripe makes; a longer one is not looked up (nor echoed back whole).
MAX_CODE_LENGTH = 200


@dataclass
class PromoView:
    """The code as the page shows it: typed, and what it does to each product (by catalog key)."""

    code: str = ""
    error: str | None = None
    headline: str | None = None
    offers: dict[str, Offer] = field(default_factory=dict)

    def carried(self, product: str) -> str:
        """The code a product's buy form sends: only where it applies."""
        offer = self.offers.get(product)
        return self.code if offer is not None and offer.price is not None else ""


async def promo_view(
    visit: PageVisit, db: AsyncSession, stripe: StripeProvider | None, typed: str | None, *, ip: str | None
) -> PromoView:
    code = (typed or "").strip()[:MAX_CODE_LENGTH]
    if not code or stripe is None:
        return PromoView(code=code)
    try:
        # Counted per client like sign-in attempts: the page must not become a way to guess codes, nor
        # to spend this account's Stripe request budget.
        await visit.context.rate_limiter.hit("promotion_code", ip=ip)
        promotion = await find_promotion(stripe, code)
        product_ids = await _stripe_products(
            stripe, visit.context.catalog, restricted=_restricted(promotion.coupon)
        )
    except EntitleError as exc:
        return PromoView(
            code=code, error=customer_sentence(exc, unavailable="Codes can't be checked right now.")
        )
    customer_id, first = None, True
    if visit.account is not None:
        row = await db.get(StripeCustomer, visit.account.id)
        customer_id = row.customer_id if row is not None and row.deleted_at is None else None
        first = await first_purchase(db, visit.account.id)
    offers = {
        product.key: offer_for(
            promotion,
            product,
            product_id=product_ids.get(product.key),
            customer_id=customer_id,
            first=first,
        )
        for product in visit.context.catalog.products.values()
        if product.stripe is not None
    }
    applying = [offer for offer in offers.values() if offer.price is not None]
    if not applying:
        reasons = {offer.refusal for offer in offers.values() if offer.refusal}
        error = (
            reasons.pop()
            if len(reasons) == 1
            else f"The code {promotion.code} does not apply to these plans."
        )
        return PromoView(code=promotion.code, error=error, offers=offers)
    return PromoView(code=promotion.code, headline=applying[0].headline, offers=offers)


def _restricted(coupon: object) -> bool:
    applies_to = coupon.get("applies_to") if isinstance(coupon, dict) else None
    return bool((applies_to or {}).get("products"))


async def _stripe_products(stripe: StripeProvider, catalog: Catalog, *, restricted: bool) -> dict[str, str]:
    """Catalog key -> Stripe product id, read only when the coupon names products (one call for all)."""
    if not restricted:
        return {}
    keys = {p.stripe.lookup_key: p.key for p in catalog.products.values() if p.stripe is not None}
    found: dict[str, str] = {}
    for price in await stripe.gateway.prices_by_lookup_keys(sorted(keys)):
        product_id = object_id(price.get("product"))
        if price.get("lookup_key") in keys and product_id:
            found[keys[price["lookup_key"]]] = product_id
    return found
