"""A subscription's life as Apple reports it: a small simulator that emits Server Notifications V2.

Each step changes the simulated subscription the way the App Store would (new transaction on renewal,
billing retry and grace on a failed charge, revocation on refund...) and returns the notification Apple
sends for it, signed, with `signedDate` strictly increasing. `random_history` walks only transitions the
App Store can make, so property tests get realistic histories, not arbitrary noise.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field
from typing import Any

from .signing import (
    STATUS_ACTIVE,
    STATUS_BILLING_RETRY,
    STATUS_EXPIRED,
    STATUS_GRACE_PERIOD,
    STATUS_REVOKED,
    AppStoreSigner,
    ms,
)

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


@dataclass(frozen=True)
class Notification:
    notification_type: str
    subtype: str | None
    signed_date: int
    notification_uuid: str
    status: int
    transaction: dict[str, Any]
    renewal_info: dict[str, Any]
    signed_payload: str

    @property
    def body(self) -> dict[str, str]:
        """The JSON body Apple POSTs to the notification URL."""
        return {"signedPayload": self.signed_payload}


@dataclass
class SubscriptionSimulator:
    """One auto-renewable subscription; call the step methods in the order things happen."""

    signer: AppStoreSigner
    original_transaction_id: str
    product_id: str
    app_account_token: str | None
    start: dt.datetime
    period_ms: int = 30 * DAY_MS
    grace_ms: int = 16 * DAY_MS
    ownership: str = "PURCHASED"
    # The other tier in the same subscription group, for upgrades and downgrades.
    alternate_product_id: str = "com.example.app.pro.yearly"
    history: list[Notification] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.clock = ms(self.start)
        self.first_product_id = self.product_id
        self._serial = 0
        self.transaction_id = self.original_transaction_id
        self.purchase_date = self.clock
        self.expires_date = self.clock + self.period_ms
        self.auto_renew = True
        self.auto_renew_product_id = self.product_id
        self.in_billing_retry = False
        self.grace_expires: int | None = None
        self.revocation: tuple[int, int] | None = None
        self.expired = False
        self.subscribed = False
        self.offer: dict[str, Any] = {}
        self.expiration_intent: int | None = None
        self.price_increase_status: int | None = None

    # -- the state Apple would sign now ---------------------------------------------------------
    def _tick(self, at_least: int | None = None) -> int:
        self.clock = max(self.clock + HOUR_MS, at_least or 0)
        return self.clock

    def _other_tier(self) -> str:
        return (
            self.alternate_product_id if self.product_id == self.first_product_id else self.first_product_id
        )

    def _new_transaction(self) -> None:
        self._serial += 1
        self.transaction_id = f"{self.original_transaction_id}{self._serial:03d}"

    def current_transaction(self, **overrides: Any) -> dict[str, Any]:
        extra: dict[str, Any] = dict(self.offer)
        if self.ownership != "PURCHASED":
            extra["inAppOwnershipType"] = self.ownership
        if self.revocation is not None:
            extra["revocationDate"], extra["revocationReason"] = self.revocation
        if self._serial > 0:
            extra.setdefault("transactionReason", "RENEWAL")
        extra.update(overrides)
        return self.signer.transaction(
            original_transaction_id=self.original_transaction_id,
            transaction_id=self.transaction_id,
            product_id=self.product_id,
            purchase_date=self.purchase_date,
            expires_date=self.expires_date,
            signed_date=self.clock,
            app_account_token=self.app_account_token,
            originalPurchaseDate=ms(self.start),
            **extra,
        )

    def current_renewal_info(self) -> dict[str, Any]:
        return self.signer.renewal_info(
            original_transaction_id=self.original_transaction_id,
            product_id=self.product_id,
            signed_date=self.clock,
            auto_renew=self.auto_renew,
            auto_renew_product_id=self.auto_renew_product_id,
            renewal_date=None if self.expired else self.expires_date,
            app_account_token=self.app_account_token,
            isInBillingRetryPeriod=self.in_billing_retry,
            gracePeriodExpiresDate=self.grace_expires,
            expirationIntent=self.expiration_intent,
            priceIncreaseStatus=self.price_increase_status,
        )

    def current_status(self) -> int:
        if self.revocation is not None:
            return STATUS_REVOKED
        if self.expired:
            return STATUS_EXPIRED
        if self.grace_expires is not None:
            return STATUS_GRACE_PERIOD
        if self.in_billing_retry:
            return STATUS_BILLING_RETRY
        return STATUS_ACTIVE

    def _emit(self, notification_type: str, subtype: str | None = None, **tx_overrides: Any) -> Notification:
        transaction = self.current_transaction(**tx_overrides)
        renewal = self.current_renewal_info()
        status = self.current_status()
        payload = self.signer.notification(
            notification_type,
            subtype,
            signed_date=self.clock,
            transaction=transaction,
            renewal_info=renewal,
            status=status,
        )
        note = Notification(
            notification_type=notification_type,
            subtype=subtype,
            signed_date=self.clock,
            notification_uuid=payload["notificationUUID"],
            status=status,
            transaction=transaction,
            renewal_info=renewal,
            signed_payload=self.signer.sign(payload),
        )
        self.history.append(note)
        return note

    # -- steps -----------------------------------------------------------------------------------
    def subscribe(self, *, trial: bool = False) -> Notification:
        resubscribe = self.subscribed
        self.subscribed = True
        if resubscribe:
            self._tick()
            self._new_transaction()
            self.purchase_date = self.clock
            self.expires_date = self.clock + self.period_ms
        self.expired, self.revocation, self.auto_renew = False, None, True
        self.in_billing_retry, self.grace_expires, self.expiration_intent = False, None, None
        self.offer = {"offerType": 1, "offerDiscountType": "FREE_TRIAL"} if trial else {}
        return self._emit("SUBSCRIBED", "RESUBSCRIBE" if resubscribe else "INITIAL_BUY")

    def renew(self) -> Notification:
        recovering = self.in_billing_retry
        self._tick(self.expires_date if not recovering else None)
        self._new_transaction()
        self.purchase_date = self.clock
        self.expires_date = self.clock + self.period_ms
        self.product_id = self.auto_renew_product_id
        self.in_billing_retry, self.grace_expires, self.offer = False, None, {}
        return self._emit("DID_RENEW", "BILLING_RECOVERY" if recovering else None)

    def fail_to_renew(self, *, grace: bool) -> Notification:
        self._tick(self.expires_date)
        self.in_billing_retry = True
        self.expiration_intent = 2
        self.grace_expires = self.expires_date + self.grace_ms if grace else None
        return self._emit("DID_FAIL_TO_RENEW", "GRACE_PERIOD" if grace else None)

    def grace_period_expired(self) -> Notification:
        assert self.grace_expires is not None
        self._tick(self.grace_expires)
        self.grace_expires = None
        return self._emit("GRACE_PERIOD_EXPIRED")

    def expire(self, subtype: str = "VOLUNTARY") -> Notification:
        self._tick(self.expires_date)
        self.expired, self.auto_renew = True, False
        self.in_billing_retry, self.grace_expires = False, None
        self.expiration_intent = {"VOLUNTARY": 1, "BILLING_RETRY": 2, "PRICE_INCREASE": 3}.get(subtype, 4)
        return self._emit("EXPIRED", subtype)

    def set_auto_renew(self, enabled: bool) -> Notification:
        self._tick()
        self.auto_renew = enabled
        self.expiration_intent = None if enabled else 1
        return self._emit(
            "DID_CHANGE_RENEWAL_STATUS", "AUTO_RENEW_ENABLED" if enabled else "AUTO_RENEW_DISABLED"
        )

    def upgrade(self) -> Notification:
        """A higher tier starts now: Apple refunds the rest of the period and issues a new transaction."""
        self._tick()
        self._new_transaction()
        self.product_id = self.auto_renew_product_id = self._other_tier()
        self.purchase_date = self.clock
        self.expires_date = self.clock + self.period_ms
        return self._emit("DID_CHANGE_RENEWAL_PREF", "UPGRADE", transactionReason="PURCHASE")

    def downgrade(self) -> Notification:
        """A lower tier starts only at the next renewal: only the renewal info changes now."""
        self._tick()
        self.auto_renew_product_id = self._other_tier()
        return self._emit("DID_CHANGE_RENEWAL_PREF", "DOWNGRADE")

    def refund(self) -> Notification:
        self._tick()
        self.revocation = (self.clock, 0)
        return self._emit("REFUND")

    def refund_reversed(self) -> Notification:
        self._tick()
        self.revocation = None
        return self._emit("REFUND_REVERSED")

    def family_revoke(self) -> Notification:
        """The purchaser stopped sharing (or left the family): the family member loses access."""
        self._tick()
        self.revocation = (self.clock, 0)
        return self._emit("REVOKE")

    def price_increase(self, *, accepted: bool) -> Notification:
        self._tick()
        self.price_increase_status = 1 if accepted else 0
        return self._emit("PRICE_INCREASE", "ACCEPTED" if accepted else "PENDING")

    def renewal_extended(self, days: int = 7) -> Notification:
        self._tick()
        self.expires_date += days * DAY_MS
        return self._emit("RENEWAL_EXTENDED")

    def offer_redeemed(self) -> Notification:
        self._tick()
        self.offer = {"offerType": 3, "offerIdentifier": "WINTER", "offerDiscountType": "PAY_AS_YOU_GO"}
        return self._emit("OFFER_REDEEMED")

    # -- random walks ----------------------------------------------------------------------------
    def random_step(self, rng: random.Random) -> Notification:
        """One step the App Store could take from the current state."""
        if not self.subscribed:
            return self.subscribe(trial=rng.random() < 0.3)
        if self.revocation is not None:
            if self.ownership == "PURCHASED" and rng.random() < 0.5:
                return self.refund_reversed()
            return self.subscribe()
        if self.expired:
            return self.subscribe()
        if self.in_billing_retry:
            choices = [self.renew, lambda: self.expire("BILLING_RETRY")]
            if self.grace_expires is not None:
                choices.append(self.grace_period_expired)
            return rng.choice(choices)()
        if not self.auto_renew:
            return rng.choice([lambda: self.expire("VOLUNTARY"), lambda: self.set_auto_renew(True)])()
        step = rng.choice(
            [
                self.renew,
                self.renew,
                lambda: self.fail_to_renew(grace=True),
                lambda: self.fail_to_renew(grace=False),
                lambda: self.set_auto_renew(False),
                self.refund if self.ownership == "PURCHASED" else self.family_revoke,
                self.upgrade,
                self.downgrade,
                lambda: self.price_increase(accepted=rng.random() < 0.5),
                self.renewal_extended,
                self.offer_redeemed,
            ]
        )
        return step()


def random_history(
    signer: AppStoreSigner,
    rng: random.Random,
    *,
    steps: int,
    original_transaction_id: str = "2000000100000001",
    product_id: str = "com.example.app.pro.monthly",
    app_account_token: str | None = None,
    start: dt.datetime | None = None,
    ownership: str = "PURCHASED",
) -> SubscriptionSimulator:
    """A simulator that has already taken `steps` random, valid steps (the first is always SUBSCRIBED)."""
    sim = SubscriptionSimulator(
        signer=signer,
        original_transaction_id=original_transaction_id,
        product_id=product_id,
        app_account_token=app_account_token,
        start=start or dt.datetime.now(dt.UTC) - dt.timedelta(days=400),
        ownership=ownership,
    )
    for _ in range(max(1, steps)):
        sim.random_step(rng)
    return sim
