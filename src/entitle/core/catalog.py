"""The catalog: entitlements, the products that grant them, and each product's identity in every store.

The catalog is read once at start-up from a TOML file (`ENTITLE_CATALOG`; format in docs/catalog.md) and
validated as a whole, so that a typo stops `entitle serve` with one sentence naming the file and the
problem instead of surfacing weeks later as a purchase that unlocks nothing. Everything after loading is
frozen and looked up by the identity a store reports: a Stripe price `lookup_key`, an App Store
`productId`. Stores other than Stripe only need a product id, so they share one generic table
(`PRODUCT_ID_STORES`, every `Store` but Stripe and promotional grants): adding Google Play's name to
`core.subscriptions.Store` is all the catalog needs.

`[offers.<name>]` names an App Store promotional offer and who may have it (`OfferEligibility`); the
rule is vendor-free and decided over every store's subscriptions (`services.access.offers`).
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from importlib import resources
from typing import Any

from entitle.core.currencies import is_currency
from entitle.core.subscriptions import Store
from entitle.errors import EntitleError


class CatalogError(EntitleError):
    """The catalog file cannot be used; the message is one sentence naming the file and the problem."""

    status_code = 500
    default_code = "invalid_catalog"


class ProductType(StrEnum):
    # Renews every period until cancelled; in Stripe a price with an `interval`.
    SUBSCRIPTION = "subscription"
    # Bought once, grants its entitlements for good (a lifetime unlock).
    NON_CONSUMABLE = "non_consumable"
    # Bought as often as wanted; each purchase credits an amount of a currency (`grants`).
    CONSUMABLE = "consumable"
    # Bought once per use, grants its entitlements for `duration_days` from the purchase (a pass).
    NON_RENEWING = "non_renewing"


# Everything but a subscription is paid once: a one-time Stripe price, an App Store one-time product.
ONE_TIME_TYPES = frozenset({ProductType.NON_CONSUMABLE, ProductType.CONSUMABLE, ProductType.NON_RENEWING})


class OfferEligibility(StrEnum):
    # Had a paid subscription to the product's entitlements, in any store, and has none now (win-back).
    LAPSED = "lapsed"
    # Never paid for a subscription to the product's entitlements and has none now.
    NEW = "new"
    # Has a subscription to the product's entitlements now (retention, upgrades).
    SUBSCRIBED = "subscribed"
    # Every signed-in account.
    ANYONE = "anyone"


class Interval(StrEnum):
    # Stripe's recurring intervals; the App Store's durations are set in App Store Connect, not here.
    DAY = "day"
    WEEK = "week"
    MONTH = "month"
    YEAR = "year"


# Stripe refuses a billing period longer than one year: https://docs.stripe.com/api/prices/create
MAX_INTERVAL_COUNT = {Interval.DAY: 365, Interval.WEEK: 52, Interval.MONTH: 12, Interval.YEAR: 1}
# Stripe's limit on subscription trials.
MAX_TRIAL_DAYS = 730
# Stripe Checkout's own ceiling on an adjustable quantity is 999,999; a pack of a thousand is plenty.
MAX_QUANTITY = 1000
# A pass longer than ten years is a lifetime unlock; say so with `non_consumable` instead.
MAX_DURATION_DAYS = 3650
# Per purchase or period; keeps every balance comfortably inside a 64-bit integer.
MAX_GRANT = 1_000_000_000
# Stores whose catalog entry is just `{ product_id = "..." }`.
PRODUCT_ID_STORES = tuple(store.value for store in Store if store not in (Store.STRIPE, Store.PROMOTIONAL))

_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# Apple allows letters, digits, underscores and periods in a product id.
_APP_STORE_PRODUCT_ID = re.compile(r"^[A-Za-z0-9._]{1,255}$")
# A promotional offer's identifier in App Store Connect. Only these characters: the older signature joins
# its fields with U+2063, which an identifier must never contain.
_APP_STORE_OFFER_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


@dataclass(frozen=True)
class Entitlement:
    key: str
    description: str = ""


@dataclass(frozen=True)
class Currency:
    """An in-app currency (credits, coins, minutes) that products grant and the app's backend spends."""

    key: str
    name: str


