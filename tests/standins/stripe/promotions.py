"""Coupons, promotion codes and the discounts they create, in the wire format of API 2025-09-30 and later.

A promotion code names its coupon under `promotion: {type: "coupon", coupon}` (the top-level `coupon`
parameter and field are gone, https://docs.stripe.com/changelog/clover/2025-09-30/polymorphic-coupon)
and the coupon is not expanded unless asked. A discount names its coupon under `source.coupon`, also
unexpanded. A coupon's `applies_to` is returned only when expanded, as at Stripe.

Where a discount is applied: Checkout Sessions (`discounts[0][promotion_code]`, refused beside
`allow_promotion_codes`), subscriptions (`discounts`), and through them the invoices, whose `total` is
the subtotal less the discount (`total_discount_amounts`). A redemption is counted when a discount is
created: at subscription creation, or when a Checkout Session completes. Invalid codes are refused
with Stripe's 400 on `discounts[0][promotion_code]`.
"""

from __future__ import annotations

import calendar
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING, Any

from .wire import StandinError, as_bool, as_int, as_list, list_page, new_id, require

if TYPE_CHECKING:
    from .state import State

DURATIONS = ("once", "repeating", "forever")


def months_later(ts: int, months: int) -> int:
    """The same day `months` calendar months later (the last day of a shorter month), as Stripe counts."""
    start = datetime.fromtimestamp(ts, UTC)
    year, month = divmod(start.month - 1 + months, 12)
    day = min(start.day, calendar.monthrange(start.year + year, month + 1)[1])
    return int(start.replace(year=start.year + year, month=month + 1, day=day).timestamp())


# --- coupons -----------------------------------------------------------------------------------------
def create_coupon(state: State, params: dict[str, Any]) -> dict[str, Any]:
    percent = params.get("percent_off")
    amount = params.get("amount_off")
    if (percent is None) == (amount is None):
        raise StandinError(
            400, "You must pass exactly one of percent_off or amount_off.", param="percent_off"
        )
    if amount is not None and not params.get("currency"):
        raise StandinError(400, "You must pass currency when passing amount_off.", param="currency")
    duration = params.get("duration", "once")
    if duration not in DURATIONS:
        raise StandinError(400, f"Invalid duration: {duration}", param="duration")
    months = params.get("duration_in_months")
    if duration == "repeating" and not months:
        raise StandinError(
            400, "You must pass duration_in_months when duration is repeating.", param="duration_in_months"
        )
    if params.get("id") and params["id"] in state.objects:
        raise StandinError(400, "Coupon already exists.", code="resource_already_exists", param="id")
    products = as_list((params.get("applies_to") or {}).get("products"))
    coupon = state.add(
        {
            # Stripe's coupon ids are 8 characters, or the id the caller chose.
            "id": params.get("id") or new_id("x", 8)[2:].upper(),
            "object": "coupon",
            "amount_off": as_int(amount, "amount_off") if amount is not None else None,
            "currency": params.get("currency"),
            "duration": duration,
            "duration_in_months": as_int(months, "duration_in_months") if duration == "repeating" else None,
            "max_redemptions": as_int(params["max_redemptions"], "max_redemptions")
            if params.get("max_redemptions")
            else None,
            "metadata": params.get("metadata") or {},
            "name": params.get("name"),
            "percent_off": float(percent) if percent is not None else None,
            "redeem_by": as_int(params["redeem_by"], "redeem_by") if params.get("redeem_by") else None,
            "times_redeemed": 0,
            "valid": True,
            "_hidden": {"applies_to": {"products": products} if products else None},
        },
        None,
        id_length=8,
    )
    return state.render(coupon, as_list(params.get("expand")))


