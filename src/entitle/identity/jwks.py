"""Verify RS256 JSON Web Tokens against a provider's published JWKS.

This is the one place that decides whether an identity token is genuine; the Apple and Google
modules only add their own issuers, claims and quirks. Decisions made here:

- Only RS256 is accepted, checked on the header before any key is chosen, so neither `alg: none`
  nor HS256 signed with the public key as the shared secret can get through.
- Keys are cached for `cache_ttl` seconds. A token naming a `kid` we do not know triggers one
  refetch (that is how key rotation reaches us), but at most once per `min_refresh_interval`, so a
  stream of junk kids cannot turn us into a flood of requests to the provider.
- When the provider cannot be reached we keep using the keys we already have; with none at all the
  caller gets `IdentityProviderUnavailable` (503), never a 500 and never a silent accept.
- Expiry and issued-at are checked against the injected clock with a small leeway for clock skew.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import httpx
import jwt
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from entitle.identity.errors import IdentityProviderUnavailable, InvalidIdentityToken
from entitle.storable_text import require_storable

Clock = Callable[[], float]

ALGORITHM = "RS256"


class JwksVerifier:
    """Checks signature, issuer, audience and lifetime of RS256 tokens from one JWKS URL."""

    def __init__(
        self,
        *,
        issuers: Sequence[str],
        audiences: Sequence[str],
        jwks_url: str,
        http: httpx.AsyncClient,
        clock: Clock = time.time,
        cache_ttl: float = 3600.0,
        min_refresh_interval: float = 60.0,
        leeway: float = 60.0,
        fetch_timeout: float = 5.0,
        algorithms: Sequence[str] = (ALGORITHM,),
        audience_setting: str = "the client ids setting",
    ) -> None:
        # Apple and Google sign with RS256 only; an app's own identity provider may use ES256 too.
        self.algorithms = tuple(algorithms)
        self.issuers = frozenset(issuers)
        self.audiences = frozenset(a for a in audiences if a)
        self.jwks_url = jwks_url
        # Named in the 503 when no audience is configured, so the operator knows what to set.
        self.audience_setting = audience_setting
        self._http = http
        self._clock = clock
        self._cache_ttl = cache_ttl
        self._min_refresh_interval = min_refresh_interval
        self._leeway = leeway
        self._fetch_timeout = fetch_timeout
        self._keys: dict[str, Any] = {}
        self._fetched_at: float | None = None
        self._last_attempt: float | None = None
        self._lock = asyncio.Lock()

    async def verify(
        self, token: str, *, require_exp: bool = True, require_subject: bool = True
    ) -> dict[str, Any]:
        """Return the token's claims once every check passes; raise InvalidIdentityToken otherwise."""
        if not self.audiences:
            # A verifier with no configured client ids would accept nothing anyway; say why.
            raise IdentityProviderUnavailable(
                f"This sign-in method is not configured on the server: set {self.audience_setting}.",
                code="identity_provider_not_configured",
            )
        header = _unverified_header(token)
        algorithm = header.get("alg")
        if algorithm not in self.algorithms:
            raise InvalidIdentityToken(
                f"The identity token must be signed with {' or '.join(self.algorithms)}."
            )
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise InvalidIdentityToken("The identity token does not name its signing key.")
        key = await self._key_for(kid)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[str(algorithm)],
                # Lifetime is checked below against our own clock; audience by pyjwt (any of the list).
                options={"verify_exp": False, "verify_iat": False, "verify_nbf": False, "verify_aud": True},
                audience=sorted(self.audiences),
            )
        except jwt.InvalidAudienceError as exc:
            raise InvalidIdentityToken("The identity token was issued for another application.") from exc
        except jwt.MissingRequiredClaimError as exc:
            raise InvalidIdentityToken(f"The identity token lacks the '{exc.claim}' claim.") from exc
        except jwt.PyJWTError as exc:
            raise InvalidIdentityToken("The identity token's signature is not valid.") from exc
        self._check_issuer(claims)
        self._check_lifetime(claims, require_exp=require_exp)
        if require_subject and (not isinstance(claims.get("sub"), str) or not claims["sub"]):
            raise InvalidIdentityToken("The identity token has no subject.")
        _require_storable_claims(claims)
        return claims

    def _check_issuer(self, claims: Mapping[str, Any]) -> None:
        if claims.get("iss") not in self.issuers:
            raise InvalidIdentityToken("The identity token was issued by someone else.")

    def _check_lifetime(self, claims: Mapping[str, Any], *, require_exp: bool) -> None:
        now = self._clock()
        exp = _number(claims.get("exp"))
        iat = _number(claims.get("iat"))
        if require_exp or "exp" in claims:
            if exp is None:
                raise InvalidIdentityToken("The identity token has no valid expiry.")
            if now > exp + self._leeway:
                raise InvalidIdentityToken("The identity token has expired.")
        if iat is None:
            raise InvalidIdentityToken("The identity token has no valid issue time.")
        if iat > now + self._leeway:
            raise InvalidIdentityToken("The identity token was issued in the future.")

    async def _key_for(self, kid: str) -> Any:
        now = self._clock()
        if self._fetched_at is None or now - self._fetched_at >= self._cache_ttl or kid not in self._keys:
            await self._refresh()
        key = self._keys.get(kid)
        if key is None:
            if self._fetched_at is None:
                raise IdentityProviderUnavailable(
                    "The identity provider's signing keys could not be fetched."
                )
            raise InvalidIdentityToken("The identity token is signed with an unknown key.")
        return key

    async def _refresh(self) -> None:
        async with self._lock:
            now = self._clock()
            # Another task may have refreshed while we waited, or we refreshed (or failed to) moments
            # ago: both mean "not again yet", which is what keeps junk kids from hammering the provider.
            if self._last_attempt is not None and now - self._last_attempt < self._min_refresh_interval:
                return
            self._last_attempt = now
            try:
                keys = await self._fetch()
            except IdentityProviderUnavailable:
                if self._fetched_at is None:
                    raise
                # Stale keys beat an outage: the provider's keys change rarely and with overlap.
                return
            self._keys = keys
            self._fetched_at = now

    async def _fetch(self) -> dict[str, Any]:
        return await fetch_jwks(
            self._http, self.jwks_url, algorithms=self.algorithms, timeout=self._fetch_timeout
        )


