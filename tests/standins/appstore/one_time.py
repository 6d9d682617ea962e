"""One-time App Store purchases as Apple reports them: the device's transaction and the notifications.

A `OneTimePurchase` is one StoreKit 2 transaction of type `Non-Consumable`, `Consumable` or
`Non-Renewing Subscription` (each consumable purchase is its own, with its own transactionId). Its steps
return the Server Notification V2 Apple sends (ONE_TIME_CHARGE, REFUND, REFUND_REVERSED, REVOKE,
CONSUMPTION_REQUEST), signed with the test chain, `signedDate` strictly increasing; `signed_transaction`
is the `jwsRepresentation` the app posts. Field names and values follow JWSTransactionDecodedPayload:
`price` in milli-units, `revocationType` REFUND_FULL or FAMILY_REVOKE, no `expiresDate`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from .history import HOUR_MS, Notification
from .signing import AppStoreSigner, ms

NON_CONSUMABLE = "Non-Consumable"
CONSUMABLE = "Consumable"
NON_RENEWING = "Non-Renewing Subscription"


@dataclass
class OneTimePurchase:
    signer: AppStoreSigner
    transaction_id: str
    product_id: str
    type: str
    app_account_token: str | None
    bought_at: dt.datetime
    # Milli-units of `currency`, as StoreKit 2 signs it: 4990 USD is $4.99.
    price: int = 4990
    currency: str = "USD"
    quantity: int = 1
    ownership: str = "PURCHASED"
    history: list[Notification] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.clock = ms(self.bought_at)
        self.revocation: dict[str, Any] = {}

    def _tick(self) -> int:
        self.clock += HOUR_MS
        return self.clock

    def transaction(self, **overrides: Any) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "transactionId": self.transaction_id,
            "originalTransactionId": self.transaction_id,
            "bundleId": self.signer.bundle_id,
            "productId": self.product_id,
            "purchaseDate": ms(self.bought_at),
            "originalPurchaseDate": ms(self.bought_at),
            "quantity": self.quantity,
            "type": self.type,
            "inAppOwnershipType": self.ownership,
            "signedDate": self.clock,
            "environment": self.signer.environment,
            "transactionReason": "PURCHASE",
            "storefront": "USA",
            "storefrontId": "143441",
            "price": self.price,
            "currency": self.currency,
            "appTransactionId": "704289572311614241",
            "appAccountToken": self.app_account_token,
            **self.revocation,
        }
        payload.update(overrides)
        return {k: v for k, v in payload.items() if v is not None}

    def signed_transaction(self, **overrides: Any) -> str:
        """The transaction as the device holds it now (StoreKit signs it when the app reads it)."""
        return self.signer.sign(self.transaction(**overrides))

    def _emit(self, notification_type: str, subtype: str | None = None, **data: Any) -> Notification:
        transaction = self.transaction()
        payload = self.signer.notification(
            notification_type, subtype, signed_date=self.clock, transaction=transaction, data_overrides=data
        )
        note = Notification(
            notification_type=notification_type,
            subtype=subtype,
            signed_date=self.clock,
            notification_uuid=payload["notificationUUID"],
            status=0,
            transaction=transaction,
            renewal_info={},
            signed_payload=self.signer.sign(payload),
        )
        self.history.append(note)
        return note

    # -- steps -----------------------------------------------------------------------------------
    def buy(self) -> Notification:
        return self._emit("ONE_TIME_CHARGE")

    def refund(self) -> Notification:
        self._tick()
        self.revocation = {
            "revocationDate": self.clock,
            "revocationReason": 0,
            "revocationType": "REFUND_FULL",
        }
        return self._emit("REFUND")

    def refund_reversed(self) -> Notification:
        self._tick()
        self.revocation = {}
        return self._emit("REFUND_REVERSED")

    def family_revoke(self) -> Notification:
        self._tick()
        self.revocation = {
            "revocationDate": self.clock,
            "revocationReason": 0,
            "revocationType": "FAMILY_REVOKE",
        }
        return self._emit("REVOKE")

    def consumption_request(self, reason: str = "UNINTENDED_PURCHASE") -> Notification:
        self._tick()
        return self._emit("CONSUMPTION_REQUEST", consumptionRequestReason=reason)