def _refresh_coupon(state: State, coupon: dict[str, Any]) -> dict[str, Any]:
    """`valid` as Stripe computes it: not past `redeem_by`, not out of redemptions."""
    exhausted = (
        coupon["max_redemptions"] is not None and coupon["times_redeemed"] >= coupon["max_redemptions"]
    )
    late = coupon["redeem_by"] is not None and coupon["redeem_by"] <= state.now()
    coupon["valid"] = not (exhausted or late or coupon.get("_deleted"))
    return coupon


def retrieve_coupon(state: State, params: dict[str, Any], id: str) -> dict[str, Any]:
    coupon = _refresh_coupon(state, state.get(id, "coupon"))
    return state.render(coupon, as_list(params.get("expand")))


def delete_coupon(state: State, params: dict[str, Any], id: str) -> dict[str, Any]:
    coupon = state.get(id, "coupon")
    coupon["_deleted"] = True
    _refresh_coupon(state, coupon)
    return {"id": id, "object": "coupon", "deleted": True}


# --- promotion codes -------------------------------------------------------------------------------------
def create_promotion_code(state: State, params: dict[str, Any]) -> dict[str, Any]:
    if "coupon" in params:
        raise StandinError(
            400, "Received unknown parameter: coupon", code="parameter_unknown", param="coupon"
        )
    promotion = require(params, "promotion")
    if not isinstance(promotion, dict) or promotion.get("type") != "coupon":
        raise StandinError(400, "promotion[type] must be coupon.", param="promotion[type]")
    coupon = _refresh_coupon(state, state.get(require(promotion, "coupon"), "coupon"))
    code = params.get("code") or new_id("X", 8)[2:].upper()
    clash = [p for p in state.all("promotion_code") if p["active"] and p["code"].lower() == code.lower()]
    if clash:
        raise StandinError(400, f"An active promotion code with `code: {code}` already exists.", param="code")
    restrictions = params.get("restrictions") or {}
    promo = state.add(
        {
            "object": "promotion_code",
            "active": as_bool(params.get("active", "true"), "active"),
            "code": code,
            "customer": params.get("customer"),
            "customer_account": None,
            "expires_at": as_int(params["expires_at"], "expires_at") if params.get("expires_at") else None,
            "max_redemptions": as_int(params["max_redemptions"], "max_redemptions")
            if params.get("max_redemptions")
            else None,
            "metadata": params.get("metadata") or {},
            "promotion": {"coupon": coupon["id"], "type": "coupon"},
            "restrictions": {
                "currency_options": restrictions.get("currency_options") or {},
                "first_time_transaction": as_bool(
                    restrictions.get("first_time_transaction", "false"), "first_time_transaction"
                ),
                "minimum_amount": as_int(restrictions["minimum_amount"], "minimum_amount")
                if restrictions.get("minimum_amount")
                else None,
                "minimum_amount_currency": restrictions.get("minimum_amount_currency"),
            },
            "times_redeemed": 0,
        },
        "promo",
    )
    return state.render(_refresh_promo(state, promo), as_list(params.get("expand")))


def _refresh_promo(state: State, promo: dict[str, Any]) -> dict[str, Any]:
    """`active` stays what the merchant set; expiry and redemptions are checked when it is redeemed."""
    _refresh_coupon(state, state.objects[promo["promotion"]["coupon"]])
    return promo


def retrieve_promotion_code(state: State, params: dict[str, Any], id: str) -> dict[str, Any]:
    promo = _refresh_promo(state, state.get(id, "promotion_code"))
    return state.render(promo, as_list(params.get("expand")))


def update_promotion_code(state: State, params: dict[str, Any], id: str) -> dict[str, Any]:
    promo = state.get(id, "promotion_code")
    if "active" in params:
        promo["active"] = as_bool(params["active"], "active")
    if "metadata" in params:
        promo["metadata"] = {**promo["metadata"], **(params["metadata"] or {})}
    return state.render(_refresh_promo(state, promo), as_list(params.get("expand")))