@dataclass(frozen=True)
class StripePrice:
    """How the product is sold on the web; `entitle catalog push` creates the price by `lookup_key`."""

    lookup_key: str
    # In the currency's smallest unit (cents), as Stripe counts it.
    unit_amount: int
    currency: str
    # None for a one-time price (every product type but `subscription`).
    interval: Interval | None
    interval_count: int = 1
    trial_days: int | None = None
    # False: the trial starts without a payment method and ends, uncharged, unless one is added.
    trial_requires_card: bool = True

    @property
    def is_recurring(self) -> bool:
        return self.interval is not None


@dataclass(frozen=True)
class Product:
    key: str
    name: str
    entitlements: tuple[str, ...]
    stripe: StripePrice | None = None
    # Store name ("app_store") -> that store's product id.
    store_product_ids: Mapping[str, str] = field(default_factory=dict)
    type: ProductType = ProductType.SUBSCRIPTION
    # Currency key -> amount credited per purchase (per unit of quantity), or per paid period of a
    # subscription.
    grants: Mapping[str, int] = field(default_factory=dict)
    # How many may be bought at once (packs); 1 for everything but consumables.
    max_quantity: int = 1
    # How long a `non_renewing` purchase grants its entitlements.
    duration_days: int | None = None

    @property
    def is_one_time(self) -> bool:
        return self.type in ONE_TIME_TYPES

    @property
    def app_store_product_id(self) -> str | None:
        return self.store_product_ids.get("app_store")


@dataclass(frozen=True)
class Offer:
    """A promotional offer set up in a store, and the rule that says which accounts may have it."""

    key: str
    # The catalog product (an auto-renewable subscription sold in the App Store) the offer discounts.
    product: str
    # The offer's identifier in App Store Connect (StoreKit's `Product.SubscriptionOffer.id`).
    app_store_offer_id: str
    eligible: OfferEligibility


@dataclass(frozen=True)
class Catalog:
    # Where the catalog was read from; named in every error about it.
    source: str
    entitlements: Mapping[str, Entitlement]
    products: Mapping[str, Product]
    _by_store_id: Mapping[tuple[str, str], Product] = field(repr=False, compare=False, default_factory=dict)
    currencies: Mapping[str, Currency] = field(default_factory=dict)
    offers: Mapping[str, Offer] = field(default_factory=dict)

    def product(self, key: str) -> Product | None:
        return self.products.get(key)

    def product_by_store_id(self, store: str, store_product_id: str) -> Product | None:
        """The product a store knows as `store_product_id` (for Stripe, the price lookup key)."""
        return self._by_store_id.get((store, store_product_id))

    def product_by_lookup_key(self, lookup_key: str) -> Product | None:
        return self.product_by_store_id("stripe", lookup_key)

    def product_by_app_store_id(self, product_id: str) -> Product | None:
        return self.product_by_store_id("app_store", product_id)

    def entitlements_of(self, product_key: str | None) -> tuple[str, ...]:
        """The entitlements a product grants; none for a product the catalog does not know."""
        product = self.products.get(product_key) if product_key is not None else None
        return product.entitlements if product is not None else ()

    def products_granting(self, entitlement: str) -> tuple[Product, ...]:
        return tuple(p for p in self.products.values() if entitlement in p.entitlements)

    def app_store_offer(self, product_id: str, offer_id: str) -> Offer | None:
        """The offer App Store Connect calls `offer_id` on the App Store product `product_id`, if any."""
        product = self.product_by_app_store_id(product_id)
        if product is None:
            return None
        for offer in self.offers.values():
            if offer.product == product.key and offer.app_store_offer_id == offer_id:
                return offer
        return None


class _Invalid(Exception):
    """A problem found while parsing; `parse_catalog` adds the file name."""


def packaged_catalog_text() -> str:
    return resources.files("entitle").joinpath("data/catalog.toml").read_text(encoding="utf-8")


