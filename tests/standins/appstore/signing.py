"""Signed App Store data, made the way Apple makes it: compact JWS, ES256, `x5c` = [leaf, intermediate, root].

Payload field names and value shapes follow Apple's JWSTransactionDecodedPayload, JWSRenewalInfoDecodedPayload
and responseBodyV2DecodedPayload: dates are integer milliseconds since the epoch, enums are Apple's raw
values (`"Auto-Renewable Subscription"`, `autoRenewStatus` 1/0, `status` 1-5).
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from typing import Any

import jwt

from .chain import SigningChain

AUTO_RENEWABLE = "Auto-Renewable Subscription"

# Apple's subscription `status` values (Get All Subscription Statuses, notification `data.status`).
STATUS_ACTIVE = 1
STATUS_EXPIRED = 2
STATUS_BILLING_RETRY = 3
STATUS_GRACE_PERIOD = 4
STATUS_REVOKED = 5

_OMIT: Any = object()


def ms(moment: dt.datetime) -> int:
    return int(moment.timestamp() * 1000)


@dataclass
class AppStoreSigner:
    """Signs payloads for one app; every builder takes keyword overrides for any Apple field."""

    chain: SigningChain
    bundle_id: str = "com.example.app"
    app_apple_id: int = 1234
    environment: str = "Sandbox"
    headers: dict[str, Any] = field(default_factory=dict)

    def sign(self, payload: dict[str, Any], *, x5c: Any = _OMIT, key: Any = None) -> str:
        """A compact JWS over `payload`; `x5c=None` leaves the header out, `key` signs with another key."""
        header: dict[str, Any] = dict(self.headers)
        chain_header = self.chain.x5c() if x5c is _OMIT else x5c
        if chain_header is not None:
            header["x5c"] = chain_header
        return jwt.encode(
            payload, key if key is not None else self.chain.leaf_key, algorithm="ES256", headers=header
        )

    def transaction(
        self,
        *,
        original_transaction_id: str,
        transaction_id: str,
        product_id: str,
        purchase_date: int,
        expires_date: int | None,
        signed_date: int,
        app_account_token: str | None = None,
        **overrides: Any,
    ) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "transactionId": transaction_id,
            "originalTransactionId": original_transaction_id,
            "webOrderLineItemId": f"{transaction_id}0",
            "bundleId": self.bundle_id,
            "productId": product_id,
            "subscriptionGroupIdentifier": "21000001",
            "purchaseDate": purchase_date,
            "originalPurchaseDate": purchase_date,
            "quantity": 1,
            "type": AUTO_RENEWABLE,
            "inAppOwnershipType": "PURCHASED",
            "signedDate": signed_date,
            "environment": self.environment,
            "transactionReason": "PURCHASE",
            "storefront": "USA",
            "storefrontId": "143441",
            "price": 9990,
            "currency": "USD",
            "appTransactionId": "704289572311614241",
        }
        if expires_date is not None:
            payload["expiresDate"] = expires_date
        if app_account_token is not None:
            payload["appAccountToken"] = app_account_token
        payload.update(overrides)
        return {k: v for k, v in payload.items() if v is not None}

    def renewal_info(
        self,
        *,
        original_transaction_id: str,
        product_id: str,
        signed_date: int,
        auto_renew: bool = True,
        auto_renew_product_id: str | None = None,
        renewal_date: int | None = None,
        app_account_token: str | None = None,
        **overrides: Any,
    ) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "originalTransactionId": original_transaction_id,
            "productId": product_id,
            "autoRenewProductId": auto_renew_product_id or product_id,
            "autoRenewStatus": 1 if auto_renew else 0,
            "isInBillingRetryPeriod": False,
            "signedDate": signed_date,
            "environment": self.environment,
            "recentSubscriptionStartDate": renewal_date,
            "renewalDate": renewal_date,
            "currency": "USD",
            "renewalPrice": 9990,
            "appAccountToken": app_account_token,
            "appTransactionId": "704289572311614241",
        }
        payload.update(overrides)
        return {k: v for k, v in payload.items() if v is not None}

    def notification(
        self,
        notification_type: str,
        subtype: str | None = None,
        *,
        signed_date: int,
        transaction: dict[str, Any] | None = None,
        renewal_info: dict[str, Any] | None = None,
        status: int | None = None,
        notification_uuid: str | None = None,
        data_overrides: dict[str, Any] | None = None,
        **overrides: Any,
    ) -> dict[str, Any]:
        """The decoded notification payload, with nested transaction and renewal info already signed."""
        data: dict[str, Any] = {
            "appAppleId": self.app_apple_id,
            "bundleId": self.bundle_id,
            "bundleVersion": "42",
            "environment": self.environment,
        }
        if transaction is not None:
            data["signedTransactionInfo"] = self.sign(transaction)
        if renewal_info is not None:
            data["signedRenewalInfo"] = self.sign(renewal_info)
        if status is not None:
            data["status"] = status
        data.update(data_overrides or {})
        payload: dict[str, Any] = {
            "notificationType": notification_type,
            "notificationUUID": notification_uuid or str(uuid.uuid4()),
            "data": data,
            "version": "2.0",
            "signedDate": signed_date,
        }
        if subtype is not None:
            payload["subtype"] = subtype
        payload.update(overrides)
        return payload

    def signed_notification(self, notification_type: str, subtype: str | None = None, **kwargs: Any) -> str:
        """The `signedPayload` string Apple POSTs as `{"signedPayload": ...}`."""
        return self.sign(self.notification(notification_type, subtype, **kwargs))
