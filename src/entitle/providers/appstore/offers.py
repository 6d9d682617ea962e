"""Promotional offers: what StoreKit needs to apply one, signed with the app's In-App Purchase key.

Apple checks the signature when the person buys, so only a server holding the key (downloaded from App
Store Connect, the same one the Server API client uses) can grant an offer. Both of Apple's forms are
made by its own library, so their payloads are exactly what StoreKit verifies:

- the JWS (`PromotionalOfferV2SignatureCreator`), for `Product.PurchaseOption.promotionalOffer(_:compactJWS:)`
  on iOS 18.4 and later;
- the older signature (`PromotionalOfferSignatureCreator`): ECDSA P-256 over bundle id, key id, product id,
  offer id, application username, nonce and timestamp joined by U+2063, for
  `Product.PurchaseOption.promotionalOffer(offerID:keyID:nonce:signature:timestamp:)`. The application
  username is the account's `appAccountToken`, which the app also sets on the purchase, so the offer is
  bound to the account.

https://developer.apple.com/documentation/storekit/generating-a-signature-for-promotional-offers
https://developer.apple.com/documentation/storekit/generating-jws-to-sign-app-store-requests
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from appstoreserverlibrary.jws_signature_creator import PromotionalOfferV2SignatureCreator
from appstoreserverlibrary.promotional_offer import PromotionalOfferSignatureCreator
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from entitle.providers.appstore.errors import AppStoreMisconfigured
from entitle.providers.appstore.keys import in_app_purchase_key
from entitle.settings import Settings


@dataclass(frozen=True)
class SignedOffer:
    """One signed promotional offer, in both of Apple's forms; single-use (a fresh nonce each time)."""

    product_id: str
    offer_id: str
    key_id: str
    # Lowercase UUID, as signed (StoreKit takes it as a UUID).
    nonce: str
    # UNIX time in milliseconds; Apple accepts the signature for 24 hours from it.
    timestamp: int
    # Base64 DER ECDSA signature of the older form.
    signature: str
    # The application username the older form signs: the account's appAccountToken, lowercase.
    app_account_token: str
    # The compact JWS of the newer form.
    jws: str


class PromotionalOfferSigner:
    """Signs promotional offers for one app with its In-App Purchase key."""

    def __init__(
        self,
        *,
        signing_key: bytes,
        key_id: str,
        issuer_id: str,
        bundle_id: str,
        setting: str = "ENTITLE_APPLE_PRIVATE_KEY_PATH",
    ) -> None:
        problem = AppStoreMisconfigured(
            f"{setting} does not hold an In-App Purchase key (a PEM P-256 private key)."
        )
        try:
            key = serialization.load_pem_private_key(signing_key, password=None)
        except (ValueError, TypeError) as exc:
            raise problem from exc
        # Apple's keys are P-256; anything else would fail only when the first person asks for an offer.
        if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
            raise problem
        self._legacy = PromotionalOfferSignatureCreator(signing_key, key_id, bundle_id)
        self._jws = PromotionalOfferV2SignatureCreator(signing_key, key_id, issuer_id, bundle_id)
        self.key_id = key_id

    @classmethod
    def from_settings(cls, settings: Settings) -> PromotionalOfferSigner | None:
        """None when the In-App Purchase key is not configured (offers are then refused)."""
        key = in_app_purchase_key(settings, needed_for="sign promotional offers")
        if key is None:
            return None
        return cls(
            signing_key=key.signing_key,
            key_id=key.key_id,
            issuer_id=key.issuer_id,
            bundle_id=key.bundle_id,
            setting=key.setting,
        )

    def sign(
        self,
        *,
        product_id: str,
        offer_id: str,
        app_account_token: uuid.UUID,
        transaction_id: str | None = None,
        nonce: uuid.UUID | None = None,
        now: float | None = None,
    ) -> SignedOffer:
        """Both forms for `offer_id` on `product_id`; `transaction_id` (any of the person's App Store
        transactions, when known) ties the JWS to their Apple account as Apple recommends."""
        nonce = nonce or uuid.uuid4()
        timestamp = int((time.time() if now is None else now) * 1000)
        token = str(app_account_token).lower()
        signature = self._legacy.create_signature(product_id, offer_id, token, nonce, timestamp)
        jws = self._jws.create_signature(product_id, offer_id, transaction_id)
        return SignedOffer(
            product_id=product_id,
            offer_id=offer_id,
            key_id=self.key_id,
            nonce=str(nonce).lower(),
            timestamp=timestamp,
            signature=signature,
            app_account_token=token,
            jws=jws,
        )
