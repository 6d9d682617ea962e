"""The minted chain has Apple's shape, and the verifier's strict checks hold it to that shape."""

from __future__ import annotations

import base64

import pytest
from appstoreserverlibrary.models.Environment import Environment as AppleEnvironment
from cryptography import x509

from entitle.providers.appstore.errors import InvalidSignedData
from entitle.providers.appstore.verification import AppStoreVerifier
from tests.providers.appstore.constants import APP_APPLE_ID, BUNDLE_ID
from tests.standins.appstore import AppStoreSigner, SigningChain, mint_chain
from tests.standins.appstore.chain import INTERMEDIATE_MARKER_OID, LEAF_MARKER_OID


def _transaction(signer: AppStoreSigner) -> str:
    return signer.sign(
        signer.transaction(
            original_transaction_id="1",
            transaction_id="1",
            product_id="com.example.app.pro.monthly",
            purchase_date=1_700_000_000_000,
            expires_date=1_702_592_000_000,
            signed_date=1_700_000_000_000,
        )
    )


def _verifier(root: bytes) -> AppStoreVerifier:
    return AppStoreVerifier(
        bundle_id=BUNDLE_ID,
        app_apple_id=APP_APPLE_ID,
        root_certificates=[root],
        online_checks=False,
        environments=(AppleEnvironment.SANDBOX,),
    )


def test_chain_carries_apple_marker_extensions_and_key_identifiers(chain: SigningChain) -> None:
    chain.leaf.extensions.get_extension_for_oid(LEAF_MARKER_OID)
    chain.intermediate.extensions.get_extension_for_oid(INTERMEDIATE_MARKER_OID)
    with pytest.raises(x509.ExtensionNotFound):
        chain.leaf.extensions.get_extension_for_oid(INTERMEDIATE_MARKER_OID)
    chain.leaf.verify_directly_issued_by(chain.intermediate)
    chain.intermediate.verify_directly_issued_by(chain.root)
    for cert in (chain.leaf, chain.intermediate):
        cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)


def test_x5c_is_leaf_intermediate_root_in_base64_der(chain: SigningChain) -> None:
    certs = [x509.load_der_x509_certificate(base64.b64decode(item)) for item in chain.x5c()]
    assert certs == [chain.leaf, chain.intermediate, chain.root]


def test_strict_verification_accepts_the_minted_chain(chain: SigningChain, signer: AppStoreSigner) -> None:
    decoded = _verifier(chain.root_der).verify_transaction(_transaction(signer))
    assert decoded.payload.transactionId == "1"


@pytest.mark.parametrize("missing", ["leaf", "intermediate"])
def test_chain_without_a_marker_is_refused(missing: str) -> None:
    bad = mint_chain(leaf_marker=missing != "leaf", intermediate_marker=missing != "intermediate")
    with pytest.raises(InvalidSignedData) as raised:
        _verifier(bad.root_der).verify_transaction(_transaction(AppStoreSigner(bad, bundle_id=BUNDLE_ID)))
    assert raised.value.code == "invalid_signed_data"


def test_chain_under_another_root_is_refused(chain: SigningChain) -> None:
    stranger = AppStoreSigner(mint_chain(), bundle_id=BUNDLE_ID)
    with pytest.raises(InvalidSignedData):
        _verifier(chain.root_der).verify_transaction(_transaction(stranger))
