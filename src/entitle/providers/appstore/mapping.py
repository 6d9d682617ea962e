"""App Store transaction + renewal info (+ notification type) -> the core `SubscriptionState`; and a
one-time transaction (non-consumable, consumable, non-renewing subscription) -> the core `PurchaseState`
(`purchase_state`, at the end of this module).

The status decision, in order:
1. A revocation date (refund, Family Sharing ended) -> REVOKED, whatever else the data says.
2. An EXPIRED notification, or Apple's own status EXPIRED -> EXPIRED.
3. Before `expiresDate` the period is paid for: auto-renew off -> CANCELED_AT_PERIOD_END; a free trial
   -> TRIALING; otherwise ACTIVE.
4. After `expiresDate`: a `gracePeriodExpiresDate` still ahead -> IN_GRACE_PERIOD (access continues);
   otherwise billing retry -> IN_BILLING_RETRY (no access); otherwise EXPIRED. Grace is keyed on the date,
   not on `isInBillingRetryPeriod`, which is true both in grace and after it.
A DID_FAIL_TO_RENEW or GRACE_PERIOD_EXPIRED notification settles step 4 even when it arrives signed a few
seconds before `expiresDate`. The vendor timestamp is the notification's `signedDate` (or the
transaction's, for data the app posts), so an older snapshot never overwrites a newer one.

A transaction in an introductory offer (free or paid) is the account's trial (`trial_started_at`, its
`purchaseDate`): renewals replace the stored transaction, so the services keep that fact apart.

A newer `signedDate` is not enough for a transaction, though (`stale_reason`): the App Store signs a
transaction's JWS when a device or a notification fetches it, so an old transaction can arrive freshly
signed. One that was upgraded away (`isUpgraded`) or that an already stored, later-bought transaction of the
same subscription replaced never becomes the subscription's state; a device copy of the stored transaction
(which carries no renewal info) is applied only when Apple changed that transaction since.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from typing import Any

from appstoreserverlibrary.models.AutoRenewStatus import AutoRenewStatus
from appstoreserverlibrary.models.Environment import Environment as AppleEnvironment
from appstoreserverlibrary.models.OfferType import OfferType

from entitle.core.catalog import Catalog, ProductType
from entitle.core.currencies import minor_unit_digits
from entitle.core.purchases import PurchaseState
from entitle.core.subscriptions import Environment, Store, SubscriptionState, SubscriptionStatus
from entitle.providers.appstore.verification import (
    VerifiedNotification,
    VerifiedRenewalInfo,
    VerifiedTransaction,
    from_millis,
)

# Apple's subscription status values (notification `data.status`, Get All Subscription Statuses).
APPLE_STATUS_EXPIRED = 2
APPLE_STATUS_REVOKED = 5
# Notifications that mean "the renewal charge failed", whatever the dates say.
_FAILED_RENEWAL_TYPES = frozenset({"DID_FAIL_TO_RENEW", "GRACE_PERIOD_EXPIRED"})


def decide_status(
    transaction: VerifiedTransaction,
    renewal_info: VerifiedRenewalInfo | None,
    *,
    now: dt.datetime,
    notification_type: str | None = None,
    apple_status: int | None = None,
) -> SubscriptionStatus:
    tx = transaction.payload
    renewal = renewal_info.payload if renewal_info is not None else None
    if tx.revocationDate is not None or apple_status == APPLE_STATUS_REVOKED:
        return SubscriptionStatus.REVOKED
    if notification_type == "EXPIRED" or apple_status == APPLE_STATUS_EXPIRED:
        return SubscriptionStatus.EXPIRED
    expires_at = from_millis(tx.expiresDate)
    failed = notification_type in _FAILED_RENEWAL_TYPES
    if not failed and (expires_at is None or now < expires_at):
        if renewal is not None and renewal.autoRenewStatus == AutoRenewStatus.OFF:
            return SubscriptionStatus.CANCELED_AT_PERIOD_END
        if is_free_trial(transaction):
            return SubscriptionStatus.TRIALING
        return SubscriptionStatus.ACTIVE
    grace_ends = from_millis(renewal.gracePeriodExpiresDate) if renewal is not None else None
    if notification_type != "GRACE_PERIOD_EXPIRED" and grace_ends is not None and now < grace_ends:
        return SubscriptionStatus.IN_GRACE_PERIOD
    if failed or (renewal is not None and renewal.isInBillingRetryPeriod):
        return SubscriptionStatus.IN_BILLING_RETRY
    return SubscriptionStatus.EXPIRED


# Fields of one transaction that Apple changes after the purchase: a refund (or its reversal), an extension.
_MUTABLE_TRANSACTION_FIELDS = ("revocationDate", "revocationReason", "expiresDate")


def stale_reason(
    transaction: VerifiedTransaction, stored: Mapping[str, Any] | None, *, from_device: bool
) -> str | None:
    """Why `transaction` must not become its subscription's state, or None when it may.

    `stored` is the raw transaction kept with the subscription; `from_device` marks a transaction the app
    posted on its own, without the renewal info a notification or the Server API brings along.
    """
    if transaction.payload.isUpgraded:
        # https://developer.apple.com/documentation/appstoreservernotifications/isupgraded: the customer's
        # service is the other transaction's, with the same originalTransactionId.
        return "upgraded to another product"
    if stored is None:
        return None
    if stored.get("transactionId") != transaction.raw.get("transactionId"):
        if _millis(stored.get("purchaseDate")) > _millis(transaction.raw.get("purchaseDate")):
            return "an earlier transaction than the stored one"
        return None
    if from_device and all(transaction.raw.get(k) == stored.get(k) for k in _MUTABLE_TRANSACTION_FIELDS):
        # Nothing Apple changed since; applying it would drop the renewal info we hold.
        return "nothing new in the device's copy"
    return None


def _millis(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def is_free_trial(transaction: VerifiedTransaction) -> bool:
    """An introductory offer that costs nothing; paid introductory prices are ordinary paid periods."""
    discount = transaction.raw.get("offerDiscountType")
    if discount is not None:
        return bool(discount == "FREE_TRIAL")
    # Payloads older than offerDiscountType (and Xcode's) only say "introductory offer".
    return transaction.payload.offerType == OfferType.INTRODUCTORY_OFFER


def core_environment(environment: AppleEnvironment | None) -> Environment:
    # Sandbox, Xcode and LocalTesting are all test money.
    return Environment.PRODUCTION if environment == AppleEnvironment.PRODUCTION else Environment.SANDBOX


def notification_summary(notification: VerifiedNotification) -> dict[str, Any]:
    """What a stored state keeps of the notification it came from, for support."""
    return {
        "type": notification.notification_type,
        "subtype": notification.subtype,
        "uuid": notification.notification_uuid,
        "signed_date": notification.raw.get("signedDate"),
    }


def subscription_state(
    transaction: VerifiedTransaction,
    renewal_info: VerifiedRenewalInfo | None,
    *,
    account_id: uuid.UUID,
    catalog: Catalog,
    now: dt.datetime,
    notification: VerifiedNotification | None = None,
    apple_status: int | None = None,
) -> SubscriptionState:
    """The core snapshot of one App Store subscription, keyed by its `originalTransactionId`."""
    tx = transaction.payload
    notification_type = notification.notification_type if notification is not None else None
    if apple_status is None and notification is not None:
        apple_status = notification.status
    status = decide_status(
        transaction, renewal_info, now=now, notification_type=notification_type, apple_status=apple_status
    )
    renewal = renewal_info.payload if renewal_info is not None else None
    if renewal is not None:
        will_renew = renewal.autoRenewStatus == AutoRenewStatus.ON
    else:
        # A bare transaction from the device says nothing about renewal; assume the default until Apple tells.
        will_renew = status in (SubscriptionStatus.ACTIVE, SubscriptionStatus.TRIALING)
    if status in (SubscriptionStatus.EXPIRED, SubscriptionStatus.REVOKED):
        will_renew = False
    signed = from_millis(notification.raw.get("signedDate")) if notification is not None else None
    vendor_updated_at = signed or from_millis(tx.signedDate) or now
    product_id = tx.productId or ""
    product = catalog.product_by_app_store_id(product_id)
    raw: dict[str, Any] = {"transaction": transaction.raw}
    if renewal_info is not None:
        raw["renewal_info"] = renewal_info.raw
    if notification is not None:
        raw["notification"] = {**notification_summary(notification), "status": notification.status}
    return SubscriptionState(
        store=Store.APP_STORE,
        store_subscription_id=str(tx.originalTransactionId),
        account_id=account_id,
        product=product.key if product is not None else None,
        store_product_id=product_id,
        status=status,
        current_period_end=from_millis(tx.expiresDate),
        will_renew=will_renew,
        environment=core_environment(transaction.environment),
        vendor_updated_at=vendor_updated_at,
        raw=raw,
        grace_period_ends_at=(
            from_millis(renewal.gracePeriodExpiresDate)
            if renewal is not None and status is SubscriptionStatus.IN_GRACE_PERIOD
            else None
        ),
        trial_started_at=from_millis(tx.purchaseDate) if is_introductory_offer(transaction) else None,
    )


def is_introductory_offer(transaction: VerifiedTransaction) -> bool:
    """A transaction in an introductory offer, free or paid: Apple gives one per subscription group, and
    it is the App Store's trial (https://developer.apple.com/documentation/appstoreserverapi/offertype)."""
    return transaction.payload.offerType == OfferType.INTRODUCTORY_OFFER


