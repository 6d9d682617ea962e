"""Google Identity Services ID tokens.

Google signs ID tokens with the keys at https://www.googleapis.com/oauth2/v3/certs (RS256). The
issuer is `https://accounts.google.com` or, for older clients, `accounts.google.com`; the audience is
one of the app's OAuth client ids (web, iOS, Android). The email is only trusted with
`email_verified`, per https://developers.google.com/identity/gsi/web/guides/verify-google-id-token
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import httpx

from entitle.constant_time import same_secret
from entitle.identity.errors import InvalidIdentityToken
from entitle.identity.jwks import Clock, JwksVerifier
from entitle.identity.verified import VerifiedIdentity, claim_email, claim_is_true

GOOGLE_ISSUERS = ("https://accounts.google.com", "accounts.google.com")
GOOGLE_JWKS_URL = "https://www.googleapis.com/oauth2/v3/certs"


class GoogleIdentityVerifier:
    """Verifies Google ID tokens."""

    provider = "google"

    def __init__(
        self,
        *,
        client_ids: Sequence[str],
        http: httpx.AsyncClient,
        jwks_url: str = GOOGLE_JWKS_URL,
        clock: Clock = time.time,
        leeway: float = 60.0,
        cache_ttl: float = 3600.0,
        min_refresh_interval: float = 60.0,
    ) -> None:
        self.client_ids = tuple(client_ids)
        self.jwks = JwksVerifier(
            issuers=GOOGLE_ISSUERS,
            audiences=self.client_ids,
            audience_setting="ENTITLE_GOOGLE_CLIENT_IDS",
            jwks_url=jwks_url,
            http=http,
            clock=clock,
            leeway=leeway,
            cache_ttl=cache_ttl,
            min_refresh_interval=min_refresh_interval,
        )

    async def verify(self, id_token: str, *, nonce: str | None = None) -> VerifiedIdentity:
        claims = await self.jwks.verify(id_token)
        if nonce is not None:
            claimed = claims.get("nonce")
            if not isinstance(claimed, str) or not same_secret(claimed, nonce):
                raise InvalidIdentityToken("The identity token's nonce does not match.")
        email = claim_email(claims.get("email"))
        name = claims.get("name")
        return VerifiedIdentity(
            provider="google",
            subject=claims["sub"],
            email=email,
            email_verified=email is not None and claim_is_true(claims.get("email_verified")),
            is_private_relay=False,
            name=name if isinstance(name, str) and name.strip() else None,
            issued_at=float(claims["iat"]),
            audience=claims["aud"] if isinstance(claims.get("aud"), str) else None,
        )