def load_catalog(path: str | os.PathLike[str] | None = None) -> Catalog:
    """Read and validate the catalog at `path`, or the sample shipped in the package when `path` is None."""
    if path is None:
        return parse_catalog(packaged_catalog_text(), source="entitle/data/catalog.toml (packaged sample)")
    source = os.fspath(path)
    try:
        with open(source, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise CatalogError(f"Catalog {source} cannot be read: {exc.strerror or exc}.") from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CatalogError(f"Catalog {source} is not UTF-8 text (bad byte at offset {exc.start}).") from exc
    return parse_catalog(text, source=source)


def parse_catalog(text: str, *, source: str = "<catalog>") -> Catalog:
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib's message already ends with "(at line N, column M)".
        raise CatalogError(f"Catalog {source} is not valid TOML: {exc}.") from None
    try:
        return _build(document, source)
    except _Invalid as exc:
        raise CatalogError(f"Catalog {source}: {exc}.") from None


def _build(document: dict[str, Any], source: str) -> Catalog:
    _check_fields(
        document, "the catalog", required=("entitlements", "products"), optional=("currencies", "offers")
    )
    entitlements_table = _table(document["entitlements"], "[entitlements]")
    if not entitlements_table:
        raise _Invalid("[entitlements] defines no entitlement")
    entitlements: dict[str, Entitlement] = {}
    for key, value in entitlements_table.items():
        where = f"[entitlements.{key}]"
        _check_key(key, where)
        table = _table(value, where)
        _check_fields(table, where, required=(), optional=("description",))
        description = _string(table, "description", where) if "description" in table else ""
        entitlements[key] = Entitlement(key=key, description=description)

    currencies: dict[str, Currency] = {}
    for key, value in _table(document.get("currencies", {}), "[currencies]").items():
        where = f"[currencies.{key}]"
        _check_key(key, where)
        if key in entitlements:
            raise _Invalid(f"{where} has the name of an entitlement; give the currency its own name")
        table = _table(value, where)
        _check_fields(table, where, required=("name",), optional=())
        currencies[key] = Currency(key=key, name=_string(table, "name", where))

    products: dict[str, Product] = {}
    by_store_id: dict[tuple[str, str], Product] = {}
    for key, value in _table(document["products"], "[products]").items():
        product = _product(key, value, entitlements, currencies)
        for store_id in _store_ids(product):
            other = by_store_id.get(store_id)
            if other is not None:
                label = "Stripe lookup key" if store_id[0] == "stripe" else f"{store_id[0]} product id"
                raise _Invalid(f'products "{other.key}" and "{key}" share the {label} "{store_id[1]}"')
            by_store_id[store_id] = product
        products[key] = product
    offers: dict[str, Offer] = {}
    for key, value in _table(document.get("offers", {}), "[offers]").items():
        offer = _offer(key, value, products)
        for twin in offers.values():
            if (twin.product, twin.app_store_offer_id) == (offer.product, offer.app_store_offer_id):
                raise _Invalid(
                    f'offers "{twin.key}" and "{key}" are both App Store offer '
                    f'"{offer.app_store_offer_id}" of product "{offer.product}"'
                )
        offers[key] = offer
    return Catalog(
        source=source,
        entitlements=entitlements,
        products=products,
        _by_store_id=by_store_id,
        currencies=currencies,
        offers=offers,
    )


def _offer(key: str, value: Any, products: Mapping[str, Product]) -> Offer:
    where = f"[offers.{key}]"
    _check_key(key, where)
    table = _table(value, where)
    _check_fields(table, where, required=("product", "app_store_offer_id", "eligible"), optional=())
    product_key = _string(table, "product", where)
    product = products.get(product_key)
    if product is None:
        raise _Invalid(f'{where} names product "{product_key}", which [products] does not define')
    if product.type is not ProductType.SUBSCRIPTION or product.app_store_product_id is None:
        # Apple's promotional offers exist only for auto-renewable subscriptions.
        raise _Invalid(
            f'{where} product "{product_key}" must be a subscription sold in the App Store '
            "(with app_store = {...})"
        )
    offer_id = _string(table, "app_store_offer_id", where)
    if not _APP_STORE_OFFER_ID.match(offer_id):
        raise _Invalid(
            f'{where} app_store_offer_id "{offer_id}" must be 1-64 letters, digits, "_", "." or "-"'
        )
    eligible = _string(table, "eligible", where)
    if eligible not in OfferEligibility.__members__.values():
        names = ", ".join(rule.value for rule in OfferEligibility)
        raise _Invalid(f'{where} eligible "{eligible}" is not one of {names}')
    return Offer(
        key=key, product=product_key, app_store_offer_id=offer_id, eligible=OfferEligibility(eligible)
    )


def _store_ids(product: Product) -> list[tuple[str, str]]:
    ids = [(store, product_id) for store, product_id in product.store_product_ids.items()]
    if product.stripe is not None:
        ids.insert(0, ("stripe", product.stripe.lookup_key))
    return ids


def _product(
    key: str, value: Any, entitlements: Mapping[str, Entitlement], currencies: Mapping[str, Currency]
) -> Product:
    where = f"[products.{key}]"
    _check_key(key, where)
    table = _table(value, where)
    _check_fields(
        table,
        where,
        required=("name",),
        optional=(
            "entitlements",
            "type",
            "grants",
            "max_quantity",
            "duration_days",
            "stripe",
            *PRODUCT_ID_STORES,
        ),
    )
    raw_type = _string(table, "type", where) if "type" in table else ProductType.SUBSCRIPTION.value
    if raw_type not in ProductType.__members__.values():
        names = ", ".join(t.value for t in ProductType)
        raise _Invalid(f'{where} type "{raw_type}" is not one of {names}')
    product_type = ProductType(raw_type)
    granted = table.get("entitlements", [])
    if not isinstance(granted, list) or not all(isinstance(e, str) for e in granted):
        raise _Invalid(f'{where} "entitlements" must be a list of entitlement names')
    for name in granted:
        if name not in entitlements:
            raise _Invalid(f'product "{key}" grants unknown entitlement "{name}"')
    if len(set(granted)) != len(granted):
        raise _Invalid(f'product "{key}" lists an entitlement twice')
    grants = _grants(table.get("grants", {}), f"{where} grants", currencies)
    if product_type is ProductType.CONSUMABLE:
        if granted:
            raise _Invalid(
                f"{where} is a consumable, which is used up: it grants currency (grants), not entitlements"
            )
        if not grants:
            raise _Invalid(
                f"{where} is a consumable and must grant an amount of a currency (grants = {{...}})"
            )
    elif "entitlements" not in table:
        raise _Invalid(f'{where} is missing "entitlements"')
    elif not granted:
        raise _Invalid(f'{where} "entitlements" must be a non-empty list of entitlement names')
    max_quantity = _integer(table, "max_quantity", where) if "max_quantity" in table else 1
    if not 1 <= max_quantity <= MAX_QUANTITY:
        raise _Invalid(f"{where} max_quantity must be between 1 and {MAX_QUANTITY}, not {max_quantity}")
    if max_quantity > 1 and product_type is not ProductType.CONSUMABLE:
        raise _Invalid(
            f"{where} max_quantity above 1 is for consumables (packs); a {raw_type} is bought once"
        )
    duration_days = _integer(table, "duration_days", where) if "duration_days" in table else None
    if product_type is ProductType.NON_RENEWING:
        if duration_days is None:
            raise _Invalid(f'{where} is non_renewing and must say how long it lasts ("duration_days")')
        if not 1 <= duration_days <= MAX_DURATION_DAYS:
            raise _Invalid(
                f"{where} duration_days must be between 1 and {MAX_DURATION_DAYS}, not {duration_days}"
            )
    elif duration_days is not None:
        raise _Invalid(f'{where} "duration_days" is only for non_renewing products')
    stripe = _stripe_price(table["stripe"], f"{where} stripe", product_type) if "stripe" in table else None
    store_ids: dict[str, str] = {}
    for store in PRODUCT_ID_STORES:
        if store in table:
            store_ids[store] = _store_product_id(table[store], f"{where} {store}")
    return Product(
        key=key,
        name=_string(table, "name", where),
        entitlements=tuple(granted),
        stripe=stripe,
        store_product_ids=store_ids,
        type=product_type,
        grants=grants,
        max_quantity=max_quantity,
        duration_days=duration_days,
    )


def _grants(value: Any, where: str, currencies: Mapping[str, Currency]) -> dict[str, int]:
    table = _table(value, where)
    grants: dict[str, int] = {}
    for currency, amount in table.items():
        if currency not in currencies:
            raise _Invalid(f'{where} names currency "{currency}", which [currencies] does not define')
        if not isinstance(amount, int) or isinstance(amount, bool) or not 1 <= amount <= MAX_GRANT:
            raise _Invalid(
                f'{where} "{currency}" must be a whole number from 1 to {MAX_GRANT:,}, not {amount!r}'
            )
        grants[currency] = amount
    return grants


def _stripe_price(value: Any, where: str, product_type: ProductType) -> StripePrice:
    table = _table(value, where)
    recurring = product_type is ProductType.SUBSCRIPTION
    _check_fields(
        table,
        where,
        required=("lookup_key", "unit_amount", "currency", *(("interval",) if recurring else ())),
        optional=("interval_count", "trial_days", "trial_requires_card")
        if recurring
        else ("trial_requires_card",),
    )
    lookup_key = _string(table, "lookup_key", where)
    if len(lookup_key) > 200:
        raise _Invalid(f"{where} lookup_key is longer than Stripe's 200 characters")
    unit_amount = _integer(table, "unit_amount", where)
    if unit_amount <= 0:
        raise _Invalid(
            f"{where} unit_amount must be a positive amount in the smallest currency unit, not {unit_amount}"
        )
    currency = _string(table, "currency", where)
    if not is_currency(currency):
        hint = f' (write "{currency.lower()}")' if is_currency(currency.lower()) else ""
        raise _Invalid(f'{where} currency "{currency}" is not a lowercase ISO 4217 currency code{hint}')
    if not recurring:
        if "trial_requires_card" in table:
            raise _Invalid(
                f'{where} "trial_requires_card" is only for subscriptions (a one-time price has no trial)'
            )
        return StripePrice(lookup_key, unit_amount, currency, None)
    raw_interval = _string(table, "interval", where)
    if raw_interval not in Interval.__members__.values():
        raise _Invalid(f'{where} interval "{raw_interval}" is not one of day, week, month, year')
    interval = Interval(raw_interval)
    interval_count = _integer(table, "interval_count", where) if "interval_count" in table else 1
    if not 1 <= interval_count <= MAX_INTERVAL_COUNT[interval]:
        raise _Invalid(
            f"{where} interval_count must be between 1 and {MAX_INTERVAL_COUNT[interval]} for interval "
            f'"{interval}" (Stripe bills at least once a year), not {interval_count}'
        )
    trial_days = _integer(table, "trial_days", where) if "trial_days" in table else None
    if trial_days is not None and not 1 <= trial_days <= MAX_TRIAL_DAYS:
        raise _Invalid(f"{where} trial_days must be between 1 and {MAX_TRIAL_DAYS}, not {trial_days}")
    requires_card = True
    if "trial_requires_card" in table:
        requires_card = table["trial_requires_card"]
        if not isinstance(requires_card, bool):
            raise _Invalid(f'{where} "trial_requires_card" must be true or false, not {requires_card!r}')
        if trial_days is None:
            raise _Invalid(f'{where} "trial_requires_card" needs a trial: set "trial_days" too')
    return StripePrice(
        lookup_key,
        unit_amount,
        currency,
        interval,
        interval_count,
        trial_days,
        trial_requires_card=requires_card,
    )


def _store_product_id(value: Any, where: str) -> str:
    table = _table(value, where)
    _check_fields(table, where, required=("product_id",), optional=())
    product_id = _string(table, "product_id", where)
    if not _APP_STORE_PRODUCT_ID.match(product_id):
        raise _Invalid(f'{where} product_id "{product_id}" may hold only letters, digits, "_" and "."')
    return product_id


def _check_key(key: str, where: str) -> None:
    if not _KEY.match(key):
        raise _Invalid(f"{where} has a name that is not 1-64 letters, digits, '_', '.' or '-'")


def _table(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Invalid(f"{where} must be a table")
    return value


def _check_fields(
    table: Mapping[str, Any], where: str, *, required: tuple[str, ...], optional: tuple[str, ...]
) -> None:
    for name in required:
        if name not in table:
            raise _Invalid(f'{where} is missing "{name}"')
    for name in table:
        if name not in required and name not in optional:
            raise _Invalid(f'{where} has unknown field "{name}"')


def _string(table: Mapping[str, Any], name: str, where: str) -> str:
    value = table[name]
    if not isinstance(value, str) or not value.strip():
        raise _Invalid(f'{where} "{name}" must be a non-empty string')
    return value


def _integer(table: Mapping[str, Any], name: str, where: str) -> int:
    value = table[name]
    # bool is an int in Python; `unit_amount = true` is still a mistake.
    if not isinstance(value, int) or isinstance(value, bool):
        raise _Invalid(f'{where} "{name}" must be a whole number, not {value!r}')
    return value
