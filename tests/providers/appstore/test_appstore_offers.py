"""Promotional offer signatures, checked the way StoreKit checks them: with the key's public half."""

from __future__ import annotations

import base64
import datetime as dt
import uuid
from pathlib import Path

import jwt
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from entitle.providers.appstore.errors import AppStoreMisconfigured
from entitle.providers.appstore.offers import PromotionalOfferSigner
from entitle.settings import RunEnvironment, Settings

BUNDLE_ID = "com.example.app"
KEY_ID = "2X9R4HXF34"
ISSUER_ID = "57246542-96fe-1a63-e053-0824d011072a"
PRODUCT = "com.example.app.pro.monthly"


@pytest.fixture(scope="module")
def key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def signer(key: ec.EllipticCurvePrivateKey) -> PromotionalOfferSigner:
    return PromotionalOfferSigner(
        signing_key=pem(key), key_id=KEY_ID, issuer_id=ISSUER_ID, bundle_id=BUNDLE_ID
    )


def test_the_older_form_verifies_over_apples_payload(key: ec.EllipticCurvePrivateKey) -> None:
    token = uuid.UUID("6F1C2D3E-0000-4000-8000-00000000ABCD")
    signed = signer(key).sign(
        product_id=PRODUCT, offer_id="winback3", app_account_token=token, now=1_700_000_000.5
    )
    assert (signed.product_id, signed.offer_id, signed.key_id) == (PRODUCT, "winback3", KEY_ID)
    assert signed.timestamp == 1_700_000_000_500
    assert signed.app_account_token == str(token).lower()
    assert str(uuid.UUID(signed.nonce)) == signed.nonce
    # https://developer.apple.com/documentation/storekit/generating-a-signature-for-promotional-offers
    payload = "\u2063".join(
        [BUNDLE_ID, KEY_ID, PRODUCT, "winback3", str(token).lower(), signed.nonce, str(signed.timestamp)]
    )
    der = base64.b64decode(signed.signature)
    key.public_key().verify(der, payload.encode(), ec.ECDSA(hashes.SHA256()))
    # Bound to the account: the same signature names nobody else.
    other = payload.replace(str(token).lower(), str(uuid.uuid4()))
    with pytest.raises(InvalidSignature):
        key.public_key().verify(der, other.encode(), ec.ECDSA(hashes.SHA256()))


def test_every_signature_has_its_own_nonce(key: ec.EllipticCurvePrivateKey) -> None:
    made = signer(key)
    first, second = (
        made.sign(product_id=PRODUCT, offer_id="o", app_account_token=uuid.uuid4()) for _ in range(2)
    )
    assert first.nonce != second.nonce and first.signature != second.signature


def test_the_jws_form_carries_apples_header_and_claims(key: ec.EllipticCurvePrivateKey) -> None:
    signed = signer(key).sign(
        product_id=PRODUCT,
        offer_id="winback3",
        app_account_token=uuid.uuid4(),
        transaction_id="2000000000000001",
    )
    header = jwt.get_unverified_header(signed.jws)
    assert header == {"alg": "ES256", "kid": KEY_ID, "typ": "JWT"}
    claims = jwt.decode(signed.jws, key.public_key(), algorithms=["ES256"], audience="promotional-offer")
    assert claims["iss"] == ISSUER_ID and claims["bid"] == BUNDLE_ID
    assert claims["productId"] == PRODUCT and claims["offerIdentifier"] == "winback3"
    assert claims["transactionId"] == "2000000000000001"
    assert abs(claims["iat"] - dt.datetime.now(dt.UTC).timestamp()) < 600
    uuid.UUID(claims["nonce"])


def test_the_jws_leaves_out_an_unknown_transaction(key: ec.EllipticCurvePrivateKey) -> None:
    signed = signer(key).sign(product_id=PRODUCT, offer_id="o", app_account_token=uuid.uuid4())
    claims = jwt.decode(signed.jws, key.public_key(), algorithms=["ES256"], audience="promotional-offer")
    assert "transactionId" not in claims


def test_from_settings_needs_the_whole_key(key: ec.EllipticCurvePrivateKey, tmp_path: Path) -> None:
    path = tmp_path / "AuthKey.p8"
    path.write_bytes(pem(key))
    base = {"environment": RunEnvironment.TEST, "apple_bundle_id": BUNDLE_ID}
    assert PromotionalOfferSigner.from_settings(Settings(**base)) is None
    assert PromotionalOfferSigner.from_settings(Settings(**base, apple_key_id=KEY_ID)) is None
    full = {**base, "apple_key_id": KEY_ID, "apple_issuer_id": ISSUER_ID, "apple_private_key_path": path}
    made = PromotionalOfferSigner.from_settings(Settings(**full))
    assert made is not None and made.key_id == KEY_ID
    (tmp_path / "garbage.p8").write_bytes(b"not a key")
    (tmp_path / "p384.p8").write_bytes(pem(ec.generate_private_key(ec.SECP384R1())))
    with pytest.raises(AppStoreMisconfigured, match="P-256"):
        PromotionalOfferSigner.from_settings(
            Settings(**{**full, "apple_private_key_path": tmp_path / "p384.p8"})
        )
    with pytest.raises(AppStoreMisconfigured, match="ENTITLE_APPLE_PRIVATE_KEY_PATH"):
        PromotionalOfferSigner.from_settings(
            Settings(**{**full, "apple_private_key_path": tmp_path / "garbage.p8"})
        )
    with pytest.raises(AppStoreMisconfigured, match="cannot be read"):
        PromotionalOfferSigner.from_settings(
            Settings(**{**full, "apple_private_key_path": tmp_path / "missing.p8"})
        )