# StoreKit 2 `type` values of what is paid once, and the catalog type each stands for.
# https://developer.apple.com/documentation/appstoreserverapi/type
ONE_TIME_TYPES = {
    "Non-Consumable": ProductType.NON_CONSUMABLE,
    "Consumable": ProductType.CONSUMABLE,
    "Non-Renewing Subscription": ProductType.NON_RENEWING,
}
# `revocationType` of a Family Sharing revocation (the purchaser refunded, or the member left the family).
FAMILY_REVOKE = "FAMILY_REVOKE"


def is_one_time(transaction: VerifiedTransaction) -> bool:
    """A non-consumable, consumable or non-renewing subscription transaction (keyed by its transactionId)."""
    return transaction.raw.get("type") in ONE_TIME_TYPES


def minor_units(milli: Any, currency: str) -> int | None:
    """Apple's `price` (milli-units of `currency`) in the currency's minor units: 9990 USD is 999 cents,
    1200000 JPY is 1200 yen; half a minor unit rounds up. None when there is no price to read."""
    if not isinstance(milli, int) or isinstance(milli, bool) or milli < 0:
        return None
    scale: int = 10 ** (3 - minor_unit_digits(currency))
    return (int(milli) + scale // 2) // scale


def purchase_state(
    transaction: VerifiedTransaction,
    *,
    account_id: uuid.UUID,
    catalog: Catalog,
    notification: VerifiedNotification | None = None,
) -> PurchaseState:
    """The core state of one App Store one-time purchase, keyed by its `transactionId`.

    A revocation is a refund (the money went back: `refunded_amount` is all of it) unless it is Family
    Sharing's (the purchaser refunded or left the family: the member paid nothing, so nothing is refunded
    to them). A family member's transaction says what the purchaser paid; it is not this account's money,
    so the state carries no amount (`payment.succeeded` is the purchaser's, from their own transaction).
    """
    tx = transaction.payload
    raw_type = str(transaction.raw.get("type") or "")
    product_id = tx.productId or ""
    product = catalog.product_by_app_store_id(product_id)
    kind = product.type if product is not None and product.is_one_time else ONE_TIME_TYPES[raw_type]
    family = transaction.raw.get("inAppOwnershipType") == "FAMILY_SHARED"
    currency = str(transaction.raw.get("currency") or "").lower() or None
    amount = minor_units(transaction.raw.get("price"), currency) if currency and not family else None
    revoked_at = from_millis(tx.revocationDate)
    reason = None
    if revoked_at is not None:
        family_revoke = transaction.raw.get("revocationType") == FAMILY_REVOKE or (
            family and (notification is None or notification.notification_type == "REVOKE")
        )
        reason = "revoked" if family_revoke else "refunded"
    quantity = transaction.raw.get("quantity")
    if not isinstance(quantity, int) or isinstance(quantity, bool) or quantity < 1:
        quantity = 1
    signed = from_millis(notification.raw.get("signedDate")) if notification is not None else None
    raw: dict[str, Any] = {"transaction": transaction.raw}
    if notification is not None:
        raw["notification"] = notification_summary(notification)
    purchased_at = from_millis(tx.purchaseDate) or from_millis(tx.signedDate) or dt.datetime.now(dt.UTC)
    return PurchaseState(
        store=Store.APP_STORE,
        store_purchase_id=str(tx.transactionId),
        account_id=account_id,
        product=product.key if product is not None else None,
        store_product_id=product_id,
        type=kind,
        quantity=quantity,
        purchased_at=purchased_at,
        environment=core_environment(transaction.environment),
        vendor_updated_at=signed or from_millis(tx.signedDate) or purchased_at,
        amount=amount,
        currency=currency if amount is not None else None,
        refunded_amount=(amount or 0) if reason == "refunded" else 0,
        revoked_at=revoked_at,
        revocation_reason=reason,
        # Apple dates no end for a non-renewing subscription (the app manages it): the catalog decides.
        store_expires_at=from_millis(tx.expiresDate) if kind is ProductType.NON_RENEWING else None,
        raw=raw,
        family_shared=family,
    )