async def fetch_jwks(
    http: httpx.AsyncClient, url: str, *, algorithms: Sequence[str] = (ALGORITHM,), timeout: float = 5.0
) -> dict[str, Any]:
    """kid -> public key of the signing keys at `url`; IdentityProviderUnavailable (with the network
    error as its cause) when they cannot be had. Set-up calls it too, to prove a configured URL."""
    try:
        response = await http.get(url, timeout=timeout)
    except httpx.HTTPError as exc:
        raise IdentityProviderUnavailable(
            "The identity provider's signing keys could not be fetched."
        ) from exc
    if response.status_code != 200:
        raise IdentityProviderUnavailable(
            f"The identity provider's key endpoint answered {response.status_code}."
        )
    try:
        document = response.json()
    except ValueError as exc:
        raise IdentityProviderUnavailable("The identity provider's key set is not JSON.") from exc
    return parse_jwks(document, algorithms)


def parse_jwks(document: Any, algorithms: Sequence[str] = (ALGORITHM,)) -> dict[str, Any]:
    """Map kid -> public key for the signing keys in a JWKS document that fit `algorithms`; skip the rest."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise IdentityProviderUnavailable("The identity provider's key set has no keys.")
    keys: dict[str, Any] = {}
    for entry in document["keys"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("kid"), str):
            continue
        kty = entry.get("kty")
        wanted = "RS256" if kty == "RSA" else "ES256" if kty == "EC" and entry.get("crv") == "P-256" else None
        if wanted is None or wanted not in algorithms:
            continue
        if entry.get("alg", wanted) != wanted or entry.get("use", "sig") != "sig":
            continue
        try:
            loader = RSAAlgorithm if kty == "RSA" else ECAlgorithm
            keys[entry["kid"]] = loader.from_jwk(json.dumps(entry))
        except (jwt.PyJWTError, ValueError, TypeError, KeyError):
            continue
    return keys


# The claims the services store, with the most a column holds (an OIDC `sub` is at most 255 characters,
# https://openid.net/specs/openid-connect-core-1_0.html#IDToken; a name is clipped where it is stored).
_STORED_CLAIMS: dict[str, int | None] = {"sub": 255, "email": 320, "name": None}


def _require_storable_claims(claims: Mapping[str, Any]) -> None:
    """A signed token can still carry a NUL: refused (422) by the claim's name, before any lookup."""
    for claim, max_length in _STORED_CLAIMS.items():
        value = claims.get(claim)
        if isinstance(value, str):
            require_storable(value, field=f"the identity token's `{claim}` claim", max_length=max_length)


def _unverified_header(token: str) -> dict[str, Any]:
    if not isinstance(token, str) or token.count(".") != 2:
        raise InvalidIdentityToken("The identity token is not a JWT.")
    try:
        return jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise InvalidIdentityToken("The identity token is not a JWT.") from exc


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None
