"""Builds the identity verifiers the settings ask for, once per app (AppContext.identity_verifiers)."""

from __future__ import annotations

from typing import Any

import httpx

from entitle.identity.apple import AppleIdentityVerifier
from entitle.identity.google import GoogleIdentityVerifier
from entitle.settings import Settings


def build_identity_verifiers(settings: Settings, http: httpx.AsyncClient) -> dict[str, Any]:
    # Both are always built: one without client ids refuses every token with
    # `identity_provider_not_configured`, which is clearer to a client than a 404 on the route.
    return {
        "apple": AppleIdentityVerifier(
            client_ids=settings.apple_signin_client_ids, jwks_url=settings.apple_signin_jwks_url, http=http
        ),
        "google": GoogleIdentityVerifier(
            client_ids=settings.google_client_ids, jwks_url=settings.google_jwks_url, http=http
        ),
    }
