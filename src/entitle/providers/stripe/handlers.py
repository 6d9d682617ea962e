"""One handler per Stripe event type, in one table.

Each handler treats its event as a nudge: it takes only ids from the payload and says what must be
re-read from Stripe (`Settle`): a subscription, every subscription of the customer, or a one-time
purchase's PaymentIntent (see `purchases.py`). The payload's
snapshot, however stale, never decides anything. `settle` runs a batch of events of one customer (the
inbox's ordering key) through their handlers and then makes each read once, after all of them were
stored: a renewal's `invoice.paid` and `customer.subscription.updated`, delivered within a second, cost
one read. Handlers run inside the inbox's transaction, under the per-customer lock, and are idempotent.
Account events they write (payment failed, action required, trial ending, refunded) are written once per
Stripe event because the inbox processes each stored event to success exactly once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from entitle.core import events
from entitle.core.guests import GuestSink
from entitle.core.notices import TrialEndingWithoutCard
from entitle.core.subscriptions import Environment, Store
from entitle.db.types import utcnow
from entitle.providers.stripe.errors import StripeObjectMissing
from entitle.providers.stripe.guests import guest_payment, is_guest_session
from entitle.providers.stripe.mapping import from_timestamp, object_id
from entitle.providers.stripe.purchases import PurchaseReconciler, is_entitle_purchase
from entitle.providers.stripe.reconcile import Reconciler, mark_customer_deleted
from entitle.providers.stripe.webhook_endpoints import TEST_EVENT_KEY

PAYMENT_FAILED = "billing.payment_failed"
PAYMENT_ACTION_REQUIRED = "billing.payment_action_required"
TRIAL_WILL_END = "billing.trial_will_end"
REFUNDED = "billing.refunded"
# Money in and out for a subscription (one-time purchases record theirs when the purchase is stored).
PAYMENT_SUCCEEDED = events.PAYMENT_SUCCEEDED
PAYMENT_REFUNDED = events.PAYMENT_REFUNDED


@dataclass(frozen=True)
class HandlerContext:
    db: AsyncSession
    reconciler: Reconciler
    # None where one-time purchases are not recorded (a provider built without a purchase sink).
    purchases: PurchaseReconciler | None = None
    # Tells the person a trial is ending with nothing to pay for what follows (a mail); None: nobody is told.
    trial_ending_without_card: TrialEndingWithoutCard | None = None
    # Where a visitor's paid Checkout is held until claimed; None where guest checkout is not recorded.
    guests: GuestSink | None = None


@dataclass(frozen=True)
class Settle:
    """What an event asks to be re-read: one read settles every event of the batch that asks for it."""

    subscription: str | None = None
    # Every subscription of this customer (what a customer-level event may have changed).
    customer: str | None = None
    # A one-time purchase's PaymentIntent.
    payment_intent: str | None = None
    # Money given back on a charge (`charge.refunded`): logged as `payment.refunded` here unless the
    # charge paid for a one-time purchase, whose own record logs it (`services.access.purchases`).
    refund: dict[str, Any] | None = None
    # The outcome when nothing needs reading.
    note: str | None = None


Handler = Callable[[HandlerContext, dict[str, Any]], Awaitable[Settle]]


def _object(event: dict[str, Any]) -> dict[str, Any]:
    obj: dict[str, Any] = event["data"]["object"]
    return obj


def invoice_subscription_id(invoice: dict[str, Any]) -> str | None:
    """Since API 2025-03-31 an invoice names its subscription under `parent.subscription_details`."""
    details = (invoice.get("parent") or {}).get("subscription_details") or {}
    return object_id(details.get("subscription")) or object_id(invoice.get("subscription"))


async def _account_event(ctx: HandlerContext, obj: dict[str, Any], type: str, data: dict[str, Any]) -> None:
    # Runs before the batch's reserved read, so it asks Stripe nothing: an account entitle does not know
    # (a guest's, until claimed) gets no event here, and the read that follows finds it if it can.
    account_id = await ctx.reconciler.account_for(ctx.db, object_id(obj.get("customer")), ask_stripe=False)
    if account_id is not None:
        await events.record_event(ctx.db, account_id, type, data)


async def checkout_session_completed(ctx: HandlerContext, event: dict[str, Any]) -> Settle:
    session = _object(event)
    if is_guest_session(session):
        return await guest_checkout_paid(ctx, event)
    if session.get("mode") == "payment":
        return await checkout_session_paid(ctx, event)
    subscription_id = object_id(session.get("subscription"))
    if session.get("mode") != "subscription" or subscription_id is None:
        return Settle(note="ignored: not a subscription checkout")
    return Settle(subscription=subscription_id)


async def guest_checkout_paid(ctx: HandlerContext, event: dict[str, Any]) -> Settle:
    """A visitor paid without an account: hold the purchase for whoever claims it (and mail the link).
    Nothing is read for an account: none owns the guest's customer until the purchase is claimed."""
    session = _object(event)
    payment = guest_payment(session)
    if payment is None:
        return Settle(note=f"{session.get('id')}: guest checkout not paid yet")
    if ctx.guests is None:
        return Settle(note=f"ignored: {session.get('id')}: guest checkouts are not recorded here")
    recorded = await ctx.guests.paid(ctx.db, payment)
    return Settle(
        note=f"{session['id']}: guest checkout " + ("held for its claim" if recorded else "already held")
    )


