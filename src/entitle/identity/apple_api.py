"""Sign in with Apple's REST API: exchange an authorization code for tokens, and revoke them.

https://developer.apple.com/documentation/sign_in_with_apple/generate_and_validate_tokens
https://developer.apple.com/documentation/sign_in_with_apple/revoke_tokens

Both calls authenticate with a client secret: an ES256 JWT signed with the team's Sign in with Apple
key (header `kid`; `iss` team id, `aud` https://appleid.apple.com, `sub` the client id, `exp` at most six
months out). Ours live five minutes and are made per call: they cost a signature, and a short-lived
secret is worth nothing to whoever reads it in a log. The authorization code is single-use and expires
after five minutes, so the app posts it with the identity token at sign-in.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from entitle.errors import EntitleError
from entitle.identity.errors import IdentityProviderUnavailable

APPLE_API_BASE = "https://appleid.apple.com"
CLIENT_SECRET_LIFETIME = 300


class InvalidAuthorizationCode(EntitleError):
    status_code = 400
    default_code = "invalid_authorization_code"


@dataclass(frozen=True)
class AppleTokens:
    refresh_token: str
    # The `sub` of the id_token Apple returned with them, when it returned one.
    subject: str | None


class AppleSigninApi:
    def __init__(
        self,
        *,
        team_id: str,
        key_id: str,
        private_key: ec.EllipticCurvePrivateKey,
        http: httpx.AsyncClient,
        api_base: str = APPLE_API_BASE,
    ) -> None:
        self.team_id = team_id
        self.key_id = key_id
        self.private_key = private_key
        self.http = http
        self.api_base = api_base.rstrip("/")

    @classmethod
    def from_key_file(
        cls, *, team_id: str, key_id: str, path: Path, http: httpx.AsyncClient, api_base: str
    ) -> AppleSigninApi:
        loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(loaded, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{path} is not the EC private key (.p8) of a Sign in with Apple key")
        return cls(team_id=team_id, key_id=key_id, private_key=loaded, http=http, api_base=api_base)

    @classmethod
    def from_key_text(
        cls, *, team_id: str, key_id: str, text: str, http: httpx.AsyncClient, api_base: str
    ) -> AppleSigninApi:
        """The key pasted as text (its PEM); the error never quotes it."""
        # Pasting loses or doubles line ends: PEM needs one per line.
        pem = "\n".join(line.strip() for line in text.strip().splitlines() if line.strip()) + "\n"
        try:
            loaded = serialization.load_pem_private_key(pem.encode(), password=None)
        except (ValueError, TypeError, UnicodeEncodeError):
            raise ValueError(
                "is not the text of a .p8 key: paste the whole file, from -----BEGIN PRIVATE KEY----- "
                "to -----END PRIVATE KEY-----"
            ) from None
        if not isinstance(loaded, ec.EllipticCurvePrivateKey):
            raise ValueError("is not the EC private key (.p8) of a Sign in with Apple key")
        return cls(team_id=team_id, key_id=key_id, private_key=loaded, http=http, api_base=api_base)

    def client_secret(self, client_id: str, *, now: float | None = None) -> str:
        issued = int(time.time() if now is None else now)
        claims = {
            "iss": self.team_id,
            "iat": issued,
            "exp": issued + CLIENT_SECRET_LIFETIME,
            "aud": APPLE_API_BASE,
            "sub": client_id,
        }
        return jwt.encode(claims, self.private_key, algorithm="ES256", headers={"kid": self.key_id})

    async def exchange_code(self, code: str, *, client_id: str) -> AppleTokens:
        form = {
            "client_id": client_id,
            "client_secret": self.client_secret(client_id),
            "code": code,
            "grant_type": "authorization_code",
        }
        response = await self._post("/auth/token", form)
        if response.status_code == 400:
            # invalid_grant: the code is wrong, used, expired, or for another client.
            raise InvalidAuthorizationCode(
                "Apple did not accept the authorization code (wrong, used, or older than five minutes)."
            )
        body = self._json(response)
        refresh_token = body.get("refresh_token")
        if not isinstance(refresh_token, str) or not refresh_token:
            raise IdentityProviderUnavailable("Apple's token endpoint returned no refresh token.")
        return AppleTokens(refresh_token=refresh_token, subject=_subject_of(body.get("id_token")))

    async def revoke(self, refresh_token: str, *, client_id: str) -> None:
        form = {
            "client_id": client_id,
            "client_secret": self.client_secret(client_id),
            "token": refresh_token,
            "token_type_hint": "refresh_token",
        }
        response = await self._post("/auth/revoke", form)
        if response.status_code != 200:
            raise IdentityProviderUnavailable(f"Apple's revoke endpoint answered {response.status_code}.")

    async def _post(self, path: str, form: dict[str, str]) -> httpx.Response:
        try:
            response = await self.http.post(self.api_base + path, data=form, timeout=10.0)
        except httpx.HTTPError as exc:
            raise IdentityProviderUnavailable("Sign in with Apple's API could not be reached.") from exc
        if response.status_code >= 500 or response.status_code in (401, 403, 429):
            raise IdentityProviderUnavailable(f"Sign in with Apple's API answered {response.status_code}.")
        return response

    @staticmethod
    def _json(response: httpx.Response) -> dict[str, Any]:
        if response.status_code != 200:
            raise IdentityProviderUnavailable(f"Apple's token endpoint answered {response.status_code}.")
        try:
            body = response.json()
        except ValueError as exc:
            raise IdentityProviderUnavailable("Apple's token endpoint did not answer JSON.") from exc
        if not isinstance(body, dict):
            raise IdentityProviderUnavailable("Apple's token endpoint did not answer an object.")
        return body


def _subject_of(id_token: Any) -> str | None:
    # Straight from Apple over TLS in answer to our own authenticated request: no signature check needed
    # to read whose tokens these are.
    if not isinstance(id_token, str):
        return None
    try:
        claims = jwt.decode(id_token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    subject = claims.get("sub")
    return subject if isinstance(subject, str) else None
