"""Errors raised while verifying identity tokens; both are `EntitleError`s with stable codes."""

from __future__ import annotations

from entitle.errors import ProviderUnavailable, Unauthorized


class InvalidIdentityToken(Unauthorized):
    """The token is forged, expired, for another app or issuer, or otherwise unusable (401)."""

    default_code = "invalid_identity_token"


class IdentityProviderUnavailable(ProviderUnavailable):
    """The provider's signing keys could not be fetched, so nothing can be verified (503)."""

    default_code = "identity_provider_unavailable"
