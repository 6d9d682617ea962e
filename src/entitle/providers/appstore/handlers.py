"""One handler per App Store Server Notification V2 type, in one explicit table (`HANDLERS`).

Each handler gets a `NotificationContext` (the verified notification, the session, the clock) and returns
a short outcome for the inbox row. Most types change the subscription, and for those the handler applies
the snapshot the notification carries: the status rules live in `mapping.decide_status`, and the
subscription service ignores a snapshot older than what is stored, so handlers stay small and order-free.
A one-time transaction (ONE_TIME_CHARGE, and REFUND, REFUND_REVERSED or REVOKE of one) applies its
purchase's state the same way (`ctx.apply` tells the two apart; `mapping.purchase_state`).
A type missing from the table is stored, acknowledged and left alone (`process_notification`).
Reference: https://developer.apple.com/documentation/appstoreservernotifications/notificationtype
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from entitle.core import events
from entitle.core.subscriptions import Environment
from entitle.providers.appstore.consumption import answer_consumption_request
from entitle.providers.appstore.mapping import core_environment, is_free_trial, is_one_time, minor_units
from entitle.providers.appstore.notifications import NotificationContext, is_family_shared

Handler = Callable[[NotificationContext], Awaitable[str]]

REFUNDED = "appstore.refunded"
REFUND_REVERSED = "appstore.refund_reversed"
REFUND_DECLINED = "appstore.refund_declined"
FAMILY_SHARING_REVOKED = "appstore.family_sharing_revoked"
CONSUMPTION_REQUESTED = "appstore.consumption_requested"
PRICE_INCREASE = "appstore.price_increase"
RENEWAL_PREFERENCE_CHANGED = "appstore.renewal_preference_changed"
# The names every payment has in the event log (core.events), with the amount in the currency's minor
# units; written here for each paid App Store subscription period and each refunded one (one-time
# purchases log theirs when the purchase is stored: services.access.purchases).
PAYMENT_SUCCEEDED = events.PAYMENT_SUCCEEDED
PAYMENT_REFUNDED = events.PAYMENT_REFUNDED


async def _record_payment(ctx: NotificationContext, type: str = PAYMENT_SUCCEEDED) -> None:
    """A subscription period was charged: `payment.succeeded` with what Apple says was paid.

    Nothing is recorded for a free trial (whatever price the transaction names), a transaction without a
    price or at 0, or a family member's transaction (the purchaser paid, on their own transaction). Each
    notification is processed once (the inbox is unique on its notificationUUID), so each payment is
    recorded once."""
    transaction = ctx.note.transaction
    if transaction is None or is_family_shared(transaction) or is_free_trial(transaction):
        return
    currency = str(transaction.raw.get("currency") or "").lower()
    amount = minor_units(transaction.raw.get("price"), currency) if currency else None
    if not amount:
        return
    product = ctx.catalog.product_by_app_store_id(transaction.payload.productId or "")
    environment: Environment = core_environment(transaction.environment)
    if type == PAYMENT_REFUNDED and is_one_time(transaction):
        return  # a one-time purchase's refund is logged with the purchase
    amount_key = "amount_refunded" if type == PAYMENT_REFUNDED else "amount"
    await ctx.record(
        type,
        {
            "store": "app_store",
            "subscription_id": str(transaction.payload.originalTransactionId),
            "transaction_id": str(transaction.payload.transactionId),
            "product": product.key if product is not None else None,
            amount_key: amount,
            "currency": currency,
            "environment": environment.value,
        },
    )


async def subscribed(ctx: NotificationContext) -> str:
    outcome = await ctx.apply()
    await _record_payment(ctx)
    return outcome


async def did_renew(ctx: NotificationContext) -> str:
    outcome = await ctx.apply()
    await _record_payment(ctx)
    return outcome


async def one_time_charge(ctx: NotificationContext) -> str:
    # A non-consumable, consumable or non-renewing subscription was bought (perhaps before the app posts
    # it): the purchase's state, keyed by its transactionId, so the app's post later changes nothing.
    transaction = ctx.note.transaction
    if transaction is not None and not is_one_time(transaction):
        return f"ignored: {transaction.raw.get('type')} in ONE_TIME_CHARGE"
    return await ctx.apply()


async def did_fail_to_renew(ctx: NotificationContext) -> str:
    # With subtype GRACE_PERIOD, renewal info carries gracePeriodExpiresDate and access continues.
    return await ctx.apply()


async def grace_period_expired(ctx: NotificationContext) -> str:
    return await ctx.apply()


async def expired(ctx: NotificationContext) -> str:
    # VOLUNTARY, BILLING_RETRY, PRICE_INCREASE, PRODUCT_NOT_FOR_SALE: all end access the same way.
    return await ctx.apply()


async def did_change_renewal_pref(ctx: NotificationContext) -> str:
    # UPGRADE carries the new product's transaction (effective now); DOWNGRADE only changes the renewal
    # info's autoRenewProductId, so the current product stays until the next DID_RENEW.
    outcome = await ctx.apply()
    renewal = ctx.note.renewal_info
    await ctx.record(
        RENEWAL_PREFERENCE_CHANGED,
        {
            "subtype": ctx.note.subtype,
            "auto_renew_product_id": renewal.payload.autoRenewProductId if renewal is not None else None,
        },
    )
    return outcome


async def did_change_renewal_status(ctx: NotificationContext) -> str:
    return await ctx.apply()


async def offer_redeemed(ctx: NotificationContext) -> str:
    return await ctx.apply()


async def price_increase(ctx: NotificationContext) -> str:
    # PENDING: the person has not consented yet (renewal may stop); ACCEPTED: it will renew at the new price.
    outcome = await ctx.apply()
    await ctx.record(PRICE_INCREASE, {"subtype": ctx.note.subtype})
    return outcome


async def refund(ctx: NotificationContext) -> str:
    outcome = await ctx.apply()
    await ctx.record(REFUNDED, ctx.revocation_details())
    await _record_payment(ctx, PAYMENT_REFUNDED)
    return outcome


async def refund_reversed(ctx: NotificationContext) -> str:
    outcome = await ctx.apply()
    await ctx.record(REFUND_REVERSED, {})
    return outcome


async def refund_declined(ctx: NotificationContext) -> str:
    await ctx.record(REFUND_DECLINED, {})
    return "recorded"


async def revoke(ctx: NotificationContext) -> str:
    outcome = await ctx.apply()
    await ctx.record(FAMILY_SHARING_REVOKED, ctx.revocation_details())
    return outcome


async def renewal_extended(ctx: NotificationContext) -> str:
    return await ctx.apply()


async def consumption_request(ctx: NotificationContext) -> str:
    # Apple asks what we know about a purchase whose refund was requested: answered only with the
    # person's consent (the app posted `consented: true`), and recorded for support either way.
    details = {"reason": ctx.note.raw.get("data", {}).get("consumptionRequestReason")}
    transaction = ctx.note.transaction
    if transaction is not None and await ctx.find_owner() is not None:
        details.update(
            await answer_consumption_request(
                ctx.db, transaction, api=ctx.api, catalog=ctx.catalog, now=ctx.now
            )
        )
    await ctx.record(CONSUMPTION_REQUESTED, details)
    return "sent" if details.get("sent") else "recorded"


async def acknowledge(ctx: NotificationContext) -> str:
    return f"acknowledged {ctx.note.notification_type}"


HANDLERS: dict[str, Handler] = {
    # A first purchase (INITIAL_BUY) or a return after expiry (RESUBSCRIBE): access starts.
    "SUBSCRIBED": subscribed,
    # A renewal was charged, including BILLING_RECOVERY after failed attempts: a new paid period.
    "DID_RENEW": did_renew,
    # The renewal charge failed: grace period keeps access (GRACE_PERIOD), otherwise billing retry ends it.
    "DID_FAIL_TO_RENEW": did_fail_to_renew,
    # Grace ran out while Apple still retries the charge: access ends, the subscription may still recover.
    "GRACE_PERIOD_EXPIRED": grace_period_expired,
    # The subscription ended (voluntarily, after billing retry, price increase refused, product withdrawn).
    "EXPIRED": expired,
    # A plan change: an upgrade applies now, a downgrade at the next renewal.
    "DID_CHANGE_RENEWAL_PREF": did_change_renewal_pref,
    # Auto-renew switched off (access until period end) or back on.
    "DID_CHANGE_RENEWAL_STATUS": did_change_renewal_status,
    # An offer code or promotional offer was redeemed: new offer terms on the same subscription.
    "OFFER_REDEEMED": offer_redeemed,
    # A price increase needs (PENDING) or got (ACCEPTED) consent: renewal may change.
    "PRICE_INCREASE": price_increase,
    # Apple refunded the purchase: revocationDate is set and access ends now; a one-time purchase's
    # credits are taken back (handlers below apply either kind through `ctx.apply`).
    "REFUND": refund,
    # Apple reversed an earlier refund: access (and a consumable's credits) is restored.
    "REFUND_REVERSED": refund_reversed,
    # Apple declined a refund request: nothing changes, but support wants to know.
    "REFUND_DECLINED": refund_declined,
    # Family Sharing ended for a family member (or the purchaser refunded): that member loses access, to
    # a subscription or a shared non-consumable alike.
    "REVOKE": revoke,
    # The renewal date moved out (customer-service extension): the period ends later.
    "RENEWAL_EXTENDED": renewal_extended,
    # A mass renewal extension finished (a summary, no single subscription): nothing to apply.
    "RENEWAL_EXTENSION": acknowledge,
    # Apple asks for consumption information about a refund request: answered with consent, recorded.
    "CONSUMPTION_REQUEST": consumption_request,
    # A one-time product was bought (non-consumable, consumable, non-renewing subscription).
    "ONE_TIME_CHARGE": one_time_charge,
    # Sent from App Store Connect or the API to check the endpoint works.
    "TEST": acknowledge,
}
