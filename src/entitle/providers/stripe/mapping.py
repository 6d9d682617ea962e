"""Stripe subscription objects -> core `SubscriptionState`.

Decisions this module owns:
- Status. trialing and active entitle; past_due entitles for `stripe_grace_days` counted from the
  start of the unpaid period (the renewal moment, when Stripe made its first attempt), then stops
  while Stripe may still be retrying; unpaid, canceled and incomplete_expired are EXPIRED (REVOKED
  when the last payment was refunded in full); incomplete never entitles; status `paused` is PAUSED.
  Paused *collection* (`pause_collection`) is not a pause of the service: Stripe keeps the
  subscription `active` and documents that the customer keeps access while it collects nothing
  (docs.stripe.com/billing/subscriptions/pause-payment), so it maps like any active subscription.
  A renewing subscription set to cancel (`cancel_at_period_end`, or `cancel_at` at or before the
  period end) is CANCELED_AT_PERIOD_END.
- Trial. `trial_start` (kept by Stripe after the trial ends) is the trial the account has had.
- Period. Since API 2025-03-31 the period lives on the items; the subscription's is the latest item end.
- Product. The catalog product whose Stripe lookup key the price carries. A price that lost its
  lookup key to a newer price (`transfer_lookup_key` after an amount change) still names its product
  in `metadata.entitle_product`, which `entitle catalog push` writes on every price it creates. With
  several items (an add-on next to the plan, added in the dashboard) the first item whose price is a
  catalog product decides, whatever its position.
- Vendor timestamp. A Stripe subscription has no "updated" field, and an event's `created` is the
  time of the event, not of the snapshot we act on. Every handler re-reads the subscription from
  Stripe, inside the per-customer lock, so the moment of that read is when the state was true: the
  caller passes it as `read_at`. Reads under the lock happen in order, so a later read always
  carries a later timestamp (on one clock; keep workers' clocks synced) and a stale one can never
  overwrite it.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from entitle.core.catalog import Catalog
from entitle.core.subscriptions import Environment, Store, SubscriptionState, SubscriptionStatus

_ENDED = frozenset({"canceled", "unpaid", "incomplete_expired"})


def subscription_state(
    sub: Mapping[str, Any],
    *,
    account_id: uuid.UUID,
    catalog: Catalog,
    read_at: datetime,
    grace_days: int,
    refunded: bool = False,
) -> SubscriptionState:
    """The core state of Stripe subscription `sub` as read at `read_at`."""
    price = catalog_price(sub, catalog)
    period_start, period_end = period_of(sub)
    status, grace_ends = _status(sub, period_start, period_end, read_at, grace_days, refunded)
    return SubscriptionState(
        store=Store.STRIPE,
        store_subscription_id=str(sub["id"]),
        account_id=account_id,
        product=product_key(price, catalog) or _named_product(sub, catalog),
        store_product_id=str(price.get("id") or ""),
        status=status,
        current_period_end=period_end,
        will_renew=_will_renew(sub, period_end),
        environment=Environment.PRODUCTION if sub.get("livemode") else Environment.SANDBOX,
        vendor_updated_at=read_at,
        raw=dict(sub),
        store_customer_id=object_id(sub.get("customer")),
        grace_period_ends_at=grace_ends,
        payment_method=payment_method_summary(sub),
        trial_started_at=_trial_start(sub),
    )


def _trial_start(sub: Mapping[str, Any]) -> datetime | None:
    """When the subscription's trial began; Stripe keeps `trial_start` after the trial ends."""
    start = sub.get("trial_start")
    return from_timestamp(start) if isinstance(start, int | float) and not isinstance(start, bool) else None


def _status(
    sub: Mapping[str, Any],
    period_start: datetime | None,
    period_end: datetime | None,
    read_at: datetime,
    grace_days: int,
    refunded: bool,
) -> tuple[SubscriptionStatus, datetime | None]:
    status = sub.get("status")
    if status in _ENDED:
        return (SubscriptionStatus.REVOKED if refunded else SubscriptionStatus.EXPIRED), None
    if status == "incomplete":
        return SubscriptionStatus.INCOMPLETE, None
    if status == "paused":
        return SubscriptionStatus.PAUSED, None
    if status == "past_due":
        anchor = period_start or read_at
        grace_ends = anchor + timedelta(days=grace_days)
        if read_at < grace_ends:
            return SubscriptionStatus.IN_GRACE_PERIOD, grace_ends
        return SubscriptionStatus.PAST_DUE, None
    if status in ("active", "trialing"):
        if not _will_renew(sub, period_end):
            return SubscriptionStatus.CANCELED_AT_PERIOD_END, None
        return (SubscriptionStatus.TRIALING if status == "trialing" else SubscriptionStatus.ACTIVE), None
    # A status this code does not know yet grants nothing until someone decides what it means.
    return SubscriptionStatus.EXPIRED, None