async def checkout_session_paid(ctx: HandlerContext, event: dict[str, Any]) -> Settle:
    """A payment-mode session: its PaymentIntent is the purchase, once paid (a delayed payment method,
    a bank debit, completes the session unpaid and pays later with `async_payment_succeeded`)."""
    session = _object(event)
    if is_guest_session(session):
        return await guest_checkout_paid(ctx, event)
    intent_id = object_id(session.get("payment_intent"))
    if session.get("mode") != "payment" or intent_id is None:
        return Settle(note="ignored: not a one-time checkout")
    if session.get("payment_status") != "paid":
        return Settle(note=f"{intent_id}: not paid yet")
    return Settle(payment_intent=intent_id)


async def payment_intent_succeeded(ctx: HandlerContext, event: dict[str, Any]) -> Settle:
    intent = _object(event)
    # A subscription invoice's payment carries no product of ours: the invoice's events settle it.
    if not is_entitle_purchase(intent):
        return Settle(note="ignored: not a one-time purchase made through entitle")
    return Settle(payment_intent=str(intent["id"]))


async def dispute_changed(ctx: HandlerContext, event: dict[str, Any]) -> Settle:
    intent_id = object_id(_object(event).get("payment_intent"))
    if intent_id is None:
        return Settle(note="ignored: a dispute without a payment intent")
    return Settle(payment_intent=intent_id)


async def subscription_changed(ctx: HandlerContext, event: dict[str, Any]) -> Settle:
    return Settle(subscription=str(_object(event)["id"]))


async def subscription_trial_will_end(ctx: HandlerContext, event: dict[str, Any]) -> Settle:
    sub = _object(event)
    await _account_event(
        ctx, sub, TRIAL_WILL_END, {"subscription": sub["id"], "trial_end": sub.get("trial_end")}
    )
    if ctx.trial_ending_without_card is None:
        return Settle(subscription=str(sub["id"]))
    # Whether a card will pay is read now, not taken from the payload: it may have been added since.
    read_at = utcnow()
    try:
        fresh = await ctx.reconciler.gateway.retrieve_subscription(str(sub["id"]))
    except StripeObjectMissing:
        return Settle(note=f"ignored: {sub['id']} does not exist at Stripe")
    outcome = await ctx.reconciler.subscription(ctx.db, str(sub["id"]), fresh=fresh, read_at=read_at)
    if fresh.get("status") != "trialing" or fresh.get("default_payment_method"):
        return Settle(note=outcome)
    customer_id = object_id(fresh.get("customer"))
    customer = await ctx.reconciler.gateway.retrieve_customer(customer_id) if customer_id else {}
    if (customer.get("invoice_settings") or {}).get("default_payment_method"):
        return Settle(note=outcome)
    account_id = await ctx.reconciler.account_for(ctx.db, customer_id, fresh)
    if account_id is None:
        return Settle(note=outcome)
    trial_end = fresh.get("trial_end")
    ends = from_timestamp(trial_end) if isinstance(trial_end, int) else None
    await ctx.trial_ending_without_card(ctx.db, account_id, str(sub["id"]), ends)
    return Settle(note=f"{outcome}; no payment method yet: the account was told to add one")


async def invoice_paid(ctx: HandlerContext, event: dict[str, Any]) -> Settle:
    invoice = _object(event)
    subscription_id = invoice_subscription_id(invoice)
    if subscription_id is None:
        return Settle(note="ignored: invoice without a subscription")
    if (invoice.get("amount_paid") or 0) > 0:
        # The money, for reports and outbound webhooks; a trial's $0 invoice moved none.
        await _account_event(
            ctx,
            invoice,
            PAYMENT_SUCCEEDED,
            {
                "amount": invoice.get("amount_paid"),
                "currency": invoice.get("currency"),
                "subscription": subscription_id,
                "invoice": invoice["id"],
                "environment": (
                    Environment.PRODUCTION if invoice.get("livemode") else Environment.SANDBOX
                ).value,
            },
        )
    return Settle(subscription=subscription_id)


