"""Customers, their payment methods, and Billing Portal sessions."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from .catalog import _merge_metadata
from .wire import StandinError, as_list, list_page, missing, new_id, require

if TYPE_CHECKING:
    from .state import State

# Test card brands by the last four digits Stripe's test cards end in.
_BRANDS = {"4242": "visa", "4444": "mastercard", "0005": "amex", "0341": "visa"}


def live_customer(state: State, customer_id: str) -> dict[str, Any]:
    customer = state.objects.get(customer_id)
    if customer is None or customer.get("object") != "customer" or customer.get("_deleted"):
        raise missing("customer", customer_id, "customer")
    return customer


def create_customer(state: State, params: dict[str, Any]) -> dict[str, Any]:
    customer = state.add(
        {
            "object": "customer",
            "address": None,
            "balance": 0,
            "currency": None,
            "default_source": None,
            "delinquent": False,
            "description": params.get("description"),
            "discount": None,
            "email": params.get("email"),
            "invoice_prefix": new_id("x", 7)[2:].upper(),
            "invoice_settings": {
                "custom_fields": None,
                "default_payment_method": None,
                "footer": None,
                "rendering_options": None,
            },
            "metadata": params.get("metadata") or {},
            "name": params.get("name"),
            "next_invoice_sequence": 1,
            "phone": None,
            "preferred_locales": [],
            "shipping": None,
            "tax_exempt": "none",
            "test_clock": None,
        },
        "cus",
        id_length=14,
    )
    state.emit("customer.created", customer)
    return state.render(customer)


def retrieve_customer(state: State, params: dict[str, Any], id: str) -> dict[str, Any]:
    customer = state.get(id, "customer")
    if customer.get("_deleted"):
        return {"id": id, "object": "customer", "deleted": True}
    return state.render(customer, as_list(params.get("expand")))


def update_customer(state: State, params: dict[str, Any], id: str) -> dict[str, Any]:
    customer = live_customer(state, id)
    before = state.snapshot(customer)
    for key in ("email", "name", "description"):
        if key in params:
            customer[key] = params[key] or None
    if "metadata" in params:
        customer["metadata"] = _merge_metadata(customer["metadata"], params["metadata"])
    if "address" in params:
        given = params["address"] or None
        fields = ("city", "country", "line1", "line2", "postal_code", "state")
        customer["address"] = {k: given.get(k) or None for k in fields} if given else None
    if settings := params.get("invoice_settings"):
        if "default_payment_method" in settings:
            pm_id = settings["default_payment_method"] or None
            if pm_id:
                state.get(pm_id, "payment_method", label="PaymentMethod")
            customer["invoice_settings"]["default_payment_method"] = pm_id
    state.emit("customer.updated", customer, before)
    return state.render(customer, as_list(params.get("expand")))


def create_tax_id(state: State, params: dict[str, Any], id: str) -> dict[str, Any]:
    customer = live_customer(state, id)
    kind, value = require(params, "type"), require(params, "value")
    if kind == "eu_vat" and not re.fullmatch(r"[A-Z]{2}[0-9A-Z]{2,13}", value):
        raise StandinError(400, f"Invalid value for eu_vat: {value}", code="tax_id_invalid", param="value")
    tax_id = state.add(
        {
            "object": "tax_id",
            "country": value[:2] if kind == "eu_vat" else None,
            "customer": customer["id"],
            "type": kind,
            "value": value,
            "verification": {"status": "pending", "verified_address": None, "verified_name": None},
        },
        "txi",
    )
    customer.setdefault("_tax_ids", []).append(tax_id["id"])
    state.emit("customer.tax_id.created", tax_id)
    return state.render(tax_id)


def delete_customer(state: State, params: dict[str, Any], id: str) -> dict[str, Any]:
    from .subscriptions import end_subscription

    customer = live_customer(state, id)
    # Deleting a customer cancels its subscriptions immediately, each with its own event.
    for sub in state.all("subscription"):
        if sub["customer"] == id and sub["status"] not in ("canceled", "incomplete_expired"):
            end_subscription(state, sub)
    snapshot = state.snapshot(customer)
    customer["_deleted"] = True
    state.emit("customer.deleted", snapshot)
    return {"id": id, "object": "customer", "deleted": True}


def list_customers(state: State, params: dict[str, Any]) -> dict[str, Any]:
    customers = [c for c in state.all("customer") if not c.get("_deleted")]
    if email := params.get("email"):
        customers = [c for c in customers if c["email"] == email]
    return list_page(customers, params, "/v1/customers", state.render)


def search_customers(state: State, params: dict[str, Any]) -> dict[str, Any]:
    query = require(params, "query")
    match = re.fullmatch(r"metadata\['([^']+)'\]:'([^']*)'", query.strip())
    if not match:
        raise StandinError(400, f"Unsupported search query for the stand-in: {query}", param="query")
    key, value = match.groups()
    found = [c for c in state.all("customer") if not c.get("_deleted") and c["metadata"].get(key) == value]
    page = list_page(found, {"limit": params.get("limit", 10)}, "/v1/customers/search", state.render)
    return {**page, "object": "search_result", "next_page": None, "total_count": len(found)}


# --- payment methods ---------------------------------------------------------------------------------
def make_card(state: State, customer_id: str | None, last4: str = "4242") -> dict[str, Any]:
    """A card payment method as Stripe.js or Checkout would create it."""
    return state.add(
        {
            "object": "payment_method",
            "allow_redisplay": "always",
            "billing_details": {"address": None, "email": None, "name": None, "phone": None, "tax_id": None},
            "card": {
                "brand": _BRANDS.get(last4, "visa"),
                "country": "US",
                "display_brand": _BRANDS.get(last4, "visa"),
                "exp_month": 12,
                "exp_year": 2034,
                "fingerprint": new_id("fp", 16)[3:],
                "funding": "credit",
                "last4": last4,
                "networks": {"available": [_BRANDS.get(last4, "visa")], "preferred": None},
                "wallet": None,
            },
            "customer": customer_id,
            "metadata": {},
            "type": "card",
        },
        "pm",
    )


def retrieve_payment_method(state: State, params: dict[str, Any], id: str) -> dict[str, Any]:
    return state.render(state.get(id, "payment_method", label="PaymentMethod"))


def attach_payment_method(state: State, params: dict[str, Any], id: str) -> dict[str, Any]:
    pm = state.get(id, "payment_method", label="PaymentMethod")
    customer = live_customer(state, require(params, "customer"))
    pm["customer"] = customer["id"]
    state.emit("payment_method.attached", pm)
    return state.render(pm)


# --- Billing Portal ----------------------------------------------------------------------------------
def create_portal_session(state: State, params: dict[str, Any]) -> dict[str, Any]:
    customer = live_customer(state, require(params, "customer"))
    flow = None
    if flow_data := params.get("flow_data"):
        kind = require(flow_data, "type")
        if kind not in ("payment_method_update", "subscription_cancel", "subscription_update"):
            raise StandinError(400, f"Invalid flow_data[type]: {kind}", param="flow_data[type]")
        after = flow_data.get("after_completion") or {"type": "portal_homepage"}
        redirect = after.get("redirect")
        flow = {
            "type": kind,
            "after_completion": {
                "type": after.get("type", "portal_homepage"),
                "hosted_confirmation": None,
                "redirect": {"return_url": require(redirect, "return_url")} if redirect else None,
            },
            "subscription_cancel": None,
            "subscription_update": None,
            "subscription_update_confirm": None,
        }
    session = state.add(
        {
            "object": "billing_portal.session",
            "configuration": "bpc_standin",
            "customer": customer["id"],
            "flow": flow,
            "locale": params.get("locale"),
            "on_behalf_of": None,
            "return_url": params.get("return_url"),
        },
        "bps",
    )
    session["url"] = f"https://billing.stripe.com/p/session/test_{session['id'][4:]}"
    return state.render(session)


ROUTES = [
    ("POST", "/v1/customers", create_customer),
    ("GET", "/v1/customers/search", search_customers),
    ("GET", "/v1/customers/{id}", retrieve_customer),
    ("POST", "/v1/customers/{id}", update_customer),
    ("DELETE", "/v1/customers/{id}", delete_customer),
    ("GET", "/v1/customers", list_customers),
    ("GET", "/v1/payment_methods/{id}", retrieve_payment_method),
    ("POST", "/v1/payment_methods/{id}/attach", attach_payment_method),
    ("POST", "/v1/billing_portal/sessions", create_portal_session),
    ("POST", "/v1/customers/{id}/tax_ids", create_tax_id),
]
