"""Tokens from the app's own identity provider, for apps that keep their own sign-in.

With ENTITLE_EXTERNAL_AUTH_JWKS_URL, _ISSUER and _AUDIENCE set, a bearer token from that issuer is
checked like any identity token (signature from its JWKS, RS256 or ES256; issuer, audience, expiry) and
its `sub` names the person: the account whose `external_id` it is.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import jwt

from entitle.identity.jwks import JwksVerifier

ALGORITHMS = ("RS256", "ES256")


class ExternalTokenVerifier:
    def __init__(self, *, jwks_url: str, issuer: str, audience: str, http: httpx.AsyncClient) -> None:
        self.issuer = issuer
        self.jwks = JwksVerifier(
            issuers=[issuer], audiences=[audience], jwks_url=jwks_url, http=http, algorithms=ALGORITHMS
        )

    def is_from_issuer(self, token: str) -> bool:
        """Whether the token claims to come from the app's issuer (unverified: it only picks the checker)."""
        try:
            claims: Any = json.loads(jwt.utils.base64url_decode(token.split(".")[1]))
        except (ValueError, IndexError, TypeError):
            return False
        return isinstance(claims, dict) and claims.get("iss") == self.issuer

    async def verify(self, token: str) -> dict[str, Any]:
        """The token's claims once signature, issuer, audience and lifetime check out."""
        return await self.jwks.verify(token)
