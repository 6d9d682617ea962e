"""Support's money operations on Stripe: cancel a subscription now or at its period's end, and refund.

Decisions this module owns:
- Only what Stripe sold can be canceled or refunded here. The App Store refunds and cancels through
  Apple alone (a person asks at reportaproblem.apple.com), so its subscriptions and purchases answer 409
  `managed_by_app_store`.
- Money goes back as a refund of the payment (`POST /v1/refunds` on its PaymentIntent), never as a
  credit on the customer's Stripe balance (`prorate` on cancel): a person who leaves has no next invoice
  to spend a credit on.
- A prorated refund is the unused share of the current period, to the second, of what the last paid
  invoice paid: what a person who paid for a month and leaves after a week expects back.
- Access and balances change when Stripe confirms (`charge.refunded`, `customer.subscription.deleted`
  webhooks); the subscription is also re-read at once, as every other billing operation does, so the
  answer is right before the webhook arrives.
- Every operation is written to the account's event log with who asked and why.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from entitle.core.entitlements import isoformat
from entitle.core.events import record_event
from entitle.core.models.entitlements import Subscription
from entitle.core.models.purchases import Purchase
from entitle.core.subscriptions import Store, SubscriptionStatus
from entitle.db.types import utcnow
from entitle.errors import Conflict, InvalidRequest, NotFound
from entitle.providers.stripe.errors import StripeObjectMissing
from entitle.providers.stripe.mapping import from_timestamp, object_id, period_of
from entitle.providers.stripe.models import StripeCustomer
from entitle.providers.stripe.provider import StripeProvider
from entitle.services.access.entitlements import compute_body

# The type of every support action in the account's event log (the dashboard's too); `data.action` says
# which. Kept out of outbound webhooks: what changed for the app arrives as the usual events.
SUPPORT_ACTION = "operator.action"
# Stripe's own refund reasons; any other text is kept in the refund's metadata only.
STRIPE_REFUND_REASONS = frozenset({"duplicate", "fraudulent", "requested_by_customer"})
MAX_REASON = 500
# Subscriptions that have nothing left to cancel.
ENDED = frozenset({SubscriptionStatus.EXPIRED.value, SubscriptionStatus.REVOKED.value})

StripeGetter = Callable[[], StripeProvider]


class CancelWhen(StrEnum):
    NOW = "now"  # ends at once: access stops when Stripe confirms
    PERIOD_END = "period_end"  # stops renewing; access lasts until the paid period ends


class RefundChoice(StrEnum):
    NONE = "none"  # nothing given back
    LAST_PAYMENT = "last_payment"  # what is left of the last paid invoice's payment
    PRORATED = "prorated"  # the unused share of the current period (cancel now only)


def managed_by_app_store(what: str) -> Conflict:
    return Conflict(
        f"This {what} was bought in the App Store: Apple alone cancels and refunds it (the person asks at "
        "https://reportaproblem.apple.com).",
        code="managed_by_app_store",
    )


def clean_reason(reason: str | None) -> str | None:
    text = " ".join((reason or "").split())[:MAX_REASON]
    return text or None


# --- cancel ------------------------------------------------------------------------------------------------
async def cancel_subscription(
    db: AsyncSession,
    stripe: StripeGetter,
    account_id: uuid.UUID,
    subscription_id: str,
    *,
    when: CancelWhen,
    refund: RefundChoice,
    reason: str | None,
    by: str,
    operator_id: uuid.UUID | None = None,
) -> dict[str, Any]:
    """Cancel one of the account's subscriptions; the subscription as the answer lists it, with `refund`."""
    row = await _own_subscription(db, account_id, subscription_id)
    if when is CancelWhen.PERIOD_END and refund is RefundChoice.PRORATED:
        raise InvalidRequest(
            "A prorated refund gives back the unused part of the period, and canceling at the period's end "
            "leaves none: cancel now, or refund the last payment.",
            code="invalid_refund",
        )
    reason = clean_reason(reason)
    provider = stripe()
    paid = None
    if refund is not RefundChoice.NONE:
        paid = await provider.gateway.last_paid_invoice(subscription_id)
    if when is CancelWhen.NOW:
        ended = await provider.gateway.cancel_subscription(subscription_id, comment=reason)
    else:
        ended = await provider.gateway.set_cancel_at_period_end(subscription_id, True)
    amount: int | None = None
    if refund is RefundChoice.PRORATED and paid is not None:
        # Prorated to the second Stripe ended it, by Stripe's clock.
        moment = ended.get("ended_at") or ended.get("canceled_at")
        at = from_timestamp(moment) if isinstance(moment, int) else utcnow()
        amount = _unused_share(ended, int(paid.get("amount_paid") or 0), at)
    given: dict[str, Any] | None = None
    if paid is not None and (refund is RefundChoice.LAST_PAYMENT or amount):
        intent_id = await _paid_intent(provider, str(paid["id"]))
        if intent_id is not None:
            left = await _refundable(provider, intent_id)
            if left > 0:
                given = await _refund(
                    provider,
                    intent_id,
                    min(amount, left) if amount is not None else None,
                    reason,
                    by,
                    key=f"entitle-cancel-{subscription_id}-{refund.value}",
                )
    # Re-read after the refund too: a subscription ended and refunded in full reads as revoked.
    await provider.reconciler.subscription(db, subscription_id)
    await _audit(
        db,
        account_id,
        "subscription.canceled" if when is CancelWhen.NOW else "subscription.cancel_at_period_end",
        by,
        {
            "subscription_id": subscription_id,
            "product": row.product,
            "when": when.value,
            "refund": refund.value,
            "refund_id": given["id"] if given else None,
            "refund_amount": given["amount"] if given else None,
            "reason": reason,
        },
        operator_id,
    )
    answer, _ = await compute_body(db, account_id, now=utcnow())
    listed = next(s for s in answer["subscriptions"] if s["id"] == subscription_id)
    return {**listed, "refund": refund_json(given) if given else None}


