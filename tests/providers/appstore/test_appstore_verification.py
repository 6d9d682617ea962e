"""Verification of App Store signed data, with strict chain checks and real signatures."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from appstoreserverlibrary.models.Environment import Environment as AppleEnvironment
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import ValidationError

from entitle.providers.appstore.errors import (
    AppStoreMisconfigured,
    InvalidSignedData,
    WrongApp,
    WrongEnvironment,
)
from entitle.providers.appstore.verification import (
    APPLE_ROOT_CA_G3_SHA256,
    AppStoreVerifier,
    configuration_problems,
    load_root_certificates,
    packaged_root_certificates,
)
from entitle.settings import Settings
from tests.providers.appstore.constants import APP_APPLE_ID, BUNDLE_ID, MONTHLY
from tests.standins.appstore import AppStoreSigner, SigningChain

# Apple's own signed test data, copied into the repository with its license (reference/LICENSE).
REFERENCE = Path(__file__).parent / "reference"


def _transaction(signer: AppStoreSigner, **overrides: Any) -> dict[str, Any]:
    return signer.transaction(
        original_transaction_id="2000000100000001",
        transaction_id="2000000100000001",
        product_id=MONTHLY,
        purchase_date=1_700_000_000_000,
        expires_date=1_702_592_000_000,
        signed_date=1_700_000_000_500,
        app_account_token="6c0f4a4c-7c58-4d4b-9a57-3f5d2f0b0e11",
        **overrides,
    )


def _renewal(signer: AppStoreSigner, **overrides: Any) -> dict[str, Any]:
    return signer.renewal_info(
        original_transaction_id="2000000100000001",
        product_id=MONTHLY,
        signed_date=1_700_000_000_500,
        **overrides,
    )


def _reference(name: str) -> str:
    return (REFERENCE / name).read_text().strip()


# -- transactions ------------------------------------------------------------------------------------


def test_valid_transaction_decodes_with_raw_copy(verifier: AppStoreVerifier, signer: AppStoreSigner) -> None:
    payload = _transaction(signer)
    verified = verifier.verify_transaction(signer.sign(payload))
    assert verified.payload.originalTransactionId == "2000000100000001"
    assert verified.payload.appAccountToken == payload["appAccountToken"]
    assert verified.environment is AppleEnvironment.SANDBOX
    assert verified.raw == payload


def test_production_transaction_uses_the_production_verifier(
    verifier: AppStoreVerifier, production_signer: AppStoreSigner
) -> None:
    verified = verifier.verify_transaction(production_signer.sign(_transaction(production_signer)))
    assert verified.environment is AppleEnvironment.PRODUCTION


def test_forged_signature_is_refused(verifier: AppStoreVerifier, signer: AppStoreSigner) -> None:
    forger_key = ec.generate_private_key(ec.SECP256R1())
    forged = signer.sign(_transaction(signer), key=forger_key)  # Apple's chain in x5c, someone else's key
    with pytest.raises(InvalidSignedData) as raised:
        verifier.verify_transaction(forged)
    assert raised.value.code == "invalid_signed_data"


def test_tampered_payload_is_refused(verifier: AppStoreVerifier, signer: AppStoreSigner) -> None:
    header, _, signature = signer.sign(_transaction(signer)).split(".")
    richer = _transaction(signer, productId="com.example.app.pro.yearly")
    body = base64.urlsafe_b64encode(json.dumps(richer).encode()).rstrip(b"=").decode()
    with pytest.raises(InvalidSignedData):
        verifier.verify_transaction(f"{header}.{body}.{signature}")


def test_missing_x5c_is_refused(verifier: AppStoreVerifier, signer: AppStoreSigner) -> None:
    with pytest.raises(InvalidSignedData) as raised:
        verifier.verify_transaction(signer.sign(_transaction(signer), x5c=None))
    assert raised.value.code == "invalid_signed_data"


def test_short_chain_is_refused(
    verifier: AppStoreVerifier, signer: AppStoreSigner, chain: SigningChain
) -> None:
    with pytest.raises(InvalidSignedData):
        verifier.verify_transaction(signer.sign(_transaction(signer), x5c=chain.x5c()[:2]))


def test_wrong_bundle_is_refused(verifier: AppStoreVerifier, chain: SigningChain) -> None:
    other_app = AppStoreSigner(chain, bundle_id="com.example.other")
    with pytest.raises(WrongApp) as raised:
        verifier.verify_transaction(other_app.sign(_transaction(other_app)))
    assert raised.value.code == "signed_data_wrong_app"


@pytest.mark.parametrize("garbage", ["", "not-a-jws", "a.b.c", "eyJhbGciOiJFUzI1NiJ9.W10.c2ln"])
def test_garbage_is_refused_with_a_client_error(verifier: AppStoreVerifier, garbage: str) -> None:
    with pytest.raises(InvalidSignedData):
        verifier.verify_transaction(garbage)


def test_malformed_claims_are_refused_not_crashed(verifier: AppStoreVerifier, signer: AppStoreSigner) -> None:
    with pytest.raises(InvalidSignedData):
        verifier.verify_transaction(signer.sign(_transaction(signer, expiresDate={"not": "a date"})))


# -- environments ------------------------------------------------------------------------------------


def test_xcode_environment_is_refused_by_default(verifier: AppStoreVerifier, chain: SigningChain) -> None:
    xcode = AppStoreSigner(chain, bundle_id=BUNDLE_ID, environment="Xcode")
    with pytest.raises(WrongEnvironment) as raised:
        verifier.verify_transaction(xcode.sign(_transaction(xcode)))
    assert raised.value.code == "signed_data_wrong_environment"


def test_unknown_environment_is_refused(verifier: AppStoreVerifier, chain: SigningChain) -> None:
    odd = AppStoreSigner(chain, bundle_id=BUNDLE_ID, environment="Staging")
    with pytest.raises(WrongEnvironment):
        verifier.verify_transaction(odd.sign(_transaction(odd)))


def test_production_refused_without_app_id(chain: SigningChain, production_signer: AppStoreSigner) -> None:
    sandbox_only = AppStoreVerifier(
        bundle_id=BUNDLE_ID, app_apple_id=None, root_certificates=[chain.root_der], online_checks=False
    )
    with pytest.raises(WrongEnvironment):
        sandbox_only.verify_transaction(production_signer.sign(_transaction(production_signer)))


def test_notification_for_another_app_id_is_refused(verifier: AppStoreVerifier, chain: SigningChain) -> None:
    other = AppStoreSigner(chain, bundle_id=BUNDLE_ID, app_apple_id=999, environment="Production")
    with pytest.raises(WrongApp):
        verifier.verify_notification(other.signed_notification("TEST", signed_date=1_700_000_000_000))


def test_xcode_data_accepted_only_when_a_developer_allows_it() -> None:
    signed = _reference("xcode/xcode-signed-transaction")
    bundle = "com.example.naturelab.backyardbirds.example"
    allowed = AppStoreVerifier.from_settings(
        Settings(environment="development", apple_bundle_id=bundle, apple_allow_xcode=True)
    )
    verified = allowed.verify_transaction(signed)
    # Xcode writes fractional milliseconds; the decoded payload has whole ones, the raw copy keeps Apple's.
    assert verified.payload.purchaseDate == 1697679936049
    assert verified.environment is AppleEnvironment.XCODE
    renewal = allowed.verify_renewal_info(_reference("xcode/xcode-signed-renewal-info"))
    assert renewal.payload.autoRenewStatus == 1
    refused = AppStoreVerifier.from_settings(Settings(environment="development", apple_bundle_id=bundle))
    with pytest.raises(WrongEnvironment):
        refused.verify_transaction(signed)


def test_settings_refuse_xcode_in_production() -> None:
    production = {
        "environment": "production",
        "admin_api_key": "a-real-admin-key-0123456789",
        "jwt_private_key_path": "/tmp/key.pem",
        "smtp_url": "smtp://mail.example.com:587",
        "email_from": "App <no-reply@example.com>",
        "encryption_key": Fernet.generate_key().decode(),
        "apple_bundle_id": BUNDLE_ID,
    }
    Settings(**production)  # everything else in order: only Xcode data is refused below
    with pytest.raises(ValidationError, match="XCODE"):
        Settings(**production, apple_allow_xcode=True)


# -- notifications -----------------------------------------------------------------------------------


def test_notification_verifies_nested_transaction_and_renewal(
    verifier: AppStoreVerifier, signer: AppStoreSigner
) -> None:
    signed = signer.signed_notification(
        "SUBSCRIBED",
        "INITIAL_BUY",
        signed_date=1_700_000_001_000,
        transaction=_transaction(signer),
        renewal_info=_renewal(signer),
        status=1,
    )
    verified = verifier.verify_notification(signed)
    assert (verified.notification_type, verified.subtype, verified.status) == ("SUBSCRIBED", "INITIAL_BUY", 1)
    assert verified.transaction is not None and verified.transaction.payload.productId == MONTHLY
    assert verified.renewal_info is not None and verified.renewal_info.payload.autoRenewStatus == 1


def _notification_with(signer: AppStoreSigner, *, signed_transaction: str) -> str:
    payload = signer.notification("DID_RENEW", signed_date=1_700_000_001_000, transaction=None)
    payload["data"]["signedTransactionInfo"] = signed_transaction
    return signer.sign(payload)


def test_forged_nested_transaction_is_refused(verifier: AppStoreVerifier, signer: AppStoreSigner) -> None:
    forged = signer.sign(_transaction(signer), key=ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(InvalidSignedData):
        verifier.verify_notification(_notification_with(signer, signed_transaction=forged))


def test_nested_transaction_from_another_environment_is_refused(
    verifier: AppStoreVerifier, signer: AppStoreSigner, production_signer: AppStoreSigner
) -> None:
    nested = production_signer.sign(_transaction(production_signer))
    with pytest.raises(WrongEnvironment):
        verifier.verify_notification(_notification_with(signer, signed_transaction=nested))


def test_nested_transaction_for_another_bundle_is_refused(
    verifier: AppStoreVerifier, signer: AppStoreSigner, chain: SigningChain
) -> None:
    other = AppStoreSigner(chain, bundle_id="com.example.other")
    with pytest.raises(WrongApp):
        verifier.verify_notification(
            _notification_with(signer, signed_transaction=other.sign(_transaction(other)))
        )


def test_nested_renewal_for_another_subscription_is_refused(
    verifier: AppStoreVerifier, signer: AppStoreSigner
) -> None:
    signed = signer.signed_notification(
        "DID_RENEW",
        signed_date=1_700_000_001_000,
        transaction=_transaction(signer),
        renewal_info=_renewal(signer, originalTransactionId="999"),
    )
    with pytest.raises(InvalidSignedData):
        verifier.verify_notification(signed)


async def test_async_entry_point_verifies(verifier: AppStoreVerifier, signer: AppStoreSigner) -> None:
    signed = signer.signed_notification("TEST", signed_date=1_700_000_000_000)
    verified = await verifier.verify_notification_async(signed)
    assert verified.notification_type == "TEST" and verified.transaction is None


# -- Apple's published test vectors (signed by their test CA, copied in with its license) -----------


def _reference_verifier(bundle_id: str = "com.example") -> AppStoreVerifier:
    return AppStoreVerifier(
        bundle_id=bundle_id,
        app_apple_id=1234,
        root_certificates=load_root_certificates([REFERENCE / "certs" / "testCA.der"]),
        online_checks=False,
        # Apple's test certificates lack the key identifiers OpenSSL's strict mode wants.
        strict_chain_checks=False,
    )


def test_reference_mock_data_verifies_against_apple_test_ca() -> None:
    verifier = _reference_verifier()
    notification = verifier.verify_notification(_reference("mock_signed_data/testNotification"))
    assert notification.notification_type == "TEST"
    assert notification.notification_uuid == "9ad56bd2-0bc6-42e0-af24-fd996d87a1e6"
    assert (
        verifier.verify_transaction(_reference("mock_signed_data/transactionInfo")).payload.bundleId
        == "com.example"
    )
    assert (
        verifier.verify_renewal_info(_reference("mock_signed_data/renewalInfo")).payload.signedDate
        == 1672956154000
    )


def test_reference_mock_data_is_refused_for_another_bundle() -> None:
    with pytest.raises(WrongApp):
        _reference_verifier("com.example.app").verify_notification(
            _reference("mock_signed_data/testNotification")
        )


def test_reference_wrong_bundle_and_missing_x5c_are_refused() -> None:
    verifier = _reference_verifier()
    with pytest.raises(WrongApp):
        verifier.verify_notification(_reference("mock_signed_data/wrongBundleId"))
    with pytest.raises(InvalidSignedData) as raised:
        verifier.verify_notification(_reference("mock_signed_data/missingX5CHeaderClaim"))
    assert raised.value.code == "invalid_signed_data"


def test_reference_data_refused_under_our_strict_production_path(verifier: AppStoreVerifier) -> None:
    with pytest.raises(InvalidSignedData):
        verifier.verify_notification(_reference("mock_signed_data/testNotification"))


# -- roots and configuration -------------------------------------------------------------------------


def test_packaged_root_is_apple_root_ca_g3() -> None:
    roots = packaged_root_certificates()
    assert len(roots) == 1
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    assert (
        x509.load_der_x509_certificate(roots[0]).fingerprint(hashes.SHA256()).hex() == APPLE_ROOT_CA_G3_SHA256
    )


def test_root_certificates_load_from_pem_and_der(tmp_path: Path, chain: SigningChain) -> None:
    (tmp_path / "root.pem").write_bytes(chain.root_pem + chain.root_pem)
    (tmp_path / "root.der").write_bytes(chain.root_der)
    roots = load_root_certificates([tmp_path / "root.pem", tmp_path / "root.der"])
    assert roots == [chain.root_der] * 3


def test_unreadable_root_certificate_is_a_configuration_error(tmp_path: Path) -> None:
    (tmp_path / "junk.pem").write_text("hello")
    with pytest.raises(AppStoreMisconfigured):
        load_root_certificates([tmp_path / "missing.der"])
    with pytest.raises(AppStoreMisconfigured):
        load_root_certificates([tmp_path / "junk.pem"])


def test_from_settings_uses_overridden_roots(
    tmp_path: Path, chain: SigningChain, signer: AppStoreSigner
) -> None:
    (tmp_path / "root.pem").write_bytes(chain.root_pem)
    settings = Settings(
        environment="test",
        apple_bundle_id=BUNDLE_ID,
        apple_app_id=APP_APPLE_ID,
        apple_root_certs=str(tmp_path / "root.pem"),
        apple_online_checks=False,
    )
    verified = AppStoreVerifier.from_settings(settings).verify_transaction(signer.sign(_transaction(signer)))
    assert verified.payload.transactionId == "2000000100000001"
    # With the packaged Apple root instead, our test chain is (rightly) not trusted.
    packaged = AppStoreVerifier.from_settings(Settings(environment="test", apple_bundle_id=BUNDLE_ID))
    with pytest.raises(InvalidSignedData):
        packaged.verify_transaction(signer.sign(_transaction(signer)))


def test_configuration_problems_name_what_is_missing(tmp_path: Path) -> None:
    assert (
        configuration_problems(Settings(environment="test", apple_bundle_id=BUNDLE_ID, apple_app_id=1)) == []
    )
    problems = configuration_problems(
        Settings(environment="test", apple_root_certs=str(tmp_path / "nope.pem"))
    )
    assert any("BUNDLE_ID" in p for p in problems)
    assert any("APP_ID" in p for p in problems)
    assert any("nope.pem" in p for p in problems)
    with pytest.raises(AppStoreMisconfigured):
        AppStoreVerifier.from_settings(Settings(environment="test"))
