"""Identity-token verification for Sign in with Apple and Google (RS256 against each provider's JWKS).

Public face:
- `VerifiedIdentity`: what a verified token says (provider, subject, email, email_verified, is_private_relay).
- `AppleIdentityVerifier.verify(id_token, nonce=...)` and `.verify_notification(payload)`.
- `GoogleIdentityVerifier.verify(id_token)`.
- `JwksVerifier`: the generic, cached JWKS-backed checker both are built on.
Errors (`entitle.identity.errors`): `InvalidIdentityToken` (401), `IdentityProviderUnavailable` (503).
"""

from entitle.identity.apple import (
    APPLE_ISSUER,
    APPLE_JWKS_URL,
    AppleIdentityVerifier,
    AppleNotification,
    AppleNotificationType,
    is_private_relay_address,
)
from entitle.identity.errors import IdentityProviderUnavailable, InvalidIdentityToken
from entitle.identity.google import GOOGLE_ISSUERS, GOOGLE_JWKS_URL, GoogleIdentityVerifier
from entitle.identity.jwks import JwksVerifier
from entitle.identity.verified import Provider, VerifiedIdentity

__all__ = [
    "APPLE_ISSUER",
    "APPLE_JWKS_URL",
    "GOOGLE_ISSUERS",
    "GOOGLE_JWKS_URL",
    "AppleIdentityVerifier",
    "AppleNotification",
    "AppleNotificationType",
    "GoogleIdentityVerifier",
    "IdentityProviderUnavailable",
    "InvalidIdentityToken",
    "JwksVerifier",
    "Provider",
    "VerifiedIdentity",
    "is_private_relay_address",
]
