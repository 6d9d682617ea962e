"""Guest Checkout at Stripe: the Checkout Session a visitor pays without an account, and what it sold.

Decisions this module owns:
- Which sessions are a guest's: those entitle created with `metadata.entitle_guest`, and no `account_id`
  anywhere (session, subscription or PaymentIntent metadata), so nothing at Stripe names an account until
  one claims it; the subscription and PaymentIntent events of the guest's customer are ignored until then
  (`Reconciler.account_for` finds no account).
- Which customer: Stripe makes one for every subscription-mode session, and for a payment-mode one only with
  `customer_creation=always`; the account that claims the purchase keeps that customer.
- When a guest session counts as paid: `status` complete and `payment_status` paid (or, for a trial,
  no_payment_required), exactly when Stripe grants a signed-in person the same.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from entitle.core.catalog import Product
from entitle.core.guests import GuestPayment
from entitle.core.subscriptions import Store
from entitle.providers.stripe.mapping import GUEST_KEY, is_guest_object, object_id
from entitle.providers.stripe.purchases import PRODUCT_KEY, QUANTITY_KEY

_PAID = frozenset({"paid", "no_payment_required"})


def guest_metadata(product: Product, quantity: int) -> dict[str, str]:
    return {GUEST_KEY: "true", PRODUCT_KEY: product.key, QUANTITY_KEY: str(quantity)}


def guest_session_params(
    product: Product,
    price_id: str,
    quantity: int,
    success_url: str,
    cancel_url: str,
    trial_days: int | None = None,
) -> dict[str, Any]:
    """A Checkout Session for a visitor: Stripe collects the email (and the wallet), no customer given."""
    metadata = guest_metadata(product, quantity)
    params: dict[str, Any] = {
        "line_items": [{"price": price_id, "quantity": quantity}],
        "metadata": metadata,
        "allow_promotion_codes": True,
        "success_url": success_url,
        "cancel_url": cancel_url,
    }
    if product.is_one_time:
        return {
            **params,
            "mode": "payment",
            # Without it a payment-mode session makes no customer, and the account would have none to keep.
            "customer_creation": "always",
            "payment_intent_data": {"metadata": metadata},
            "invoice_creation": {"enabled": True, "invoice_data": {"metadata": metadata}},
        }
    # The trial /pricing shows a visitor; Checkout still takes the card, so the trial's end bills it.
    trial = {"trial_period_days": trial_days} if trial_days else {}
    return {**params, "mode": "subscription", "subscription_data": {"metadata": metadata, **trial}}


def is_guest_session(session: Mapping[str, Any]) -> bool:
    return is_guest_object(session)


def guest_payment(session: Mapping[str, Any]) -> GuestPayment | None:
    """What a paid guest session sold; None while it is not a paid guest session."""
    if not is_guest_session(session) or session.get("status") != "complete":
        return None
    if session.get("payment_status") not in _PAID:
        return None
    metadata = session.get("metadata") or {}
    try:
        quantity = max(1, int(metadata.get(QUANTITY_KEY) or 1))
    except (TypeError, ValueError):
        quantity = 1
    details = session.get("customer_details") or {}
    email = details.get("email") or session.get("customer_email")
    return GuestPayment(
        store=Store.STRIPE,
        checkout_id=str(session["id"]),
        email=str(email) if email else None,
        product=str(metadata.get(PRODUCT_KEY) or ""),
        quantity=quantity,
        store_customer_id=object_id(session.get("customer")),
        store_subscription_id=object_id(session.get("subscription")),
        store_purchase_id=object_id(session.get("payment_intent")),
    )
