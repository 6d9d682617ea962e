"""App Store data -> core SubscriptionState: one test per status rule."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest

from entitle.core.catalog import Catalog
from entitle.core.subscriptions import Environment, Store, SubscriptionStatus
from entitle.providers.appstore.mapping import decide_status, subscription_state
from entitle.providers.appstore.verification import (
    AppStoreVerifier,
    VerifiedNotification,
    VerifiedRenewalInfo,
    VerifiedTransaction,
)
from tests.providers.appstore.constants import MONTHLY
from tests.standins.appstore import AppStoreSigner, ms

DAY = dt.timedelta(days=1)
ACCOUNT = uuid.UUID("0b8e4a5e-4d43-4c1b-9a7e-0a4a5cb0c001")


class Build:
    """Signs and verifies payloads dated around `now`, so every test reads like a timeline."""

    def __init__(self, signer: AppStoreSigner, verifier: AppStoreVerifier, now: dt.datetime) -> None:
        self.signer, self.verifier, self.now = signer, verifier, now

    def transaction(self, *, expires_in: dt.timedelta = 20 * DAY, **overrides: Any) -> VerifiedTransaction:
        payload = self.signer.transaction(
            original_transaction_id="2000000100000001",
            transaction_id="2000000100000009",
            product_id=overrides.pop("productId", MONTHLY),
            purchase_date=ms(self.now + expires_in - 30 * DAY),
            expires_date=ms(self.now + expires_in),
            signed_date=ms(self.now - DAY),
            **overrides,
        )
        return self.verifier.verify_transaction(self.signer.sign(payload))

    def renewal(self, **overrides: Any) -> VerifiedRenewalInfo:
        payload = self.signer.renewal_info(
            original_transaction_id="2000000100000001",
            product_id=MONTHLY,
            signed_date=ms(self.now - DAY),
            **overrides,
        )
        return self.verifier.verify_renewal_info(self.signer.sign(payload))

    def notification(self, kind: str, subtype: str | None = None, **kwargs: Any) -> VerifiedNotification:
        signed = self.signer.signed_notification(kind, subtype, signed_date=ms(self.now), **kwargs)
        return self.verifier.verify_notification(signed)


@pytest.fixture
def build(signer: AppStoreSigner, verifier: AppStoreVerifier, now: dt.datetime) -> Build:
    return Build(signer, verifier, now)


def test_active_subscription_maps_every_field(build: Build, catalog: Catalog, now: dt.datetime) -> None:
    tx, renewal = build.transaction(), build.renewal()
    state = subscription_state(tx, renewal, account_id=ACCOUNT, catalog=catalog, now=now)
    assert state.store is Store.APP_STORE
    assert state.store_subscription_id == "2000000100000001"
    assert state.account_id == ACCOUNT
    assert (state.product, state.store_product_id) == ("pro_monthly", MONTHLY)
    assert state.status is SubscriptionStatus.ACTIVE
    assert state.current_period_end == dt.datetime.fromtimestamp(tx.payload.expiresDate / 1000, dt.UTC)
    assert state.will_renew is True
    assert state.environment is Environment.SANDBOX
    # Without a notification, the transaction's own signedDate is the vendor timestamp.
    assert state.vendor_updated_at == now - DAY
    assert state.raw["transaction"]["transactionId"] == "2000000100000009"
    assert state.grace_period_ends_at is None


def test_unknown_product_maps_to_no_catalog_product(build: Build, catalog: Catalog, now: dt.datetime) -> None:
    state = subscription_state(
        build.transaction(productId="com.example.app.legacy"),
        None,
        account_id=ACCOUNT,
        catalog=catalog,
        now=now,
    )
    assert state.product is None and state.store_product_id == "com.example.app.legacy"


def test_vendor_timestamp_is_the_notification_signed_date(
    build: Build, catalog: Catalog, now: dt.datetime
) -> None:
    note = build.notification("DID_RENEW")
    state = subscription_state(
        build.transaction(), build.renewal(), account_id=ACCOUNT, catalog=catalog, now=now, notification=note
    )
    assert state.vendor_updated_at == now
    assert state.raw["notification"]["type"] == "DID_RENEW"


def test_auto_renew_off_is_canceled_at_period_end(build: Build, now: dt.datetime) -> None:
    status = decide_status(build.transaction(), build.renewal(auto_renew=False), now=now)
    assert status is SubscriptionStatus.CANCELED_AT_PERIOD_END


def test_free_trial_is_trialing(build: Build, now: dt.datetime) -> None:
    trial = build.transaction(offerType=1, offerDiscountType="FREE_TRIAL")
    assert decide_status(trial, build.renewal(), now=now) is SubscriptionStatus.TRIALING


def test_paid_introductory_price_is_active(build: Build, now: dt.datetime) -> None:
    intro = build.transaction(offerType=1, offerDiscountType="PAY_AS_YOU_GO")
    assert decide_status(intro, build.renewal(), now=now) is SubscriptionStatus.ACTIVE


def test_offer_code_is_active(build: Build, now: dt.datetime) -> None:
    assert (
        decide_status(build.transaction(offerType=3), build.renewal(), now=now) is SubscriptionStatus.ACTIVE
    )


def test_refund_revokes(build: Build, catalog: Catalog, now: dt.datetime) -> None:
    refunded = build.transaction(revocationDate=ms(now - DAY), revocationReason=1)
    state = subscription_state(refunded, build.renewal(), account_id=ACCOUNT, catalog=catalog, now=now)
    assert state.status is SubscriptionStatus.REVOKED
    assert state.will_renew is False


def test_family_sharing_revocation_revokes(build: Build, now: dt.datetime) -> None:
    shared = build.transaction(inAppOwnershipType="FAMILY_SHARED", revocationDate=ms(now), revocationReason=0)
    note = build.notification("REVOKE")
    status = decide_status(shared, build.renewal(), now=now, notification_type=note.notification_type)
    assert status is SubscriptionStatus.REVOKED


def test_past_expiry_without_retry_is_expired(build: Build, now: dt.datetime) -> None:
    status = decide_status(build.transaction(expires_in=-DAY), build.renewal(auto_renew=False), now=now)
    assert status is SubscriptionStatus.EXPIRED


def test_expired_notification_is_expired_even_before_expires_date(build: Build, now: dt.datetime) -> None:
    status = decide_status(build.transaction(), build.renewal(), now=now, notification_type="EXPIRED")
    assert status is SubscriptionStatus.EXPIRED


def test_apple_status_expired_is_expired(build: Build, now: dt.datetime) -> None:
    assert (
        decide_status(build.transaction(), build.renewal(), now=now, apple_status=2)
        is SubscriptionStatus.EXPIRED
    )


def test_grace_period_keys_on_grace_date(build: Build, catalog: Catalog, now: dt.datetime) -> None:
    grace_ends = now + 10 * DAY
    renewal = build.renewal(isInBillingRetryPeriod=True, gracePeriodExpiresDate=ms(grace_ends))
    note = build.notification("DID_FAIL_TO_RENEW", "GRACE_PERIOD")
    state = subscription_state(
        build.transaction(expires_in=-DAY),
        renewal,
        account_id=ACCOUNT,
        catalog=catalog,
        now=now,
        notification=note,
    )
    assert state.status is SubscriptionStatus.IN_GRACE_PERIOD
    assert state.grace_period_ends_at == grace_ends


def test_billing_retry_flag_alone_is_not_grace(build: Build, now: dt.datetime) -> None:
    renewal = build.renewal(isInBillingRetryPeriod=True)
    status = decide_status(
        build.transaction(expires_in=-DAY), renewal, now=now, notification_type="DID_FAIL_TO_RENEW"
    )
    assert status is SubscriptionStatus.IN_BILLING_RETRY


def test_failure_signed_just_before_expiry_is_billing_retry(build: Build, now: dt.datetime) -> None:
    renewal = build.renewal(isInBillingRetryPeriod=True)
    tx = build.transaction(expires_in=dt.timedelta(seconds=5))
    assert decide_status(tx, renewal, now=now, notification_type="DID_FAIL_TO_RENEW") is (
        SubscriptionStatus.IN_BILLING_RETRY
    )


def test_grace_date_passed_is_billing_retry(build: Build, now: dt.datetime) -> None:
    renewal = build.renewal(isInBillingRetryPeriod=True, gracePeriodExpiresDate=ms(now - DAY))
    status = decide_status(build.transaction(expires_in=-10 * DAY), renewal, now=now)
    assert status is SubscriptionStatus.IN_BILLING_RETRY


def test_grace_period_expired_notification_ends_grace(build: Build, now: dt.datetime) -> None:
    # Apple may still show the date in the renewal info; the notification says grace is over.
    renewal = build.renewal(
        isInBillingRetryPeriod=True, gracePeriodExpiresDate=ms(now + dt.timedelta(seconds=1))
    )
    status = decide_status(
        build.transaction(expires_in=-16 * DAY), renewal, now=now, notification_type="GRACE_PERIOD_EXPIRED"
    )
    assert status is SubscriptionStatus.IN_BILLING_RETRY


def test_downgrade_keeps_current_product_until_renewal(
    build: Build, catalog: Catalog, now: dt.datetime
) -> None:
    renewal = build.renewal(autoRenewProductId="com.example.app.pro.yearly")
    note = build.notification("DID_CHANGE_RENEWAL_PREF", "DOWNGRADE")
    state = subscription_state(
        build.transaction(), renewal, account_id=ACCOUNT, catalog=catalog, now=now, notification=note
    )
    assert state.product == "pro_monthly"
    assert state.status is SubscriptionStatus.ACTIVE


def test_production_environment_maps_to_production(
    production_signer: AppStoreSigner, verifier: AppStoreVerifier, catalog: Catalog, now: dt.datetime
) -> None:
    state = subscription_state(
        Build(production_signer, verifier, now).transaction(),
        None,
        account_id=ACCOUNT,
        catalog=catalog,
        now=now,
    )
    assert state.environment is Environment.PRODUCTION
