"""`entitle catalog push`: make Stripe's products and prices match the catalog, idempotently.

Prices are found by lookup key, never by name or id, so running the push twice changes nothing the
second time. A price's amount, currency and interval cannot change at Stripe; when the catalog
changes them, a new price takes over the lookup key (`transfer_lookup_key`) and the old price is
archived, so existing subscribers keep paying what they signed up for while new ones get the new
price. Every price entitle creates names its catalog product in `metadata.entitle_product`, which
keeps old subscribers mapped after their price loses the lookup key.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from entitle.core.catalog import Catalog, Product, StripePrice
from entitle.providers.stripe.client import StripeGateway


@dataclass(frozen=True)
class PushResult:
    product: str
    lookup_key: str
    # created | unchanged | renamed | repriced | reactivated
    action: str
    price_id: str


def _price_params(product: Product, price: StripePrice, stripe_product: str) -> dict[str, Any]:
    params: dict[str, Any] = {
        "product": stripe_product,
        "unit_amount": price.unit_amount,
        "currency": price.currency,
        "lookup_key": price.lookup_key,
        "nickname": product.name,
        "metadata": {"entitle_product": product.key},
    }
    # A price without `recurring` is a one-time price: what payment-mode Checkout sells.
    if price.interval is not None:
        params["recurring"] = {"interval": price.interval.value, "interval_count": price.interval_count}
    return params


def _same_terms(existing: dict[str, Any], price: StripePrice) -> bool:
    recurring = existing.get("recurring") or {}
    same_amount = (
        existing.get("unit_amount") == price.unit_amount
        and str(existing.get("currency", "")).lower() == price.currency.lower()
    )
    if price.interval is None:
        return same_amount and not recurring
    return (
        same_amount
        and recurring.get("interval") == price.interval.value
        and int(recurring.get("interval_count") or 1) == price.interval_count
    )


def _key(*parts: object) -> str:
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()[:24]
    return f"entitle-catalog-{digest}"


async def push_catalog(gateway: StripeGateway, catalog: Catalog) -> list[PushResult]:
    sold = [p for p in catalog.products.values() if p.stripe is not None]
    existing = {
        price["lookup_key"]: price
        for price in await gateway.prices_by_lookup_keys([p.stripe.lookup_key for p in sold if p.stripe])
    }
    results: list[PushResult] = []
    for product in sold:
        assert product.stripe is not None
        terms = product.stripe
        current = existing.get(terms.lookup_key)
        if current is None:
            # Idempotency keys derived from the catalog entry: a push retried after a crash reuses
            # what the first attempt created instead of creating a second product.
            created_product = await gateway.create_product(
                {"name": product.name, "metadata": {"entitle_product": product.key}},
                idempotency_key=_key("product", product.key, product.name),
            )
            price = await gateway.create_price(
                _price_params(product, terms, created_product["id"]),  # type: ignore[arg-type]
                idempotency_key=_key("price", product.key, terms),
            )
            results.append(PushResult(product.key, terms.lookup_key, "created", price["id"]))
            continue
        stripe_product = current["product"]
        product_id = stripe_product["id"] if isinstance(stripe_product, dict) else str(stripe_product)
        action = "unchanged"
        if isinstance(stripe_product, dict) and stripe_product.get("name") != product.name:
            await gateway.update_product(product_id, {"name": product.name})
            action = "renamed"
        price_id = str(current["id"])
        if not _same_terms(current, terms):
            params = _price_params(product, terms, product_id)
            params["transfer_lookup_key"] = True
            # The key names the price being replaced: going back to earlier terms (A -> B -> A within
            # Stripe's 24 h key memory) must create a price, not replay the first A's creation,
            # which would leave the lookup key on B and then archive B.
            key = _key("price", product.key, terms, price_id)
            price = await gateway.create_price(params, idempotency_key=key)  # type: ignore[arg-type]
            await gateway.update_price(price_id, {"active": False})
            price_id, action = str(price["id"]), "repriced"
        elif current.get("active") is False:
            # Archived in the dashboard while the catalog still sells it: Checkout would find no
            # active price and refuse every purchase.
            await gateway.update_price(price_id, {"active": True})
            action = "reactivated"
        results.append(PushResult(product.key, terms.lookup_key, action, price_id))
    return results
