"""Sign in with Apple: identity tokens and server-to-server notifications.

Apple signs both with the keys at https://appleid.apple.com/auth/keys (RS256). The audience is the
app's bundle id for tokens minted on iOS and the Services ID for tokens minted on the web, so the
verifier accepts any of the configured client ids. Apple quirks handled here:

- `email_verified` and `is_private_email` arrive as the strings "true"/"false" on some platforms and
  as booleans on others.
- iOS apps pass SHA-256(nonce) to Apple and keep the raw nonce, while web flows pass it raw; so the
  token's `nonce` may equal either. When the device cannot carry a nonce (`nonce_supported: false`)
  the claim is absent and Apple documents treating the nonce as optional.
- Notifications carry their payload in `events`, a JSON *string* inside the JWT.
  https://developer.apple.com/documentation/sign_in_with_apple/processing_changes_for_sign_in_with_apple_accounts
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import httpx
import jwt

from entitle import untrusted_json
from entitle.constant_time import same_secret
from entitle.identity.errors import InvalidIdentityToken
from entitle.identity.jwks import Clock, JwksVerifier
from entitle.identity.verified import VerifiedIdentity, claim_email, claim_is_true

APPLE_ISSUER = "https://appleid.apple.com"
APPLE_JWKS_URL = "https://appleid.apple.com/auth/keys"
PRIVATE_RELAY_DOMAIN = "privaterelay.appleid.com"


class AppleNotificationType(StrEnum):
    # The person stopped using Sign in with Apple for this app (Settings > Apple ID > Password & Security).
    CONSENT_REVOKED = "consent-revoked"
    # The person deleted their Apple ID, or Apple deleted it.
    ACCOUNT_DELETE = "account-delete"
    # The person stopped forwarding from their private relay address.
    EMAIL_DISABLED = "email-disabled"
    # The person turned forwarding from their private relay address back on.
    EMAIL_ENABLED = "email-enabled"


@dataclass(frozen=True, slots=True)
class AppleNotification:
    """One verified server-to-server notification from Sign in with Apple."""

    # Apple's unique id for this delivery (`jti`); the inbox uses it for idempotency.
    event_id: str
    type: AppleNotificationType
    subject: str
    email: str | None
    is_private_email: bool
    # Apple's timestamp for the event (epoch seconds in the documented examples), when it sends one.
    event_time: int | None
    claims: dict[str, Any]


def is_private_relay_address(email: str | None) -> bool:
    return email is not None and email.strip().lower().endswith(PRIVATE_RELAY_DOMAIN)


def nonce_matches(claimed: str, raw_nonce: str) -> bool:
    """True when the token's nonce is the raw nonce or its SHA-256 hex (what iOS apps send to Apple)."""
    hashed = hashlib.sha256(raw_nonce.encode()).hexdigest()
    # Compare both so the time taken does not hint at which form was expected.
    raw_ok = same_secret(claimed, raw_nonce)
    hashed_ok = same_secret(claimed.lower(), hashed)
    return raw_ok or hashed_ok


class AppleIdentityVerifier:
    """Verifies Sign in with Apple identity tokens and server-to-server notifications."""

    provider = "apple"

    def __init__(
        self,
        *,
        client_ids: Sequence[str],
        http: httpx.AsyncClient,
        jwks_url: str = APPLE_JWKS_URL,
        clock: Clock = time.time,
        leeway: float = 60.0,
        cache_ttl: float = 3600.0,
        min_refresh_interval: float = 60.0,
    ) -> None:
        self.client_ids = tuple(client_ids)
        self.jwks = JwksVerifier(
            issuers=[APPLE_ISSUER],
            audiences=self.client_ids,
            audience_setting="ENTITLE_APPLE_SIGNIN_CLIENT_IDS",
            jwks_url=jwks_url,
            http=http,
            clock=clock,
            leeway=leeway,
            cache_ttl=cache_ttl,
            min_refresh_interval=min_refresh_interval,
        )

    async def verify(
        self, id_token: str, *, nonce: str | None = None, nonce_required: bool = False
    ) -> VerifiedIdentity:
        """The token's identity; with `nonce_required` (the web flow, where Apple always carries the
        nonce) a token without one is refused even when it says `nonce_supported: false`."""
        claims = await self.jwks.verify(id_token)
        if nonce is not None:
            _check_nonce(claims, nonce, required=nonce_required)
        email = claim_email(claims.get("email"))
        return VerifiedIdentity(
            provider="apple",
            subject=claims["sub"],
            email=email,
            email_verified=email is not None and claim_is_true(claims.get("email_verified")),
            is_private_relay=claim_is_true(claims.get("is_private_email")) or is_private_relay_address(email),
            issued_at=float(claims["iat"]),
            audience=claims["aud"] if isinstance(claims.get("aud"), str) else None,
        )

    async def verify_notification(self, payload: str) -> AppleNotification:
        # Notifications carry iat and jti but no exp; a replay is harmless because the inbox is keyed on jti.
        # The subject lives inside `events`, not at the top level.
        claims = await self.jwks.verify(payload, require_exp=False, require_subject=False)
        return notification_from_claims(claims, payload)


def read_verified_notification(payload: str) -> AppleNotification:
    """Re-read a notification that was verified before it was stored (an inbox row); no signature check.

    The inbox keeps the raw body so a failed event can be retried later, when Apple's keys may have
    rotated or be unreachable; the signature was checked once, before the row was written.
    """
    try:
        claims: dict[str, Any] = jwt.decode(payload, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise InvalidIdentityToken("The stored notification is not a JWT.") from exc
    return notification_from_claims(claims, payload)


def notification_from_claims(claims: dict[str, Any], payload: str) -> AppleNotification:
    event = _parse_events_claim(claims.get("events"))
    event_id = claims.get("jti")
    if not isinstance(event_id, str) or not event_id:
        # Older payloads lack jti; derive a stable id so duplicates still collapse in the inbox.
        event_id = hashlib.sha256(payload.encode()).hexdigest()
    try:
        kind = AppleNotificationType(str(event.get("type")))
    except ValueError as exc:
        raise InvalidIdentityToken("The notification has an unknown event type.") from exc
    subject = event.get("sub")
    if not isinstance(subject, str) or not subject:
        raise InvalidIdentityToken("The notification does not name a user.")
    event_time = event.get("event_time")
    return AppleNotification(
        event_id=event_id,
        type=kind,
        subject=subject,
        email=claim_email(event.get("email")),
        is_private_email=claim_is_true(event.get("is_private_email")),
        event_time=event_time if isinstance(event_time, int) and not isinstance(event_time, bool) else None,
        claims=claims,
    )


def _check_nonce(claims: dict[str, Any], nonce: str, *, required: bool = False) -> None:
    claimed = claims.get("nonce")
    if claimed is None:
        if not required and "nonce_supported" in claims and not claim_is_true(claims["nonce_supported"]):
            return
        raise InvalidIdentityToken("The identity token carries no nonce.")
    if not isinstance(claimed, str) or not nonce_matches(claimed, nonce):
        raise InvalidIdentityToken("The identity token's nonce does not match.")


def _parse_events_claim(value: Any) -> dict[str, Any]:
    # Apple documents `events` as a JSON string; accept an object too rather than fail on a format change.
    if isinstance(value, str):
        try:
            value = untrusted_json.loads(value)
        except ValueError as exc:
            raise InvalidIdentityToken("The notification's events claim is not JSON.") from exc
    if not isinstance(value, dict):
        raise InvalidIdentityToken("The notification has no events claim.")
    return value