def list_promotion_codes(state: State, params: dict[str, Any]) -> dict[str, Any]:
    expand = [e.removeprefix("data.") for e in as_list(params.get("expand"))]
    found = [_refresh_promo(state, p) for p in state.all("promotion_code")]
    if code := params.get("code"):  # case-insensitive, as Stripe documents
        found = [p for p in found if p["code"].lower() == str(code).lower()]
    if "active" in params:
        active = as_bool(params["active"], "active")
        found = [p for p in found if p["active"] == active]
    if coupon := params.get("coupon"):
        found = [p for p in found if p["promotion"]["coupon"] == coupon]
    if customer := params.get("customer"):
        found = [p for p in found if p["customer"] == customer]
    return list_page(found, params, "/v1/promotion_codes", lambda p: state.render(p, expand))


# --- applying them -----------------------------------------------------------------------------------------
def discount_off(coupon: dict[str, Any], amount: int, currency: str) -> int:
    """What `coupon` takes off `amount` (minor units): a percentage rounded half up, or a fixed amount."""
    if coupon["percent_off"] is not None:
        off = (Decimal(amount) * Decimal(str(coupon["percent_off"])) / 100).quantize(
            Decimal(1), rounding=ROUND_HALF_UP
        )
        return min(int(off), amount)
    return min(int(coupon["amount_off"] or 0), amount) if coupon["currency"] == currency else 0


def resolve(
    state: State,
    discounts: Any,
    *,
    customer: str | None,
    amount: int,
    currency: str,
    product: str | None,
    param: str = "discounts",
) -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
    """The (coupon, promotion code) pairs a `discounts` parameter names, refused as Stripe refuses them."""
    found: list[tuple[dict[str, Any], dict[str, Any] | None]] = []
    for index, entry in enumerate(as_list(discounts)):
        where = f"{param}[{index}][promotion_code]"
        if not isinstance(entry, dict):
            raise StandinError(400, f"Invalid hash: {param}[{index}]", param=f"{param}[{index}]")
        if entry.get("promotion_code"):
            promo = state.objects.get(entry["promotion_code"])
            if promo is None or promo.get("object") != "promotion_code":
                raise StandinError(
                    400,
                    f"No such promotion code: '{entry['promotion_code']}'",
                    code="resource_missing",
                    param=where,
                )
            _refresh_promo(state, promo)
            coupon = state.objects[promo["promotion"]["coupon"]]
            _check_promo(state, promo, customer=customer, amount=amount, currency=currency, where=where)
        elif entry.get("coupon"):
            where = f"{param}[{index}][coupon]"
            coupon = _refresh_coupon(state, state.get(entry["coupon"], "coupon"))
            promo = None
        else:
            raise StandinError(400, "Pass a coupon or a promotion_code.", param=f"{param}[{index}]")
        if not coupon["valid"]:
            raise StandinError(400, f"Coupon {coupon['id']} is no longer valid.", param=where)
        limited = (coupon.get("_hidden", {}).get("applies_to") or {}).get("products")
        if limited and product not in limited:
            raise StandinError(400, "This promotion code cannot be applied to these products.", param=where)
        if coupon["amount_off"] is not None and coupon["currency"] != currency:
            raise StandinError(
                400, f"The coupon's currency ({coupon['currency']}) does not match {currency}.", param=where
            )
        found.append((coupon, promo))
    if len(found) > 1:
        raise StandinError(400, "The stand-in applies one discount at a time.", param=param)
    return found


def _check_promo(
    state: State, promo: dict[str, Any], *, customer: str | None, amount: int, currency: str, where: str
) -> None:
    if not promo["active"]:
        raise StandinError(400, f"This promotion code is inactive: {promo['code']}.", param=where)
    if promo["expires_at"] is not None and promo["expires_at"] <= state.now():
        raise StandinError(400, f"This promotion code has expired: {promo['code']}.", param=where)
    if promo["max_redemptions"] is not None and promo["times_redeemed"] >= promo["max_redemptions"]:
        raise StandinError(400, f"This promotion code has been fully redeemed: {promo['code']}.", param=where)
    if promo["customer"] and promo["customer"] != customer:
        raise StandinError(400, "This promotion code cannot be used by this customer.", param=where)
    rules = promo["restrictions"]
    if rules["minimum_amount"] is not None:
        minimum = rules["minimum_amount"]
        if rules["minimum_amount_currency"] == currency and amount < minimum:
            raise StandinError(400, "This promotion code requires a higher minimum amount.", param=where)
    if rules["first_time_transaction"] and customer and _has_paid(state, customer):
        raise StandinError(400, "This promotion code is for first-time customers only.", param=where)


