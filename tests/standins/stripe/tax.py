"""Stripe Tax, simply: a fixed rate by the buyer's country, exclusive of the price, so tests can see
`total_details.amount_tax` on Checkout Sessions and `total_taxes` on invoices. Stripe's real rates depend
on registrations, product tax codes and more; the shape of the answers is what the stand-in keeps."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .wire import StandinError

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