async def _own_subscription(db: AsyncSession, account_id: uuid.UUID, subscription_id: str) -> Subscription:
    """The account's own subscription; someone else's is the same 404 as one that does not exist."""
    row = await db.scalar(
        select(Subscription)
        .where(Subscription.account_id == account_id, Subscription.store_subscription_id == subscription_id)
        .limit(1)
    )
    if row is None:
        raise NotFound("This account has no such subscription.", code="subscription_not_found")
    if row.store == Store.APP_STORE.value:
        raise managed_by_app_store("subscription")
    if row.store != Store.STRIPE.value:
        raise Conflict("Only Stripe subscriptions can be canceled here.", code="not_a_stripe_subscription")
    if row.status in ENDED:
        raise Conflict("This subscription has already ended.", code="subscription_ended")
    return row


def _unused_share(sub: dict[str, Any], paid: int, now: datetime) -> int:
    """What of `paid` the rest of the current period is worth, rounded down to the minor unit."""
    start, end = period_of(sub)
    if start is None or end is None or end <= start or paid <= 0:
        return 0
    unused = (end - max(now, start)).total_seconds() / (end - start).total_seconds()
    return int(paid * min(max(unused, 0.0), 1.0))


# --- refund ------------------------------------------------------------------------------------------------
async def refund_payment(
    db: AsyncSession,
    stripe: StripeGetter,
    account_id: uuid.UUID,
    *,
    purchase_id: str | None,
    invoice_id: str | None,
    amount: int | None,
    reason: str | None,
    by: str,
    idempotency_key: str | None = None,
    operator_id: uuid.UUID | None = None,
) -> dict[str, Any]:
    """Refund a one-time purchase or a paid invoice of the account's, all that is left or `amount` of it."""
    if (purchase_id is None) == (invoice_id is None):
        raise InvalidRequest("Name exactly one of purchase_id and invoice_id.", code="refund_target_required")
    reason = clean_reason(reason)
    if purchase_id is not None:
        purchase = await db.scalar(
            select(Purchase)
            .where(Purchase.account_id == account_id, Purchase.store_purchase_id == purchase_id)
            .limit(1)
        )
        if purchase is None:
            raise NotFound("This account has no such purchase.", code="purchase_not_found")
        if purchase.store == Store.APP_STORE.value:
            raise managed_by_app_store("purchase")
        provider = stripe()
        intent_id: str | None = purchase.store_purchase_id
        target = {"purchase_id": purchase_id, "product": purchase.product}
    else:
        assert invoice_id is not None
        provider = stripe()
        intent_id = await _own_invoice_intent(db, provider, account_id, invoice_id)
        target = {"invoice_id": invoice_id}
    if intent_id is None:
        raise Conflict("Nothing was paid on this invoice.", code="nothing_to_refund")
    left = await _refundable(provider, intent_id)
    if left <= 0:
        raise Conflict("This payment has already been refunded in full.", code="already_refunded")
    if amount is not None and amount > left:
        raise InvalidRequest(
            f"At most {left} (in the currency's minor units) is left to refund on this payment.",
            code="amount_too_large",
            details={"refundable": left},
        )
    # Two identical requests against the same state (a double click) make one refund; a caller's key (a
    # page's) makes the same form sent twice refund once, and is tied to what it refunds, so one page's
    # key on two different forms never collides at Stripe.
    what = f"{intent_id}-{amount if amount is not None else 'all'}"
    key = f"{idempotency_key}-{what}" if idempotency_key else f"{what}-{left}"
    given = await _refund(provider, intent_id, amount, reason, by, key=f"entitle-refund-{key}")
    await _audit(
        db,
        account_id,
        "refund.created",
        by,
        {**target, "refund_id": given["id"], "amount": given.get("amount"), "reason": reason},
        operator_id,
    )
    return refund_json(given)