def _has_paid(state: State, customer: str) -> bool:
    return any(
        o.get("customer") == customer and o.get("status") in ("paid", "succeeded")
        for o in [*state.all("invoice"), *state.all("charge")]
        if (o.get("amount_paid") or o.get("amount") or 0) > 0
    )


def redeem(
    state: State,
    found: list[tuple[dict[str, Any], dict[str, Any] | None]],
    *,
    customer: str | None,
    subscription: str | None = None,
    checkout_session: str | None = None,
) -> list[str]:
    """Discount objects for `found`, counting each redemption; their ids, as a subscription lists them."""
    ids = []
    now = state.now()
    for coupon, promo in found:
        months = coupon["duration_in_months"]
        discount = state.add(
            {
                "object": "discount",
                "checkout_session": checkout_session,
                "customer": customer,
                "customer_account": None,
                "end": months_later(now, months) if coupon["duration"] == "repeating" and months else None,
                "invoice": None,
                "invoice_item": None,
                "promotion_code": promo["id"] if promo else None,
                "source": {"coupon": coupon["id"], "type": "coupon"},
                "start": now,
                "subscription": subscription,
                "subscription_item": None,
                "_used": False,
            },
            "di",
        )
        coupon["times_redeemed"] += 1
        _refresh_coupon(state, coupon)
        if promo is not None:
            promo["times_redeemed"] += 1
            _refresh_promo(state, promo)
        ids.append(str(discount["id"]))
    return ids


def session_discounts(found: list[tuple[dict[str, Any], dict[str, Any] | None]]) -> list[dict[str, Any]]:
    """A Checkout Session's `discounts`: what was asked for, before anything is redeemed."""
    return [{"coupon": c["id"], "promotion_code": p["id"] if p else None} for c, p in found]


def invoice_discount(
    state: State, sub: dict[str, Any], subtotal: int, currency: str
) -> tuple[int, list[str]]:
    """What the subscription's discounts take off an invoice of `subtotal` now, and which applied.

    `once` applies to the first invoice with something to pay, `repeating` until its `end`, `forever`
    always. A discount that is over leaves the subscription (`customer.discount.deleted`; the caller's
    `customer.subscription.updated` shows it gone)."""
    off, applied = 0, []
    for discount_id in list(sub.get("discounts") or []):
        discount = state.objects.get(discount_id)
        if discount is None or subtotal <= 0:
            continue
        coupon = state.objects[discount["source"]["coupon"]]
        used_once = coupon["duration"] == "once" and discount["_used"]
        if used_once or (discount["end"] is not None and discount["end"] <= state.now()):
            sub["discounts"].remove(discount_id)
            state.emit("customer.discount.deleted", discount)
            continue
        taken = discount_off(coupon, subtotal - off, currency)
        if taken:
            off += taken
            applied.append(discount_id)
            discount["_used"] = True
    return off, applied


ROUTES = [
    ("POST", "/v1/coupons", create_coupon),
    ("GET", "/v1/coupons/{id}", retrieve_coupon),
    ("DELETE", "/v1/coupons/{id}", delete_coupon),
    ("POST", "/v1/promotion_codes", create_promotion_code),
    ("GET", "/v1/promotion_codes", list_promotion_codes),
    ("GET", "/v1/promotion_codes/{id}", retrieve_promotion_code),
    ("POST", "/v1/promotion_codes/{id}", update_promotion_code),
]
