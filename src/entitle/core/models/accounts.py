"""Accounts and the ways into them: identities, password credentials, refresh-token families."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import Boolean, ForeignKey, Index, Integer, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from entitle.db.base import Base
from entitle.db.types import UUID, CheckedString, CheckedText, UTCDateTime, new_id, utcnow


class Account(Base):
    __tablename__ = "accounts"

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, default=new_id)
    # The UUID the iOS app passes to StoreKit as `appAccountToken`; Apple echoes it in every
    # transaction, which is how an App Store purchase finds its account.
    app_account_token: Mapped[uuid.UUID] = mapped_column(UUID, unique=True, default=new_id)
    # The primary address, lower-cased; may be None for an Apple identity that shared no email.
    email: Mapped[str | None] = mapped_column(CheckedString(320), index=True)
    name: Mapped[str | None] = mapped_column(CheckedString(200))
    # The id the app's own user table knows this person by (imports, external sign-in); unique when set.
    external_id: Mapped[str | None] = mapped_column(CheckedString(255), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Set when the person deleted the account; the row stays (anonymized) for accounting records.
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    identities: Mapped[list[Identity]] = relationship(
        back_populates="account", lazy="selectin", order_by="Identity.created_at"
    )

    @property
    def is_deleted(self) -> bool:
        return self.deleted_at is not None


class Identity(Base):
    """One way in: a password login (provider `email`), an Apple ID, or a Google account."""

    __tablename__ = "identities"
    __table_args__ = (UniqueConstraint("provider", "subject"),)

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, default=new_id)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    # `email`, `apple` or `google`.
    provider: Mapped[str] = mapped_column(CheckedString(20))
    # The provider's stable user id; for `email` the lower-cased address.
    subject: Mapped[str] = mapped_column(CheckedString(320))
    email: Mapped[str | None] = mapped_column(CheckedString(320), index=True)
    # True only when the provider itself vouches for the address.
    email_verified: Mapped[bool] = mapped_column(Boolean, default=False)
    is_private_relay: Mapped[bool] = mapped_column(Boolean, default=False)
    name: Mapped[str | None] = mapped_column(CheckedString(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_sign_in_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Set when the provider told us the person withdrew consent or the identity stopped working.
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    account: Mapped[Account] = relationship(back_populates="identities")


class PasswordCredential(Base):
    __tablename__ = "password_credentials"

    identity_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("identities.id", ondelete="CASCADE"), primary_key=True
    )
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    password_hash: Mapped[str] = mapped_column(CheckedText)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Set when a verified provider proved the address belongs to someone else, so a password set
    # by whoever claimed the address first cannot be used to take over the real owner.
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    disabled_reason: Mapped[str | None] = mapped_column(CheckedString(100))


class RefreshTokenFamily(Base):
    """One sign-in session; every refresh token issued from it belongs to the family."""

    __tablename__ = "refresh_token_families"

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, default=new_id)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # `logout`, `reuse_detected`, `account_deleted`, `consent_revoked`, ...
    revoked_reason: Mapped[str | None] = mapped_column(CheckedString(50))
    user_agent: Mapped[str | None] = mapped_column(CheckedString(300))


class RefreshToken(Base):
    __tablename__ = "refresh_tokens"
    __table_args__ = (Index("ix_refresh_tokens_family_id", "family_id"),)

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, default=new_id)
    family_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("refresh_token_families.id", ondelete="CASCADE"))
    # SHA-256 of the opaque token; the token itself is never stored.
    token_hash: Mapped[str] = mapped_column(CheckedString(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Set when the token was exchanged; presenting it again means it was stolen or replayed.
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class TokenPurpose(StrEnum):
    # Mailed at registration (and on request): proves the person reads mail at the address.
    VERIFY_EMAIL = "verify_email"
    # Mailed by "forgot password": sets a new password and ends every session.
    RESET_PASSWORD = "reset_password"


class AccountToken(Base):
    """A single-use token mailed to an address (verification, password reset); only its hash is kept."""

    __tablename__ = "account_tokens"

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, default=new_id)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    purpose: Mapped[str] = mapped_column(CheckedString(30))
    # SHA-256 of the token; the token itself exists only in the mail.
    token_hash: Mapped[str] = mapped_column(CheckedString(64), unique=True)
    # The address the mail went to: the token proves that address and no other.
    email: Mapped[str] = mapped_column(CheckedString(320))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class PageLink(Base):
    """A single-use link an app opens in a browser to show a hosted page signed in; only its hash is kept."""

    __tablename__ = "page_links"

    # SHA-256 of the link's token: a leaked row opens nothing.
    token_hash: Mapped[str] = mapped_column(CheckedString(64), primary_key=True)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    # Which page it opens (a key of `services.identity.page_links.PAGES`), never a free path.
    page: Mapped[str] = mapped_column(CheckedString(30))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    # Set on the first open, which exchanged it for a page session.
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class AppleSigninToken(Base):
    """A Sign in with Apple refresh token, encrypted, kept so it can be revoked (App Store rule 5.1.1(v)).

    Not tied to the identity row by a foreign key: when the account is deleted or the identity unlinked,
    the identity goes at once while the revocation waits for the worker (and its retries).
    """

    __tablename__ = "apple_signin_tokens"
    __table_args__ = (Index("ix_apple_signin_tokens_due", "revoke_requested_at", "revoked_at"),)

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, default=new_id)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    subject: Mapped[str] = mapped_column(CheckedString(320), index=True)
    # The bundle id or Services ID the authorization code was issued to; revocation must name it again.
    client_id: Mapped[str] = mapped_column(CheckedString(255))
    # Fernet ciphertext of the refresh token; erased once Apple confirmed the revocation.
    refresh_token_encrypted: Mapped[str | None] = mapped_column(CheckedText)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Set when the account was deleted or the identity unlinked; the worker revokes from then on.
    revoke_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(CheckedText)


class Operator(Base):
    """An account that may open the dashboard at /admin (made one with `entitle admin add EMAIL`)."""

    __tablename__ = "operators"

    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    added_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Who made them one: `cli:<os user>` or the operator's account id.
    added_by: Mapped[str | None] = mapped_column(CheckedString(200))