async def _own_invoice_intent(
    db: AsyncSession, provider: StripeProvider, account_id: uuid.UUID, invoice_id: str
) -> str | None:
    """The PaymentIntent that paid the account's invoice; an invoice of another customer's is a 404."""
    customer = await db.get(StripeCustomer, account_id)
    missing = NotFound("This account has no such invoice.", code="invoice_not_found")
    if customer is None or not invoice_id.startswith("in_"):
        raise missing
    try:
        invoice = await provider.gateway.retrieve_invoice(invoice_id)
    except StripeObjectMissing as exc:
        raise missing from exc
    if object_id(invoice.get("customer")) != customer.customer_id:
        raise missing
    return await _paid_intent(provider, invoice_id)


async def _paid_intent(provider: StripeProvider, invoice_id: str) -> str | None:
    """Since API 2025-03-31 an invoice has no `payment_intent`: its paid payments name it."""
    for payment in await provider.gateway.invoice_payments(invoice_id):
        inner = payment.get("payment") or {}
        if payment.get("status") == "paid" and inner.get("type") == "payment_intent":
            return object_id(inner.get("payment_intent"))
    return None


async def _refundable(provider: StripeProvider, intent_id: str) -> int:
    """What is left to refund of the PaymentIntent's charge, in minor units."""
    intent = await provider.gateway.retrieve_payment_intent(intent_id)
    charge = intent.get("latest_charge")
    if not isinstance(charge, dict) or not charge.get("paid"):
        return 0
    return int(charge.get("amount") or 0) - int(charge.get("amount_refunded") or 0)


async def _refund(
    provider: StripeProvider, intent_id: str, amount: int | None, reason: str | None, by: str, *, key: str
) -> dict[str, Any]:
    metadata = {"entitle_by": by[:MAX_REASON]}
    if reason:
        metadata["entitle_reason"] = reason
    return await provider.gateway.create_refund(
        payment_intent=intent_id,
        amount=amount,
        reason=reason if reason in STRIPE_REFUND_REASONS else None,
        metadata=metadata,
        idempotency_key=key,
    )


def refund_json(refund: dict[str, Any]) -> dict[str, Any]:
    created = refund.get("created")
    return {
        "id": refund["id"],
        "amount": refund.get("amount"),
        "currency": refund.get("currency"),
        "status": refund.get("status"),
        "payment_intent": object_id(refund.get("payment_intent")),
        "charge": object_id(refund.get("charge")),
        "reason": (refund.get("metadata") or {}).get("entitle_reason") or refund.get("reason"),
        "created": _iso(created),
    }


def _iso(timestamp: Any) -> str | None:
    return isoformat(from_timestamp(timestamp)) if isinstance(timestamp, int) else None


async def _audit(
    db: AsyncSession,
    account_id: uuid.UUID,
    action: str,
    by: str,
    details: dict[str, Any],
    operator_id: uuid.UUID | None,
) -> None:
    """The account's event log entry, in the dashboard's form (`operators.record_action`)."""
    who: dict[str, Any] = {"by": by} | ({"operator_id": str(operator_id)} if operator_id else {})
    await record_event(db, account_id, SUPPORT_ACTION, {"action": action, **who, **details}, announce=False)
