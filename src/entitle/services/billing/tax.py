"""Stripe Tax (`ENTITLE_STRIPE_AUTOMATIC_TAX=true`): what each way of paying sends so Stripe adds tax.

Stripe computes tax from where the buyer is, so every path must know an address:
- hosted Checkout collects it (`billing_address_collection=required`), with the buyer's tax id for
  businesses (`tax_id_collection`), and saves both on the customer (`customer_update`);
- the Payment Element paths take an `address` (and optional `tax_id`) in the request and set it on the
  customer first, or use the one the customer already has; without either the answer is 422
  `address_required`, as Stripe itself would refuse to compute the tax;
- one-time payments through the Payment Element take the same `address` and go through Stripe's Tax
  Calculation API: a calculation for the customer's address, then a PaymentIntent for its `amount_total`
  linked to it (`hooks.inputs.tax.calculation`), so Stripe records the tax transaction when the payment
  is captured and reverses it on a refund (API 2025-11-17 and later; entitle pins a newer version).
Tax registrations (where the business collects tax) are made in the Stripe dashboard; see docs/stripe.md.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from entitle.errors import InvalidRequest, ProviderUnavailable
from entitle.providers.stripe.provider import StripeProvider

# Stripe Tax needs a postal code besides the country here to find the rate.
_POSTAL_CODE_NEEDED = frozenset({"US", "CA"})


@dataclass(frozen=True)
class TaxDetails:
    """What the buyer gave for tax on the Payment Element path (both optional)."""

    # Stripe's address fields: line1, line2, city, state, postal_code, country (ISO 3166-1 alpha-2).
    address: dict[str, str] | None = None
    # (type, value), as Stripe names tax id types: ("eu_vat", "DE123456789").
    tax_id: tuple[str, str] | None = None


def checkout_params(stripe: StripeProvider) -> dict[str, Any]:
    """Checkout's tax parameters (subscription and payment mode alike); none while tax is off."""
    if not stripe.config.automatic_tax:
        return {}
    return {
        "automatic_tax": {"enabled": True},
        "billing_address_collection": "required",
        "tax_id_collection": {"enabled": True},
        # What the buyer types on the page is saved on the customer, so renewals are taxed the same way.
        "customer_update": {"address": "auto", "name": "auto"},
    }


async def subscription_params(
    stripe: StripeProvider, customer_id: str, details: TaxDetails | None
) -> dict[str, Any]:
    """Set what the buyer gave on the customer and return the subscription's tax parameters; 422
    `address_required` when tax is on and Stripe would have no address to compute it from."""
    if not stripe.config.automatic_tax:
        return {}
    await _known_address(stripe, customer_id, details or TaxDetails())
    return {"automatic_tax": {"enabled": True}}


async def payment_calculation(
    stripe: StripeProvider,
    customer_id: str,
    details: TaxDetails | None,
    *,
    amount: int,
    currency: str,
    reference: str,
    quantity: int,
) -> dict[str, Any] | None:
    """The Tax Calculation a one-time PaymentIntent is for (None while tax is off); 422
    `address_required` as for subscriptions."""
    if not stripe.config.automatic_tax:
        return None
    await _known_address(stripe, customer_id, details or TaxDetails())
    async with _refused_as(
        "Stripe Tax cannot place this billing address; check the country and postal code.", "invalid_address"
    ):
        return await stripe.gateway.create_tax_calculation(
            {
                "currency": currency,
                # Stripe copies the customer's address and tax ids into the calculation.
                "customer": customer_id,
                "line_items": [
                    {
                        "amount": amount,
                        "reference": reference,
                        "quantity": quantity,
                        "tax_behavior": "exclusive",
                    }
                ],
            }
        )


async def _known_address(stripe: StripeProvider, customer_id: str, details: TaxDetails) -> None:
    """Put what the buyer gave on the customer, or make sure the customer already has an address."""
    if details.address is not None:
        _check_address(details.address)
        async with _refused_as("Stripe does not accept this billing address.", "invalid_address"):
            await stripe.gateway.set_customer_address(customer_id, details.address)
    else:
        customer = await stripe.gateway.retrieve_customer(customer_id)
        address = customer.get("address") or {}
        if not address.get("country"):
            raise InvalidRequest(
                "Tax is calculated from the billing address: send `address` (at least `country`, and "
                "`postal_code` in the US and Canada).",
                code="address_required",
            )
    if details.tax_id is not None:
        async with _refused_as(
            f"Stripe does not accept '{details.tax_id[1]}' as a {details.tax_id[0]} tax id.", "invalid_tax_id"
        ):
            await stripe.gateway.add_customer_tax_id(
                customer_id, type=details.tax_id[0], value=details.tax_id[1]
            )


@asynccontextmanager
async def _refused_as(sentence: str, code: str) -> AsyncIterator[None]:
    """Stripe refusing what the buyer typed is the buyer's 422, not this server's 503."""
    try:
        yield
    except ProviderUnavailable as exc:
        if exc.code != "stripe_rejected_request":
            raise
        raise InvalidRequest(sentence, code=code) from exc


def _check_address(address: dict[str, str]) -> None:
    country = address.get("country", "")
    if country in _POSTAL_CODE_NEEDED and not address.get("postal_code"):
        raise InvalidRequest(
            f"A billing address in {country} needs `postal_code` for its tax rate.",
            code="address_required",
        )


def tax_summary(invoice: dict[str, Any] | None) -> dict[str, Any]:
    """The tax Stripe put on an invoice, as `{total, tax, currency}` (minor units); empty without one."""
    if not isinstance(invoice, dict):
        return {}
    taxes = invoice.get("total_taxes") or []
    return {
        "total": invoice.get("total"),
        "tax": sum(int(t.get("amount") or 0) for t in taxes if isinstance(t, dict)),
        "currency": invoice.get("currency"),
    }
