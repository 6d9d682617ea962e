"""Errors raised while speaking to the App Store; each is an `EntitleError` with a stable code.

EntitleError
├── InvalidSignedData            400 invalid_signed_data (forged, malformed, wrong chain)
│   ├── WrongApp                 400 signed_data_wrong_app (another bundle id or app id)
│   └── WrongEnvironment         400 signed_data_wrong_environment (an environment we do not accept)
├── AppStoreMisconfigured        500 appstore_misconfigured (settings cannot work)
└── ProviderUnavailable
    ├── VerificationUnavailable  503 apple_verification_unavailable (revocation check did not answer)
    └── AppStoreApiUnavailable   503 app_store_api_unavailable (Server API failed or rate-limited us)
"""

from __future__ import annotations

from entitle.errors import EntitleError, ProviderUnavailable


class InvalidSignedData(EntitleError):
    """Signed data that does not verify: bad signature, bad or missing x5c chain, malformed JWS."""

    status_code = 400
    default_code = "invalid_signed_data"


class WrongApp(InvalidSignedData):
    """Correctly signed by Apple, but for another app: never act on it."""

    default_code = "signed_data_wrong_app"


class WrongEnvironment(InvalidSignedData):
    """An environment this server does not accept (Xcode/LocalTesting unless a developer allowed them)."""

    default_code = "signed_data_wrong_environment"


class AppStoreMisconfigured(EntitleError):
    status_code = 500
    default_code = "appstore_misconfigured"


class VerificationUnavailable(ProviderUnavailable):
    """Apple's OCSP responder did not answer; the sender should retry (Apple does on a 5xx)."""

    default_code = "apple_verification_unavailable"


class AppStoreApiUnavailable(ProviderUnavailable):
    """The App Store Server API failed, timed out or kept answering 429."""

    default_code = "app_store_api_unavailable"