async def invoice_payment_failed(ctx: HandlerContext, event: dict[str, Any]) -> Settle:
    return await _invoice_needs_the_person(ctx, event, PAYMENT_FAILED, "next_payment_attempt")


async def invoice_payment_action_required(ctx: HandlerContext, event: dict[str, Any]) -> Settle:
    return await _invoice_needs_the_person(ctx, event, PAYMENT_ACTION_REQUIRED, "hosted_invoice_url")


async def _invoice_needs_the_person(
    ctx: HandlerContext, event: dict[str, Any], event_type: str, detail: str
) -> Settle:
    """Tell the account (its event log, outbound webhooks) why a payment is stuck, then re-read."""
    invoice = _object(event)
    subscription_id = invoice_subscription_id(invoice)
    if subscription_id is None:
        return Settle(note="ignored: invoice without a subscription")
    data = {"subscription": subscription_id, "invoice": invoice["id"], detail: invoice.get(detail)}
    await _account_event(ctx, invoice, event_type, data)
    return Settle(subscription=subscription_id)


async def customer_deleted(ctx: HandlerContext, event: dict[str, Any]) -> Settle:
    customer = _object(event)
    customer_id = str(customer["id"])
    if (customer.get("metadata") or {}).get(TEST_EVENT_KEY):
        # The set-up page's test event: its arrival is the point, and the customer never had an account.
        return Settle(note="test event from the set-up page")
    await mark_customer_deleted(ctx.db, customer_id, now=utcnow())
    return Settle(customer=customer_id)


async def charge_refunded(ctx: HandlerContext, event: dict[str, Any]) -> Settle:
    charge = _object(event)
    customer_id = object_id(charge.get("customer"))
    if customer_id is None:
        return Settle(note="ignored: charge without a customer")
    refund = {
        "charge": charge["id"],
        "amount_refunded": charge.get("amount_refunded"),
        "currency": charge.get("currency"),
        "refunded_in_full": bool(charge.get("refunded")),
        # Reports keep test-mode money apart from real money.
        "environment": (Environment.PRODUCTION if charge.get("livemode") else Environment.SANDBOX).value,
    }
    await _account_event(ctx, charge, REFUNDED, refund)
    # A one-time purchase's refund (full or partial) changes what the purchase is worth.
    return Settle(
        customer=customer_id,
        payment_intent=object_id(charge.get("payment_intent")),
        refund={**refund, "customer": customer_id},
    )


HANDLERS: dict[str, Handler] = {
    # The person paid on hosted Checkout: the subscription it created is now ours to track.
    "checkout.session.completed": checkout_session_completed,
    # A subscription began (Checkout, Payment Element, dashboard); often still incomplete.
    "customer.subscription.created": subscription_changed,
    # Any change: status, renewal, plan change, cancel_at_period_end, paused collection.
    "customer.subscription.updated": subscription_changed,
    # The subscription ended (canceled now, at period end, or after failed retries).
    "customer.subscription.deleted": subscription_changed,
    # Status became `paused` (trial ended without a payment method): access stops.
    "customer.subscription.paused": subscription_changed,
    # A paused subscription was resumed: access returns.
    "customer.subscription.resumed": subscription_changed,
    # Three days before a trial ends: tell the account, so the app can remind the person.
    "customer.subscription.trial_will_end": subscription_trial_will_end,
    # A payment succeeded: a past_due or incomplete subscription is active again.
    "invoice.paid": invoice_paid,
    # A renewal payment failed: past_due begins (grace), and the account hears of it.
    "invoice.payment_failed": invoice_payment_failed,
    # The bank wants 3-D Secure: the person must act, or the subscription will not be paid.
    "invoice.payment_action_required": invoice_payment_action_required,
    # The customer is gone (and its subscriptions canceled): forget it so the next purchase makes a new one.
    "customer.deleted": customer_deleted,
    # Money went back: a refunded ended subscription is revoked rather than expired; a one-time
    # purchase takes back its credits (in proportion), and a full refund ends what it granted.
    "charge.refunded": charge_refunded,
    # A one-time purchase paid on hosted Checkout (payment mode, once `payment_status` is paid).
    "checkout.session.async_payment_succeeded": checkout_session_paid,
    # A one-time purchase paid (Checkout or the Payment Element): it is stored and credited once.
    "payment_intent.succeeded": payment_intent_succeeded,
    # The cardholder disputed the payment: the money is gone meanwhile, so the purchase is revoked.
    "charge.dispute.created": dispute_changed,
    # The bank decided: a won dispute restores the purchase, a lost one keeps it revoked.
    "charge.dispute.closed": dispute_changed,
}


