"""Stripe Tax, simply: a fixed rate by the buyer's country, exclusive of the price, so tests can see
`total_details.amount_tax` on Checkout Sessions and `total_taxes` on invoices. Stripe's real rates depend
on registrations, product tax codes and more; the shape of the answers is what the stand-in keeps."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .customers import live_customer
from .wire import StandinError, as_int, as_list, new_id, require

if TYPE_CHECKING:
    from .state import State

# Percent, by ISO country code; elsewhere the business is not registered and collects nothing.
RATES = {"DE": 19, "FR": 20, "GB": 20, "US": 10}
# What a person types on the hosted page when a test does not say.
DEFAULT_ADDRESS = {
    "city": "San Francisco",
    "country": "US",
    "line1": "1 Market St",
    "line2": None,
    "postal_code": "94105",
    "state": "CA",
}


def tax_on(amount: int, address: dict[str, Any] | None) -> int:
    rate = RATES.get(str((address or {}).get("country") or ""), 0)
    return round(amount * rate / 100)


def require_location(state: State, customer_id: str) -> dict[str, Any]:
    """The customer's address, as Stripe requires one before taxing a subscription automatically."""
    address = state.objects[customer_id].get("address")
    if not address or not address.get("country"):
        raise StandinError(
            400,
            "The customer's location isn't recognized. Provide a valid address to calculate tax.",
            code="customer_tax_location_invalid",
            param="automatic_tax",
        )
    return dict(address)


def total_taxes(tax: int, taxable: int) -> list[dict[str, Any]]:
    """An invoice's `total_taxes` (API 2025-03-31+), one entry for the one rate."""
    if not tax:
        return []
    return [
        {
            "amount": tax,
            "tax_behavior": "exclusive",
            "tax_rate_details": {"tax_rate": "txr_standin"},
            "taxability_reason": "standard_rated",
            "taxable_amount": taxable,
            "type": "tax_rate_details",
        }
    ]


# --- the Tax Calculation API (PaymentIntents) -------------------------------------------------------------
CALCULATION_LIFETIME = 90 * 86400


def create_calculation(state: State, params: dict[str, Any]) -> dict[str, Any]:
    currency = str(require(params, "currency")).lower()
    customer_id = params.get("customer")
    details = params.get("customer_details") or {}
    if customer_id:
        customer = live_customer(state, customer_id)
        address = customer.get("address")
    else:
        address = details.get("address")
    if not address or not address.get("country"):
        raise StandinError(
            400,
            "The customer's location isn't recognized. Provide a valid address to calculate tax.",
            code="customer_tax_location_invalid",
            param="customer_details[address]",
        )
    line_items = as_list(require(params, "line_items"))
    items = []
    for index, item in enumerate(line_items):
        amount = as_int(require(item, "amount"), f"line_items[{index}][amount]")
        if item.get("tax_behavior", "exclusive") != "exclusive":
            raise StandinError(400, "The stand-in only computes exclusive tax.", param="tax_behavior")
        items.append(
            {
                "id": new_id("tax_li"),
                "object": "tax.calculation_line_item",
                "amount": amount,
                "amount_tax": tax_on(amount, address),
                "livemode": False,
                "product": None,
                "quantity": as_int(item.get("quantity", 1), f"line_items[{index}][quantity]"),
                "reference": require(item, "reference"),
                "tax_behavior": "exclusive",
                "tax_code": "txcd_10000000",
            }
        )
    subtotal = sum(i["amount"] for i in items)
    tax = sum(i["amount_tax"] for i in items)
    now = state.now()
    calculation = state.add(
        {
            "object": "tax.calculation",
            "amount_total": subtotal + tax,
            "currency": currency,
            "customer": customer_id,
            "customer_details": {"address": dict(address), "address_source": "billing", "tax_ids": []},
            "expires_at": now + CALCULATION_LIFETIME,
            "livemode": False,
            "tax_amount_exclusive": tax,
            "tax_amount_inclusive": 0,
            "tax_breakdown": [
                {
                    "amount": tax,
                    "inclusive": False,
                    "taxable_amount": subtotal,
                    "tax_rate_details": {
                        "country": address.get("country"),
                        "percentage_decimal": str(RATES.get(str(address.get("country")), 0)),
                        "tax_type": "vat" if address.get("country") != "US" else "sales_tax",
                    },
                    "taxability_reason": "standard_rated" if tax else "not_collecting",
                }
            ],
            "tax_date": now,
            "_line_items": items,
        },
        "taxcalc",
    )
    return state.render(calculation)


def calculation_for_payment(state: State, params: dict[str, Any], amount: int) -> str | None:
    """A PaymentIntent's `hooks[inputs][tax][calculation]`: it must exist, be unexpired and its total
    must be what the PaymentIntent charges."""
    calc_id = (((params.get("hooks") or {}).get("inputs") or {}).get("tax") or {}).get("calculation")
    if not calc_id:
        return None
    calculation = state.get(calc_id, "tax.calculation", label="tax calculation")
    if calculation["expires_at"] <= state.now():
        raise StandinError(
            400, f"Tax calculation {calc_id} has expired.", param="hooks[inputs][tax][calculation]"
        )
    if calculation["amount_total"] != amount:
        raise StandinError(
            400,
            f"The PaymentIntent amount ({amount}) must equal the tax calculation's amount_total "
            f"({calculation['amount_total']}).",
            param="amount",
        )
    return str(calc_id)


ROUTES = [("POST", "/v1/tax/calculations", create_calculation)]
