"""What the pricing and account pages show: the catalog as plans, and a person's subscriptions as cards.

Pure functions over the catalog and the entitlements answer (the same body the apps read), so the pages
can never show a plan the API would not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from entitle.core.catalog import Catalog, Interval, Product, ProductType
from entitle.core.currencies import display_amount
from entitle.core.subscriptions import ENTITLING_STATUSES, Store, SubscriptionStatus
from entitle.core.transitions import LIVE_STATUSES

_PER = {Interval.DAY: "day", Interval.WEEK: "week", Interval.MONTH: "month", Interval.YEAR: "year"}
_ORDER = {Interval.DAY: 0, Interval.WEEK: 1, Interval.MONTH: 2, Interval.YEAR: 3}
_MONTHS_IN = {Interval.DAY: 12 / 365, Interval.WEEK: 12 / 52, Interval.MONTH: 1.0, Interval.YEAR: 12.0}
STORE_NAMES = {Store.STRIPE: "the web (card)", Store.APP_STORE: "the App Store", Store.PROMOTIONAL: "a gift"}


@dataclass
class PlanOption:
    """One way to pay for a plan: a product with a Stripe price."""

    product: Product
    price: str  # "$9.99"
    per: str  # "month", "3 months"
    trial_days: int | None
    saving: str | None = None  # "Save 17%" against the shortest interval
    current: bool = False


@dataclass
class OneTimeOption:
    """A product bought once (a lifetime unlock, a pack of credits), shown beside the plans."""

    product: Product
    price: str  # "$4.99", per unit
    # What one unit credits: "100 Credits".
    grants: list[str] = field(default_factory=list)
    # How many may be bought at once: 1..max_quantity (a picker when more than one).
    quantities: list[int] = field(default_factory=lambda: [1])
    # The person already owns it (a non-consumable is bought once).
    owned: bool = False
    # Live subscriptions granting what this lifetime product grants: the person should cancel them after
    # buying, and the page says so rather than let them pay twice.
    cancel_after: list[str] = field(default_factory=list)

    @property
    def lifetime(self) -> bool:
        return self.product.type is ProductType.NON_CONSUMABLE


@dataclass
class Plan:
    """Products that grant the same entitlements, shown side by side (monthly beside yearly)."""

    title: str
    description: str
    options: list[PlanOption] = field(default_factory=list)
    # Products of this plan with no web price (sold in the app only).
    app_only: list[Product] = field(default_factory=list)
    # One-time products granting the same (a lifetime unlock beside monthly and yearly, a credit pack).
    one_time: list[OneTimeOption] = field(default_factory=list)
    # What every product of this plan grants; a plan change stays within one such group.
    entitlements: tuple[str, ...] = ()
    # The person's Stripe subscription in this plan, which "Switch to this plan" changes.
    switch_from: str | None = None
    # The person pays for this plan in the App Store, so it is changed on the iPhone.
    on_app_store: bool = False


def _per(product: Product) -> str:
    assert product.stripe is not None
    assert product.stripe.interval is not None
    unit, count = _PER[product.stripe.interval], product.stripe.interval_count
    return unit if count == 1 else f"{count} {unit}s"


def _monthly(product: Product) -> float:
    assert product.stripe is not None and product.stripe.interval is not None
    return product.stripe.unit_amount / (_MONTHS_IN[product.stripe.interval] * product.stripe.interval_count)


def plans(
    catalog: Catalog, current_products: set[str], trials_had: frozenset[str] = frozenset()
) -> list[Plan]:
    """The catalog as plans; `trials_had` are the entitlements whose one trial the person has had, so
    products granting any of them are offered without their trial."""
    grouped: dict[tuple[str, ...], Plan] = {}
    for product in catalog.products.values():
        key = tuple(sorted(product.entitlements))
        if key not in grouped:
            described = [catalog.entitlements[e] for e in key if e in catalog.entitlements]
            grouped[key] = Plan(
                title=" + ".join(e.key.replace("_", " ").title() for e in described) or product.name,
                description="; ".join(e.description for e in described if e.description),
                entitlements=key,
            )
        plan = grouped[key]
        if product.stripe is None:
            plan.app_only.append(product)
            continue
        if product.is_one_time:
            plan.one_time.append(_one_time_option(catalog, product))
            continue
        plan.options.append(
            PlanOption(
                product=product,
                price=display_amount(product.stripe.unit_amount, product.stripe.currency),
                per=_per(product),
                trial_days=None if trials_had & set(product.entitlements) else product.stripe.trial_days,
                current=product.key in current_products,
            )
        )
    for plan in grouped.values():
        plan.options.sort(key=lambda o: (_ORDER[o.product.stripe.interval], o.product.stripe.interval_count))  # type: ignore[union-attr,index]
        if len(plan.options) > 1:
            base = plan.options[0]
            for option in plan.options[1:]:
                same_currency = option.product.stripe.currency == base.product.stripe.currency  # type: ignore[union-attr]
                saved = 1 - _monthly(option.product) / _monthly(base.product)
                if same_currency and saved >= 0.01:
                    option.saving = f"Save {round(saved * 100)}%"
    return list(grouped.values())


def _one_time_option(catalog: Catalog, product: Product) -> OneTimeOption:
    assert product.stripe is not None
    grants = []
    for key, amount in product.grants.items():
        currency = catalog.currencies.get(key)
        grants.append(f"{amount:,} {currency.name if currency else key}")
    return OneTimeOption(
        product=product,
        price=display_amount(product.stripe.unit_amount, product.stripe.currency),
        grants=grants,
        quantities=list(range(1, max(1, product.max_quantity) + 1)),
    )


def with_purchases(shown: list[Plan], catalog: Catalog, answer: dict[str, Any]) -> list[Plan]:
    """Marks lifetime products the person owns, and those a live subscription of theirs already grants
    (buying one then means cancelling the subscription, which the page says)."""
    owned = {
        purchase["product"]
        for purchase in answer.get("purchases", [])
        if purchase.get("product") and not purchase.get("refunded_at")
    }
    subscribed = [
        sub
        for sub in answer.get("subscriptions", [])
        if sub["product"] and SubscriptionStatus(sub["status"]) in LIVE_STATUSES
    ]
    for plan in shown:
        for option in plan.one_time:
            if not option.lifetime:
                continue
            option.owned = option.product.key in owned
            for sub in subscribed:
                if set(catalog.entitlements_of(sub["product"])) & set(option.product.entitlements):
                    product = catalog.product(sub["product"])
                    option.cancel_after.append(product.name if product else sub["product"])
    return shown


def with_subscriptions(shown: list[Plan], catalog: Catalog, answer: dict[str, Any]) -> list[Plan]:
    """Marks each plan with the live subscription the person has in it: only within a plan is another
    product a switch; a plan granting something else is an add-on, bought on its own."""
    for sub in answer.get("subscriptions", []):
        if not sub["product"] or SubscriptionStatus(sub["status"]) not in LIVE_STATUSES:
            continue
        group = tuple(sorted(catalog.entitlements_of(sub["product"])))
        for plan in shown:
            if plan.entitlements != group:
                continue
            if sub["store"] == Store.STRIPE.value:
                plan.switch_from = plan.switch_from or sub["id"]
            elif sub["store"] == Store.APP_STORE.value:
                plan.on_app_store = True
    return shown


def switch_options(catalog: Catalog, product_key: str | None) -> list[PlanOption]:
    """The other web products a subscription to `product_key` can change to: those granting the same."""
    group = tuple(sorted(catalog.entitlements_of(product_key)))
    if not group:
        return []
    return [
        option
        for plan in plans(catalog, {product_key} if product_key else set())
        if plan.entitlements == group
        for option in plan.options
        if not option.current
    ]


@dataclass
class SubscriptionCard:
    """A subscription as the account page shows it."""

    store: Store
    id: str
    product: str | None
    product_name: str
    status: SubscriptionStatus
    entitles: bool
    will_renew: bool
    period_end: str | None
    grace_period_ends_at: str | None
    card: dict[str, str] | None
    management_url: str | None
    # The answer's `discount` (a promotion code on a Stripe subscription), as "LAUNCH20: 20% off".
    discount: str | None = None
    discount_ends_at: str | None = None

    @property
    def store_name(self) -> str:
        return STORE_NAMES[self.store]

    @property
    def billing_issue(self) -> bool:
        return self.status in (
            SubscriptionStatus.PAST_DUE,
            SubscriptionStatus.IN_GRACE_PERIOD,
            SubscriptionStatus.IN_BILLING_RETRY,
        )


def subscription_cards(catalog: Catalog, answer: dict[str, Any]) -> list[SubscriptionCard]:
    """The account's live subscriptions (ended ones are history, not a plan), newest first."""
    cards = []
    for sub in answer.get("subscriptions", []):
        status = SubscriptionStatus(sub["status"])
        if status not in LIVE_STATUSES:
            continue
        product = catalog.products.get(sub["product"] or "")
        cards.append(
            SubscriptionCard(
                store=Store(sub["store"]),
                id=sub["id"],
                product=sub["product"],
                product_name=product.name if product else (sub["product"] or "Unknown product"),
                status=status,
                entitles=status in ENTITLING_STATUSES,
                will_renew=bool(sub["will_renew"]),
                period_end=sub["current_period_end"],
                grace_period_ends_at=sub["grace_period_ends_at"],
                card=sub.get("payment_method"),
                management_url=sub.get("management_url"),
                discount=discount_sentence(sub.get("discount")),
                discount_ends_at=(sub.get("discount") or {}).get("ends_at"),
            )
        )
    return cards


def discount_sentence(discount: dict[str, Any] | None) -> str | None:
    """The discount in words, as "LAUNCH20: 20% off" or "$5.00 off"; the template adds when it ends."""
    if not discount:
        return None
    if discount.get("percent_off") is not None:
        off = f"{discount['percent_off']:g}% off"
    elif discount.get("amount_off") is not None and discount.get("currency"):
        off = f"{display_amount(int(discount['amount_off']), str(discount['currency']))} off"
    else:
        return None
    if discount.get("duration") == "forever":
        off += " every payment"
    label = discount.get("code") or discount.get("name")
    return f"{label}: {off}" if label else off


def gifts(answer: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Entitlements the account has through a promotional grant."""
    return [
        (key, value)
        for key, value in answer.get("entitlements", {}).items()
        if value["active"] and value["store"] == Store.PROMOTIONAL.value
    ]


def paying_products(answer: dict[str, Any], store: Store | None = None) -> set[str]:
    return {
        sub["product"]
        for sub in answer.get("subscriptions", [])
        if sub["product"]
        and SubscriptionStatus(sub["status"]) in LIVE_STATUSES
        and (store is None or sub["store"] == store.value)
    }