def webhook_event_types() -> list[str]:
    """The event types to enable on the Stripe webhook endpoint (for `entitle doctor`)."""
    return sorted(HANDLERS)


# Types whose payload can show that the stored state already reflects them (see Reconciler.reflects).
REFLECTABLE = frozenset({"invoice.paid", "customer.subscription.updated"})
# Types whose handler reads the customer's subscription list rather than one subscription.
CUSTOMER_LEVEL = frozenset({"customer.deleted", "charge.refunded"})
# Types whose handler reads a PaymentIntent (and nothing else).
PURCHASE_LEVEL = frozenset(
    {
        "payment_intent.succeeded",
        "checkout.session.async_payment_succeeded",
        "charge.dispute.created",
        "charge.dispute.closed",
    }
)


async def settle(
    ctx: HandlerContext, events: Sequence[dict[str, Any]], *, purchases_first: bool = False
) -> list[str]:
    """Run every event of one customer through its handler, then make each read it asks for once.

    All events of a batch concern one customer (the inbox's ordering key), so a customer-level read
    (every subscription of the customer) also settles the events that asked for one subscription.
    `purchases_first` re-reads the PaymentIntents before anything else: the batch's read slot was
    reserved for one, and events that joined the batch meanwhile (a refund) must not take it.
    Returns one outcome per event.
    """
    asks: list[Settle] = []
    for event in events:
        handler = HANDLERS.get(str(event.get("type")))
        asks.append(
            Settle(note=f"acknowledged: entitle does not act on {event.get('type')}")
            if handler is None
            else await handler(ctx, event)
        )
    purchases: dict[str, str] = {}

    async def read_purchases() -> None:
        for intent_id in dict.fromkeys(ask.payment_intent for ask in asks if ask.payment_intent):
            if intent_id not in purchases:
                purchases[intent_id] = (
                    await ctx.purchases.payment_intent(ctx.db, intent_id)
                    if ctx.purchases is not None
                    else f"ignored: {intent_id}: one-time purchases are not recorded here"
                )

    if purchases_first:
        await read_purchases()
    customers = list(dict.fromkeys(ask.customer for ask in asks if ask.customer))
    read: dict[str, str] = {}
    for customer_id in customers:
        read[customer_id] = await ctx.reconciler.customer(ctx.db, customer_id)
    # A subscription is read unless every event asking for it is one the stored state already reflects
    # (a renewal's second event, delivered after the read its first one caused).
    needs_read = {
        ask.subscription
        for ask, event in zip(asks, events, strict=True)
        if ask.subscription
        and not (
            str(event.get("type")) in REFLECTABLE
            and await ctx.reconciler.reflects(ctx.db, ask.subscription, _object(event))
        )
    }
    for ask in asks:
        if ask.subscription and not customers and ask.subscription not in read:
            if ask.subscription in needs_read:
                read[ask.subscription] = await ctx.reconciler.subscription(ctx.db, ask.subscription)
            else:
                read[ask.subscription] = f"{ask.subscription}: already stored, not read again"
    settled_by_customer = "; ".join(read[c] for c in customers)
    await read_purchases()

    for ask in asks:
        if ask.refund is not None and not (
            ctx.purchases is not None
            and ask.payment_intent is not None
            and await ctx.purchases.sink.stored(ctx.db, Store.STRIPE, ask.payment_intent) is not None
        ):
            # A subscription's charge (a renewal refunded): the money moves in the log here.
            data = {k: v for k, v in ask.refund.items() if k != "customer"}
            await _account_event(ctx, {"customer": ask.refund["customer"]}, PAYMENT_REFUNDED, data)

    def outcome(ask: Settle) -> str:
        if ask.note is not None:
            return ask.note
        parts = []
        if ask.customer or ask.subscription:
            parts.append(read.get(ask.customer or "") or settled_by_customer or read[ask.subscription or ""])
        if ask.payment_intent:
            parts.append(purchases[ask.payment_intent])
        return "; ".join(parts)

    return [outcome(ask) for ask in asks]


async def handle(ctx: HandlerContext, event: dict[str, Any]) -> str:
    """Settle one event on its own (a batch of one)."""
    return (await settle(ctx, [event]))[0]
