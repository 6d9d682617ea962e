"""Verifying what the App Store signs: transactions, renewal info, Server Notifications V2.

Decisions this module owns:
- One `SignedDataVerifier` per environment, chosen by the payload's own environment claim *after* that
  claim is checked against the environments we accept. Production and Sandbox are always accepted: App
  Review and TestFlight send Sandbox data to the production server. Xcode and LocalTesting carry no App
  Store signature at all (the library skips the check), so they are accepted only when a developer sets
  `ENTITLE_APPLE_ALLOW_XCODE`, which the settings refuse in production.
- The library verifies a notification's outer JWS but not the `signedTransactionInfo` and
  `signedRenewalInfo` nested in it; we verify each with the same verifier, so they must also come from
  the same environment and (for transactions) the same bundle id.
- Apple's root certificates ship in the package (`entitle/data/apple/`, Apple Root CA - G3, whose SHA-256
  fingerprint is checked on load) and `ENTITLE_APPLE_ROOT_CERTS` replaces them.
- OCSP revocation checks (`ENTITLE_APPLE_ONLINE_CHECKS`) are on by default; they use blocking HTTP inside
  the library, so the async entry points run verification in a worker thread when they are on.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from appstoreserverlibrary.models.Environment import Environment as AppleEnvironment
from appstoreserverlibrary.models.JWSRenewalInfoDecodedPayload import JWSRenewalInfoDecodedPayload
from appstoreserverlibrary.models.JWSTransactionDecodedPayload import JWSTransactionDecodedPayload
from appstoreserverlibrary.models.ResponseBodyV2DecodedPayload import ResponseBodyV2DecodedPayload
from appstoreserverlibrary.signed_data_verifier import (
    SignedDataVerifier,
    VerificationException,
    VerificationStatus,
)
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from entitle import untrusted_json
from entitle.providers.appstore.errors import (
    AppStoreMisconfigured,
    InvalidSignedData,
    VerificationUnavailable,
    WrongApp,
    WrongEnvironment,
)
from entitle.settings import Settings

# Apple publishes this fingerprint at https://www.apple.com/certificateauthority/ (Apple Root CA - G3).
APPLE_ROOT_CA_G3_SHA256 = "63343abfb89a6a03ebb57e9b3f5fa7be7c4f5c756f3017b3a8c488c3653e9179"
PACKAGED_ROOTS = {"AppleRootCA-G3.pem": APPLE_ROOT_CA_G3_SHA256}
# Environments whose data is unsigned by the App Store and therefore only for a developer's machine.
UNSIGNED_ENVIRONMENTS = frozenset({AppleEnvironment.XCODE, AppleEnvironment.LOCAL_TESTING})

T = TypeVar("T")


@dataclass(frozen=True)
class VerifiedTransaction:
    payload: JWSTransactionDecodedPayload
    # The decoded JSON exactly as Apple signed it, kept with the subscription row.
    raw: dict[str, Any]
    environment: AppleEnvironment


@dataclass(frozen=True)
class VerifiedRenewalInfo:
    payload: JWSRenewalInfoDecodedPayload
    raw: dict[str, Any]


@dataclass(frozen=True)
class VerifiedNotification:
    payload: ResponseBodyV2DecodedPayload
    raw: dict[str, Any]
    environment: AppleEnvironment
    transaction: VerifiedTransaction | None
    renewal_info: VerifiedRenewalInfo | None

    @property
    def notification_type(self) -> str:
        # The raw string, so a type newer than the library still has a name.
        return str(self.raw.get("notificationType") or "")

    @property
    def subtype(self) -> str | None:
        value = self.raw.get("subtype")
        return str(value) if value else None

    @property
    def notification_uuid(self) -> str:
        return str(self.raw.get("notificationUUID") or "")

    @property
    def signed_date(self) -> dt.datetime:
        return from_millis(self.raw.get("signedDate")) or dt.datetime.now(dt.UTC)

    @property
    def status(self) -> int | None:
        data = self.raw.get("data")
        value = data.get("status") if isinstance(data, dict) else None
        return int(value) if isinstance(value, int | float) else None


def from_millis(value: Any) -> dt.datetime | None:
    """Apple's dates are milliseconds since the epoch; Xcode's carry fractions of a millisecond."""
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return dt.datetime.fromtimestamp(value / 1000, tz=dt.UTC)


def _payload_json(signed: str) -> dict[str, Any]:
    """The JWS payload as JSON, unverified: only to read the environment claim or keep the raw copy."""
    try:
        segment = signed.split(".")[1]
        decoded = untrusted_json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (IndexError, ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidSignedData("The signed data is not a JWS.") from exc
    if not isinstance(decoded, dict):
        raise InvalidSignedData("The signed data's payload is not a JSON object.")
    return decoded


def _claimed_environment(payload: dict[str, Any]) -> str | None:
    for container in (payload, payload.get("data"), payload.get("summary"), payload.get("appData")):
        if isinstance(container, dict) and isinstance(container.get("environment"), str):
            return str(container["environment"])
    return None


def load_root_certificates(paths: Iterable[str | Path]) -> list[bytes]:
    """DER bytes of every certificate in the given PEM or DER files (a PEM file may hold several)."""
    roots: list[bytes] = []
    for path in paths:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise AppStoreMisconfigured(f"Apple root certificate {path} cannot be read: {exc}.") from exc
        roots.extend(_certificates_in(data, str(path)))
    return roots


def _certificates_in(data: bytes, source: str) -> list[bytes]:
    try:
        if b"-----BEGIN CERTIFICATE-----" in data:
            certs = x509.load_pem_x509_certificates(data)
        else:
            certs = [x509.load_der_x509_certificate(data)]
    except ValueError as exc:
        raise AppStoreMisconfigured(f"{source} holds no PEM or DER certificate.") from exc
    return [cert.public_bytes(serialization.Encoding.DER) for cert in certs]


def packaged_root_certificates() -> list[bytes]:
    """Apple's roots shipped with entitle, each checked against Apple's published fingerprint."""
    roots: list[bytes] = []
    folder = resources.files("entitle").joinpath("data/apple")
    for name, fingerprint in PACKAGED_ROOTS.items():
        for der in _certificates_in(folder.joinpath(name).read_bytes(), name):
            digest = x509.load_der_x509_certificate(der).fingerprint(hashes.SHA256()).hex()
            if digest != fingerprint:
                raise AppStoreMisconfigured(f"Packaged {name} does not match Apple's published fingerprint.")
            roots.append(der)
    return roots


def accepted_environments(settings: Settings) -> frozenset[AppleEnvironment]:
    accepted = {AppleEnvironment.PRODUCTION, AppleEnvironment.SANDBOX}
    if settings.apple_allow_xcode and settings.is_development:
        accepted |= UNSIGNED_ENVIRONMENTS
    return frozenset(accepted)


def configuration_problems(settings: Settings) -> list[str]:
    """Sentences for `entitle doctor`; an empty list means App Store verification can work as configured."""
    problems: list[str] = []
    if not settings.apple_bundle_id:
        problems.append(
            "ENTITLE_APPLE_BUNDLE_ID is not set: App Store purchases and notifications are refused"
        )
    if settings.apple_app_id is None:
        problems.append(
            "ENTITLE_APPLE_APP_ID is not set: Production App Store data is refused (Sandbox only)"
        )
    try:
        roots = (
            load_root_certificates(settings.apple_root_certs)
            if settings.apple_root_certs
            else packaged_root_certificates()
        )
        if not roots:
            problems.append("ENTITLE_APPLE_ROOT_CERTS names no certificate")
    except AppStoreMisconfigured as exc:
        problems.append(exc.message)
    return problems


class AppStoreVerifier:
    """Verifies App Store signed data for one app, in whichever accepted environment the data claims."""

    def __init__(
        self,
        *,
        bundle_id: str,
        app_apple_id: int | None,
        root_certificates: Sequence[bytes],
        online_checks: bool,
        environments: Iterable[AppleEnvironment] = (AppleEnvironment.PRODUCTION, AppleEnvironment.SANDBOX),
        strict_chain_checks: bool = True,
    ) -> None:
        self.bundle_id = bundle_id
        self.online_checks = online_checks
        self._verifiers: dict[AppleEnvironment, SignedDataVerifier] = {}
        for environment in environments:
            if environment is AppleEnvironment.PRODUCTION and app_apple_id is None:
                # The library requires the app id for Production; without it Production data is refused.
                continue
            verifier = SignedDataVerifier(
                list(root_certificates), online_checks, environment, bundle_id, app_apple_id
            )
            if not strict_chain_checks:
                # Only for Apple's own published test vectors, whose certificates lack key identifiers
                # that OpenSSL's strict mode requires; our minted test chains keep strict checks on.
                verifier._chain_verifier.enable_strict_checks = False
            self._verifiers[environment] = verifier

    @classmethod
    def from_settings(cls, settings: Settings) -> AppStoreVerifier:
        if not settings.apple_bundle_id:
            raise AppStoreMisconfigured("ENTITLE_APPLE_BUNDLE_ID must be set to accept App Store data.")
        roots = (
            load_root_certificates(settings.apple_root_certs)
            if settings.apple_root_certs
            else packaged_root_certificates()
        )
        return cls(
            bundle_id=settings.apple_bundle_id,
            app_apple_id=settings.apple_app_id,
            root_certificates=roots,
            online_checks=settings.apple_online_checks,
            environments=accepted_environments(settings),
        )

    @property
    def environments(self) -> frozenset[AppleEnvironment]:
        return frozenset(self._verifiers)

    def _verifier_for(self, payload: dict[str, Any]) -> tuple[AppleEnvironment, SignedDataVerifier]:
        claim = _claimed_environment(payload)
        if claim is None:
            # Apple always names the environment; without a claim, the strictest verifier decides (and
            # checks the signature before anything else).
            for environment in (AppleEnvironment.PRODUCTION, AppleEnvironment.SANDBOX):
                if environment in self._verifiers:
                    return environment, self._verifiers[environment]
            raise WrongEnvironment("The signed data names no environment.")
        try:
            environment = AppleEnvironment(claim)
        except ValueError:
            raise WrongEnvironment(f"App Store environment {claim!r} is not accepted here.") from None
        verifier = self._verifiers.get(environment)
        if verifier is None:
            raise WrongEnvironment(f"App Store environment {claim!r} is not accepted here.")
        return environment, verifier

    def _run(self, call: Callable[[], T]) -> T:
        try:
            return call()
        except VerificationException as exc:
            raise _translate(exc) from exc
        except Exception as exc:  # the library's decoders raise assorted errors on malformed claims
            raise InvalidSignedData("The signed data could not be decoded.") from exc

    def verify_transaction(self, signed_transaction: str) -> VerifiedTransaction:
        raw = _payload_json(signed_transaction)
        environment, verifier = self._verifier_for(raw)
        payload = self._run(lambda: verifier.verify_and_decode_signed_transaction(signed_transaction))
        return VerifiedTransaction(payload=payload, raw=raw, environment=environment)

    def verify_renewal_info(self, signed_renewal_info: str) -> VerifiedRenewalInfo:
        raw = _payload_json(signed_renewal_info)
        _, verifier = self._verifier_for(raw)
        payload = self._run(lambda: verifier.verify_and_decode_renewal_info(signed_renewal_info))
        return VerifiedRenewalInfo(payload=payload, raw=raw)

    def verify_notification(self, signed_payload: str) -> VerifiedNotification:
        raw = _payload_json(signed_payload)
        environment, verifier = self._verifier_for(raw)
        payload = self._run(lambda: verifier.verify_and_decode_notification(signed_payload))
        transaction = renewal = None
        if payload.data is not None and payload.data.signedTransactionInfo:
            nested = payload.data.signedTransactionInfo
            transaction = VerifiedTransaction(
                payload=self._run(lambda: verifier.verify_and_decode_signed_transaction(nested)),
                raw=_payload_json(nested),
                environment=environment,
            )
        if payload.data is not None and payload.data.signedRenewalInfo:
            nested_renewal = payload.data.signedRenewalInfo
            renewal = VerifiedRenewalInfo(
                payload=self._run(lambda: verifier.verify_and_decode_renewal_info(nested_renewal)),
                raw=_payload_json(nested_renewal),
            )
        if (
            transaction is not None
            and renewal is not None
            and renewal.payload.originalTransactionId != transaction.payload.originalTransactionId
        ):
            raise InvalidSignedData("The notification's transaction and renewal info disagree.")
        return VerifiedNotification(
            payload=payload, raw=raw, environment=environment, transaction=transaction, renewal_info=renewal
        )

    async def _offload(self, call: Callable[[], T]) -> T:
        # OCSP uses blocking HTTP inside the library: keep it off the event loop when it can happen.
        return await asyncio.to_thread(call) if self.online_checks else call()

    async def verify_transaction_async(self, signed_transaction: str) -> VerifiedTransaction:
        return await self._offload(lambda: self.verify_transaction(signed_transaction))

    async def verify_renewal_info_async(self, signed_renewal_info: str) -> VerifiedRenewalInfo:
        return await self._offload(lambda: self.verify_renewal_info(signed_renewal_info))

    async def verify_notification_async(self, signed_payload: str) -> VerifiedNotification:
        return await self._offload(lambda: self.verify_notification(signed_payload))


def _translate(exc: VerificationException) -> Exception:
    status = exc.status
    if status is VerificationStatus.INVALID_APP_IDENTIFIER:
        return WrongApp("The signed data belongs to another app.")
    if status is VerificationStatus.INVALID_ENVIRONMENT:
        return WrongEnvironment("The signed data comes from another App Store environment.")
    if status is VerificationStatus.RETRYABLE_VERIFICATION_FAILURE:
        return VerificationUnavailable("Apple's certificate revocation check did not answer; try again.")
    return InvalidSignedData("The App Store signature on this data does not verify.")
