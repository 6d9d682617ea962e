"""Access tokens (ES256 JWTs) and rotating refresh tokens with reuse detection.

Access tokens are short-lived and verifiable offline by the app's own backend through
`/.well-known/jwks.json`. Refresh tokens are opaque, stored only as SHA-256 hashes, and rotate on every
use; each belongs to a family (one sign-in). Presenting a refresh token that was already exchanged means
someone holds a copy, so the whole family is revoked and both holders must sign in again.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from entitle.core.models.accounts import RefreshToken, RefreshTokenFamily
from entitle.db.types import utcnow
from entitle.errors import Unauthorized
from entitle.services.delivery.changes import change_bus

ACCESS_TOKEN_ALGORITHM = "ES256"
# Verified access tokens remembered per process (oldest dropped first).
VERIFIED_CACHE_SIZE = 10_000
REFRESH_TOKEN_PREFIX = "rt_"


class SigningKey:
    """The private key that signs access tokens, and its public JWK."""

    def __init__(self, private_key: ec.EllipticCurvePrivateKey) -> None:
        self.private_key = private_key
        self.public_key = private_key.public_key()
        self.kid = _key_id(self.public_key)

    @classmethod
    def load_or_create(cls, path: Path, *, create: bool) -> SigningKey:
        """Load the PEM at `path`; in development create it on first start (mode 0600)."""
        if path.exists():
            loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
            if not isinstance(loaded, ec.EllipticCurvePrivateKey) or loaded.curve.name != "secp256r1":
                raise ValueError(f"{path} is not an EC P-256 private key (ES256 access tokens need one)")
            return cls(loaded)
        if not create:
            raise ValueError(f"the access-token signing key {path} does not exist")
        key = ec.generate_private_key(ec.SECP256R1())
        path.parent.mkdir(parents=True, exist_ok=True)
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        path.touch(mode=0o600)
        path.write_bytes(pem)
        return cls(key)

    def derived_secret(self, purpose: str) -> bytes:
        """A symmetric key for `purpose`, the same in every process that shares this signing key."""
        private = self.private_key.private_numbers().private_value.to_bytes(32, "big")
        return hmac.new(private, purpose.encode(), hashlib.sha256).digest()

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(ec.generate_private_key(ec.SECP256R1()))

    def public_jwk(self) -> dict[str, Any]:
        jwk: dict[str, Any] = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self.public_key))
        return jwk | {"kid": self.kid, "use": "sig", "alg": ACCESS_TOKEN_ALGORITHM}


def _key_id(public_key: ec.EllipticCurvePublicKey) -> str:
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()[:12]).decode().rstrip("=")


@dataclass(frozen=True)
class AccessClaims:
    account_id: uuid.UUID
    # None for a token from the app's own identity provider (ENTITLE_EXTERNAL_AUTH_*): no session here.
    session_id: uuid.UUID | None
    expires_at: datetime


class TokenIssuer:
    def __init__(
        self, key: SigningKey, *, issuer: str, access_ttl: timedelta, refresh_ttl: timedelta
    ) -> None:
        self.key = key
        self.issuer = issuer
        self.access_ttl = access_ttl
        self.refresh_ttl = refresh_ttl
        self._verified: dict[str, AccessClaims] = {}

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.key.public_jwk()]}

    def issue_access_token(self, account_id: uuid.UUID, session_id: uuid.UUID, *, now: datetime) -> str:
        claims = {
            "iss": self.issuer,
            "sub": str(account_id),
            "sid": str(session_id),
            "iat": int(now.timestamp()),
            "exp": int((now + self.access_ttl).timestamp()),
            "jti": secrets.token_urlsafe(12),
        }
        return jwt.encode(claims, self.key.private_key, ACCESS_TOKEN_ALGORITHM, headers={"kid": self.key.kid})

    def verify_access_token(self, token: str) -> AccessClaims:
        # An ES256 verification costs about 80 microseconds, most of a cheap request; a token that
        # verified once verifies again until it expires, so recent results are kept.
        cached = self._verified.get(token)
        if cached is not None:
            if cached.expires_at > datetime.now(UTC):
                return cached
            del self._verified[token]
            raise Unauthorized("The access token has expired.", code="token_expired")
        claims = self._verify(token)
        if len(self._verified) >= VERIFIED_CACHE_SIZE:
            self._verified.pop(next(iter(self._verified)))
        self._verified[token] = claims
        return claims

    def _verify(self, token: str) -> AccessClaims:
        try:
            claims = jwt.decode(
                token,
                self.key.public_key,
                algorithms=[ACCESS_TOKEN_ALGORITHM],
                issuer=self.issuer,
                options={"require": ["exp", "iat", "sub", "iss", "sid"]},
                leeway=5,
            )
            return AccessClaims(
                account_id=uuid.UUID(claims["sub"]),
                session_id=uuid.UUID(claims["sid"]),
                expires_at=datetime.fromtimestamp(claims["exp"], UTC),
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthorized("The access token has expired.", code="token_expired") from exc
        except (jwt.InvalidTokenError, ValueError, TypeError, OverflowError) as exc:
            raise Unauthorized("The access token is not valid.", code="invalid_token") from exc


def _hash_refresh_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def _new_refresh_token(
    db: AsyncSession, family_id: uuid.UUID, issuer: TokenIssuer, now: datetime
) -> str:
    token = REFRESH_TOKEN_PREFIX + secrets.token_urlsafe(32)
    db.add(
        RefreshToken(
            family_id=family_id,
            token_hash=_hash_refresh_token(token),
            created_at=now,
            expires_at=now + issuer.refresh_ttl,
        )
    )
    await db.flush()
    return token


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int
    account_id: uuid.UUID
    # The refresh-token family: the session the hosted pages' cookie names.
    session_id: uuid.UUID


async def start_session(
    db: AsyncSession, issuer: TokenIssuer, account_id: uuid.UUID, *, user_agent: str | None = None
) -> TokenPair:
    """A new sign-in: a new refresh-token family and its first pair."""
    now = utcnow()
    family = RefreshTokenFamily(
        account_id=account_id, created_at=now, user_agent=(user_agent or "")[:300] or None
    )
    db.add(family)
    await db.flush()
    return await _pair(db, issuer, account_id, family.id, now)


async def _pair(
    db: AsyncSession, issuer: TokenIssuer, account_id: uuid.UUID, family_id: uuid.UUID, now: datetime
) -> TokenPair:
    return TokenPair(
        access_token=issuer.issue_access_token(account_id, family_id, now=now),
        refresh_token=await _new_refresh_token(db, family_id, issuer, now),
        expires_in=int(issuer.access_ttl.total_seconds()),
        account_id=account_id,
        session_id=family_id,
    )


class RefreshTokenReused(Unauthorized):
    default_code = "refresh_token_reused"


async def rotate(db: AsyncSession, issuer: TokenIssuer, refresh_token: str) -> TokenPair:
    """Exchange a refresh token for a new pair; a reused token revokes its whole family.

    The exchange is a conditional UPDATE (`used_at IS NULL`), so two concurrent uses of the same token
    cannot both succeed: the loser sees it as reuse.
    """
    now = utcnow()
    invalid = Unauthorized("The refresh token is not valid.", code="invalid_refresh_token")
    if not refresh_token.startswith(REFRESH_TOKEN_PREFIX) or len(refresh_token) > 200:
        raise invalid
    row = (
        await db.execute(
            select(RefreshToken, RefreshTokenFamily)
            .join(RefreshTokenFamily, RefreshToken.family_id == RefreshTokenFamily.id)
            .where(RefreshToken.token_hash == _hash_refresh_token(refresh_token))
        )
    ).one_or_none()
    if row is None:
        raise invalid
    token, family = row
    if family.revoked_at is not None:
        raise Unauthorized("This session has ended; sign in again.", code="session_revoked")
    if token.expires_at <= now:
        raise Unauthorized("The refresh token has expired; sign in again.", code="refresh_token_expired")
    claimed = await db.execute(
        update(RefreshToken)
        .where(RefreshToken.id == token.id, RefreshToken.used_at.is_(None))
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        return await _reject_reuse(db, family, now)
    return await _pair(db, issuer, family.account_id, family.id, now)


async def _reject_reuse(db: AsyncSession, family: RefreshTokenFamily, now: datetime) -> TokenPair:
    await revoke_family(db, family.id, reason="reuse_detected", now=now)
    # The revocation must outlive the error response: the refresh route commits it before re-raising.
    raise RefreshTokenReused(
        "This refresh token was already used; the session has been ended for safety. Sign in again."
    )


async def revoke_family(
    db: AsyncSession, family_id: uuid.UUID, *, reason: str, now: datetime | None = None
) -> None:
    ended = await db.scalars(
        update(RefreshTokenFamily)
        .where(RefreshTokenFamily.id == family_id, RefreshTokenFamily.revoked_at.is_(None))
        .values(revoked_at=now or utcnow(), revoked_reason=reason)
        .returning(RefreshTokenFamily.account_id)
        .execution_options(synchronize_session=False)
    )
    for account_id in set(ended.all()):
        await _end_streams(db, account_id)


async def revoke_all_sessions(db: AsyncSession, account_id: uuid.UUID, *, reason: str) -> int:
    result = await db.execute(
        update(RefreshTokenFamily)
        .where(RefreshTokenFamily.account_id == account_id, RefreshTokenFamily.revoked_at.is_(None))
        .values(revoked_at=utcnow(), revoked_reason=reason)
        .execution_options(synchronize_session=False)
    )
    await _end_streams(db, account_id)
    return int(result.rowcount)  # type: ignore[attr-defined]


async def _end_streams(db: AsyncSession, account_id: uuid.UUID) -> None:
    """Open streams re-read once this commits, find their session ended, and close."""
    bus = change_bus(db)
    if bus is not None:
        await bus.account_changed(db, account_id)
