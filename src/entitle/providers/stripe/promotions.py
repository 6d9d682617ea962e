"""Stripe promotion codes and coupons, judged and applied the way Stripe applies them.

Decisions this module owns:
- Which code. A person types the customer-facing code ("LAUNCH20"); Stripe looks it up case-insensitively
  (`GET /v1/promotion_codes?code=`) and several codes may share it over time (only one active at once).
  An active one wins; else the newest says why none applies.
- Whether it applies, before anything is created: the code is active, unexpired and not out of
  redemptions; its coupon is `valid`; the customer, first-time and minimum-amount restrictions hold; the
  coupon's `applies_to.products` includes the product; an `amount_off` coupon is in the price's currency
  (or has `currency_options` for it). Each refusal is a sentence a person can act on.
- What it takes off a one-time payment. A PaymentIntent has no discounts, so the amount is reduced here:
  a percentage rounded to the nearest minor unit, half up, as Stripe rounds invoice discounts; a fixed
  amount never below zero.
- What the answer shows (`discount_summary`): a store-neutral dict (`code`, `percent_off` or `amount_off`
  and `currency`, `duration`, `ends_at`), from a subscription's `discounts` as stored (expanded).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from entitle.core.entitlements import isoformat
from entitle.providers.stripe.mapping import from_timestamp, object_id


@dataclass(frozen=True)
class Promotion:
    """A promotion code and its coupon, as Stripe returned them."""

    id: str  # promo_...
    code: str  # what the person typed, in Stripe's spelling
    coupon: Mapping[str, Any]
    raw: Mapping[str, Any]

    @property
    def percent_off(self) -> float | None:
        value = self.coupon.get("percent_off")
        return float(value) if value is not None else None

    def amount_off(self, currency: str) -> int | None:
        """The fixed amount off in `currency` (minor units), None for a percentage or another currency."""
        if self.coupon.get("amount_off") is None:
            return None
        if str(self.coupon.get("currency") or "").lower() == currency.lower():
            return int(self.coupon["amount_off"])
        option = (self.coupon.get("currency_options") or {}).get(currency.lower()) or {}
        return int(option["amount_off"]) if option.get("amount_off") is not None else None

    @property
    def duration(self) -> str:
        return str(self.coupon.get("duration") or "once")

    @property
    def duration_in_months(self) -> int | None:
        months = self.coupon.get("duration_in_months")
        return int(months) if months else None


def choose(found: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The code that decides: an active one if any, else the newest (whose state says why it fails)."""
    active = [p for p in found if p.get("active")]
    ranked = sorted(active or found, key=lambda p: int(p.get("created") or 0), reverse=True)
    return ranked[0] if ranked else None


def promotion_of(raw: Mapping[str, Any]) -> Promotion | None:
    """The promotion code with its coupon; None when the coupon is not expanded (or not a coupon)."""
    promotion = raw.get("promotion") or {}
    # API versions before 2025-09-30 put the coupon at the top level.
    coupon = promotion.get("coupon") if promotion else raw.get("coupon")
    if not isinstance(coupon, Mapping):
        return None
    return Promotion(id=str(raw["id"]), code=str(raw.get("code") or ""), coupon=coupon, raw=raw)


def refusal(
    promo: Promotion,
    *,
    now: datetime,
    customer_id: str | None,
    product_id: str | None,
    amount: int,
    currency: str,
    first_purchase: bool,
) -> str | None:
    """Why `promo` does not apply to paying `amount` `currency` for Stripe product `product_id`, or None."""
    raw, coupon = promo.raw, promo.coupon
    expires_at = raw.get("expires_at")
    if expires_at is not None and from_timestamp(expires_at) <= now:
        return f"The code {promo.code} has expired."
    limit = raw.get("max_redemptions")
    if limit is not None and int(raw.get("times_redeemed") or 0) >= int(limit):
        return f"The code {promo.code} has been used as many times as it can be."
    if not raw.get("active"):
        return f"The code {promo.code} is no longer active."
    redeem_by = coupon.get("redeem_by")
    if not coupon.get("valid", True) or (redeem_by is not None and from_timestamp(redeem_by) <= now):
        return f"The offer behind the code {promo.code} has ended."
    owner = object_id(raw.get("customer"))
    if owner is not None and owner != customer_id:
        return f"The code {promo.code} belongs to another customer."
    rules = raw.get("restrictions") or {}
    if rules.get("first_time_transaction") and not first_purchase:
        return f"The code {promo.code} is for a first purchase only."
    minimum = _minimum(rules, currency)
    if minimum is not None and amount < minimum:
        return f"The code {promo.code} needs a larger purchase."
    products = (coupon.get("applies_to") or {}).get("products") or []
    if products and product_id not in products:
        return f"The code {promo.code} does not apply to this product."
    if promo.percent_off is None and promo.amount_off(currency) is None:
        return f"The code {promo.code} does not apply to prices in {currency.upper()}."
    return None


def _minimum(rules: Mapping[str, Any], currency: str) -> int | None:
    if rules.get("minimum_amount") is not None and str(
        rules.get("minimum_amount_currency") or ""
    ).lower() == (currency.lower()):
        return int(rules["minimum_amount"])
    option = (rules.get("currency_options") or {}).get(currency.lower()) or {}
    return int(option["minimum_amount"]) if option.get("minimum_amount") is not None else None


def discounted(amount: int, promo: Promotion, currency: str) -> int:
    """`amount` (minor units) after `promo`: a percentage rounded half up, a fixed amount floored at 0."""
    if promo.percent_off is not None:
        off = (Decimal(amount) * Decimal(str(promo.percent_off)) / 100).quantize(
            Decimal(1), rounding=ROUND_HALF_UP
        )
        return max(amount - int(off), 0)
    return max(amount - (promo.amount_off(currency) or 0), 0)


def discount_summary(discounts: Any) -> dict[str, Any] | None:
    """The answer's `discount` for a Stripe subscription's `discounts` (expanded), None when none shows.

    Only an expanded discount with an expanded coupon says enough; ids alone (a server that refused
    `expand`) show nothing rather than something half known."""
    for discount in discounts or []:
        if not isinstance(discount, Mapping):
            continue
        source = discount.get("source") or {}
        coupon = source.get("coupon") if source else discount.get("coupon")
        if not isinstance(coupon, Mapping):
            continue
        promo = discount.get("promotion_code")
        end = discount.get("end")
        return {
            "code": promo.get("code") if isinstance(promo, Mapping) else None,
            "name": coupon.get("name"),
            "percent_off": coupon.get("percent_off"),
            "amount_off": coupon.get("amount_off"),
            "currency": coupon.get("currency") if coupon.get("amount_off") is not None else None,
            "duration": coupon.get("duration"),
            "duration_in_months": coupon.get("duration_in_months"),
            "ends_at": isoformat(from_timestamp(end)) if end else None,
        }
    return None