def _will_renew(sub: Mapping[str, Any], period_end: datetime | None) -> bool:
    if sub.get("status") not in ("active", "trialing", "past_due") or sub.get("cancel_at_period_end"):
        return False
    cancel_at = sub.get("cancel_at")
    return not (cancel_at and period_end is not None and from_timestamp(cancel_at) <= period_end)


def first_price(sub: Mapping[str, Any]) -> Mapping[str, Any]:
    items = (sub.get("items") or {}).get("data") or []
    return _price_of(items[0]) if items else {}


def catalog_item(sub: Mapping[str, Any], catalog: Catalog) -> Mapping[str, Any] | None:
    """The subscription item whose price is a catalog product (the plan), if any."""
    for item in (sub.get("items") or {}).get("data") or []:
        if product_key(_price_of(item), catalog) is not None:
            return dict(item)
    return None


def catalog_price(sub: Mapping[str, Any], catalog: Catalog) -> Mapping[str, Any]:
    item = catalog_item(sub, catalog)
    return _price_of(item) if item is not None else first_price(sub)


def _price_of(item: Mapping[str, Any]) -> Mapping[str, Any]:
    price = item.get("price") or {}
    return price if isinstance(price, Mapping) else {"id": price}


def period_of(sub: Mapping[str, Any]) -> tuple[datetime | None, datetime | None]:
    """(start, end) of the current period, from the items (the latest item end wins).

    API versions before 2025-03-31 kept the period on the subscription itself; an object in that shape
    (an older webhook endpoint version, a stand-in) still reads right.
    """
    items = (sub.get("items") or {}).get("data") or []
    ends = [i["current_period_end"] for i in items if i.get("current_period_end")]
    starts = [i["current_period_start"] for i in items if i.get("current_period_start")]
    ends = ends or ([sub["current_period_end"]] if sub.get("current_period_end") else [])
    starts = starts or ([sub["current_period_start"]] if sub.get("current_period_start") else [])
    return (
        from_timestamp(max(starts)) if starts else None,
        from_timestamp(max(ends)) if ends else None,
    )


def _named_product(sub: Mapping[str, Any], catalog: Catalog) -> str | None:
    """The product entitle wrote on the subscription at checkout: the last resort when the price names
    none (a price created by hand in the dashboard, or an integration that drops lookup keys)."""
    named = (sub.get("metadata") or {}).get("entitle_product")
    return str(named) if named and catalog.product(named) is not None else None


def product_key(price: Mapping[str, Any], catalog: Catalog) -> str | None:
    lookup_key = price.get("lookup_key")
    if lookup_key and (product := catalog.product_by_lookup_key(lookup_key)) is not None:
        return product.key
    named = (price.get("metadata") or {}).get("entitle_product")
    if named and catalog.product(named) is not None:
        return str(named)
    return None


def payment_method_summary(sub: Mapping[str, Any]) -> dict[str, str] | None:
    """Brand and last 4 of the subscription's default card (when expanded), for the listing."""
    pm = sub.get("default_payment_method")
    if not isinstance(pm, Mapping):
        return None
    card = pm.get("card") or {}
    if not card:
        return {"type": str(pm.get("type") or "unknown")}
    return {"type": "card", "brand": str(card.get("brand")), "last4": str(card.get("last4"))}


def object_id(value: Any) -> str | None:
    """The id of a field that is either an id or an expanded object."""
    if isinstance(value, Mapping):
        found = value.get("id")
        return str(found) if found else None
    return str(value) if value else None


# Metadata on a visitor's Checkout Session, its subscription and PaymentIntent (see guests.py).
GUEST_KEY = "entitle_guest"


def is_guest_object(obj: Mapping[str, Any]) -> bool:
    """Whether entitle made this object for a visitor's Checkout (no account named anywhere on it)."""
    return bool((obj.get("metadata") or {}).get(GUEST_KEY))


def account_id_hint(obj: Mapping[str, Any]) -> uuid.UUID | None:
    """The account id entitle wrote in the object's metadata, if any and well formed."""
    raw = (obj.get("metadata") or {}).get("account_id")
    try:
        return uuid.UUID(str(raw)) if raw else None
    except ValueError:
        return None


def from_timestamp(value: int | float) -> datetime:
    return datetime.fromtimestamp(value, UTC)
