"""Products and prices, with lookup keys and `transfer_lookup_key` as Stripe implements them."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from .wire import StandinError, as_bool, as_int, as_list, list_page, require

if TYPE_CHECKING:
    from .state import State


def create_product(state: State, params: dict[str, Any]) -> dict[str, Any]:
    if params.get("id") and params["id"] in state.objects:
        raise StandinError(400, "Product already exists.", code="resource_already_exists", param="id")
    product = state.add(
        {
            "id": params.get("id"),
            "object": "product",
            "active": as_bool(params.get("active", "true"), "active"),
            "default_price": None,
            "description": params.get("description"),
            "images": [],
            "marketing_features": [],
            "metadata": params.get("metadata") or {},
            "name": require(params, "name"),
            "tax_code": None,
            "type": "service",
            "unit_label": None,
            "updated": state.now(),
            "url": None,
        },
        "prod",
        id_length=14,
    )
    state.emit("product.created", product)
    return state.render(product)


def retrieve_product(state: State, params: dict[str, Any], id: str) -> dict[str, Any]:
    return state.render(state.get(id, "product"))


def update_product(state: State, params: dict[str, Any], id: str) -> dict[str, Any]:
    product = state.get(id, "product")
    before = state.snapshot(product)
    for key in ("name", "description"):
        if key in params:
            product[key] = params[key]
    if "active" in params:
        product["active"] = as_bool(params["active"], "active")
    if "metadata" in params:
        product["metadata"] = _merge_metadata(product["metadata"], params["metadata"])
    product["updated"] = state.now()
    state.emit("product.updated", product, before)
    return state.render(product)


def list_products(state: State, params: dict[str, Any]) -> dict[str, Any]:
    products = state.all("product")
    if "active" in params:
        products = [p for p in products if p["active"] == as_bool(params["active"], "active")]
    if ids := as_list(params.get("ids")):
        products = [p for p in products if p["id"] in ids]
    return list_page(products, params, "/v1/products", state.render)


def search_products(state: State, params: dict[str, Any]) -> dict[str, Any]:
    """Only the `metadata['key']:'value'` form of Stripe's search language."""
    query = require(params, "query")
    match = re.fullmatch(r"metadata\['([^']+)'\]:'([^']*)'", query.strip())
    if not match:
        raise StandinError(400, f"Unsupported search query for the stand-in: {query}", param="query")
    key, value = match.groups()
    found = [p for p in state.all("product") if p["metadata"].get(key) == value]
    page = list_page(found, {"limit": params.get("limit", 10)}, "/v1/products/search", state.render)
    return {**page, "object": "search_result", "next_page": None, "total_count": len(found)}


def create_price(state: State, params: dict[str, Any]) -> dict[str, Any]:
    product = state.get(require(params, "product"), "product")
    recurring = params.get("recurring")
    lookup_key = params.get("lookup_key")
    if lookup_key:
        _claim_lookup_key(state, lookup_key, as_bool(params.get("transfer_lookup_key", "false"), "transfer"))
    unit_amount = as_int(require(params, "unit_amount"), "unit_amount")
    price = state.add(
        {
            "object": "price",
            "active": as_bool(params.get("active", "true"), "active"),
            "billing_scheme": "per_unit",
            "currency": require(params, "currency").lower(),
            "custom_unit_amount": None,
            "lookup_key": lookup_key,
            "metadata": params.get("metadata") or {},
            "nickname": params.get("nickname"),
            "product": product["id"],
            "recurring": None
            if not recurring
            else {
                "interval": require(recurring, "interval"),
                "interval_count": as_int(recurring.get("interval_count", 1), "interval_count"),
                "meter": None,
                "usage_type": "licensed",
                "trial_period_days": None,
            },
            "tax_behavior": "unspecified",
            "tiers_mode": None,
            "transform_quantity": None,
            "type": "recurring" if recurring else "one_time",
            "unit_amount": unit_amount,
            "unit_amount_decimal": str(unit_amount),
        },
        "price",
    )
    if product["default_price"] is None:
        product["default_price"] = price["id"]
    state.emit("price.created", price)
    return state.render(price)


def _claim_lookup_key(state: State, lookup_key: str, transfer: bool) -> None:
    for other in state.all("price"):
        if other["lookup_key"] == lookup_key:
            if not transfer:
                raise StandinError(
                    400,
                    f"A price (`{other['id']}`) already uses that lookup key.",
                    param="lookup_key",
                )
            before = state.snapshot(other)
            other["lookup_key"] = None
            state.emit("price.updated", other, before)


def retrieve_price(state: State, params: dict[str, Any], id: str) -> dict[str, Any]:
    return state.render(state.get(id, "price"), as_list(params.get("expand")))


def update_price(state: State, params: dict[str, Any], id: str) -> dict[str, Any]:
    price = state.get(id, "price")
    before = state.snapshot(price)
    if "lookup_key" in params:
        if params["lookup_key"]:
            _claim_lookup_key(
                state, params["lookup_key"], as_bool(params.get("transfer_lookup_key", "false"), "transfer")
            )
        price["lookup_key"] = params["lookup_key"] or None
    if "active" in params:
        price["active"] = as_bool(params["active"], "active")
    if "nickname" in params:
        price["nickname"] = params["nickname"] or None
    if "metadata" in params:
        price["metadata"] = _merge_metadata(price["metadata"], params["metadata"])
    state.emit("price.updated", price, before)
    return state.render(price)


def list_prices(state: State, params: dict[str, Any]) -> dict[str, Any]:
    prices = state.all("price")
    if keys := as_list(params.get("lookup_keys")):
        prices = [p for p in prices if p["lookup_key"] in keys]
    if "active" in params:
        prices = [p for p in prices if p["active"] == as_bool(params["active"], "active")]
    if product := params.get("product"):
        prices = [p for p in prices if p["product"] == product]
    expand = as_list(params.get("expand"))
    return list_page(prices, params, "/v1/prices", lambda p: state.render(p, _item_paths(expand)))


def _item_paths(expand: list[str]) -> list[str]:
    """List `expand[]=data.product` applies `product` to each element."""
    return [e.removeprefix("data.") for e in expand if e.startswith("data.")]


def _merge_metadata(current: dict[str, str], update: Any) -> dict[str, str]:
    # Stripe: an empty string unsets every key; a key set to "" unsets that key.
    if update == "":
        return {}
    merged = {**current, **update}
    return {k: v for k, v in merged.items() if v != ""}


ROUTES = [
    ("POST", "/v1/products", create_product),
    ("GET", "/v1/products/search", search_products),
    ("GET", "/v1/products/{id}", retrieve_product),
    ("POST", "/v1/products/{id}", update_product),
    ("GET", "/v1/products", list_products),
    ("POST", "/v1/prices", create_price),
    ("GET", "/v1/prices/{id}", retrieve_price),
    ("POST", "/v1/prices/{id}", update_price),
    ("GET", "/v1/prices", list_prices),
]
