"""A certificate chain shaped like Apple's App Store signing chain, minted offline for tests.

Apple signs StoreKit 2 transactions, renewal info and Server Notifications V2 with a leaf certificate
(marker extension 1.2.840.113635.100.6.11.1) issued by the WWDR intermediate (1.2.840.113635.100.6.2.1)
under Apple Root CA - G3. We cannot sign under Apple's root, so tests mint the same shape under a root
of their own and hand that root to the verifier; the verifier keeps OpenSSL's strict chain checks on,
which is why every certificate here carries key identifiers and proper basic constraints.
"""

from __future__ import annotations

import base64
import datetime as dt
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

LEAF_MARKER_OID = x509.ObjectIdentifier("1.2.840.113635.100.6.11.1")
INTERMEDIATE_MARKER_OID = x509.ObjectIdentifier("1.2.840.113635.100.6.2.1")

# Wide validity so histories dated years back or ahead still verify at their own signedDate.
DEFAULT_NOT_BEFORE = dt.datetime(2015, 1, 1, tzinfo=dt.UTC)
DEFAULT_NOT_AFTER = dt.datetime(2045, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True)
class SigningChain:
    """Root, intermediate and leaf, plus the leaf's private key that signs JWS."""

    root: x509.Certificate
    intermediate: x509.Certificate
    leaf: x509.Certificate
    leaf_key: ec.EllipticCurvePrivateKey

    @property
    def root_der(self) -> bytes:
        return self.root.public_bytes(serialization.Encoding.DER)

    @property
    def root_pem(self) -> bytes:
        return self.root.public_bytes(serialization.Encoding.PEM)

    def x5c(self) -> list[str]:
        """The JWS `x5c` header: leaf first, then intermediate, then root, base64 DER (not base64url)."""
        return [
            base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode("ascii")
            for cert in (self.leaf, self.intermediate, self.root)
        ]


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "entitle tests"),
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
        ]
    )


def _certificate(
    *,
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer_cert: x509.Certificate | None,
    issuer_key: ec.EllipticCurvePrivateKey,
    is_ca: bool,
    path_length: int | None,
    marker: x509.ObjectIdentifier | None,
    not_before: dt.datetime,
    not_after: dt.datetime,
) -> x509.Certificate:
    public_key = key.public_key()
    issuer_name = issuer_cert.subject if issuer_cert is not None else _name(subject)
    issuer_public = issuer_cert.public_key() if issuer_cert is not None else public_key
    assert isinstance(issuer_public, ec.EllipticCurvePublicKey)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=path_length), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=not is_ca,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=is_ca,
                crl_sign=is_ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_public), critical=False)
    )
    if marker is not None:
        # Apple's marker extensions carry an ASN.1 NULL; the verifier only checks they are present.
        builder = builder.add_extension(x509.UnrecognizedExtension(marker, b"\x05\x00"), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def mint_chain(
    *,
    leaf_marker: bool = True,
    intermediate_marker: bool = True,
    not_before: dt.datetime = DEFAULT_NOT_BEFORE,
    not_after: dt.datetime = DEFAULT_NOT_AFTER,
) -> SigningChain:
    """A fresh EC P-256 root -> intermediate -> leaf chain; drop a marker for a chain Apple never issues."""
    root_key = ec.generate_private_key(ec.SECP256R1())
    intermediate_key = ec.generate_private_key(ec.SECP256R1())
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    window = {"not_before": not_before, "not_after": not_after}
    root = _certificate(
        subject="entitle test root CA",
        key=root_key,
        issuer_cert=None,
        issuer_key=root_key,
        is_ca=True,
        path_length=None,
        marker=None,
        **window,
    )
    intermediate = _certificate(
        subject="entitle test WWDR intermediate",
        key=intermediate_key,
        issuer_cert=root,
        issuer_key=root_key,
        is_ca=True,
        path_length=0,
        marker=INTERMEDIATE_MARKER_OID if intermediate_marker else None,
        **window,
    )
    leaf = _certificate(
        subject="entitle test App Store signer",
        key=leaf_key,
        issuer_cert=intermediate,
        issuer_key=intermediate_key,
        is_ca=False,
        path_length=None,
        marker=LEAF_MARKER_OID if leaf_marker else None,
        **window,
    )
    return SigningChain(root=root, intermediate=intermediate, leaf=leaf, leaf_key=leaf_key)
