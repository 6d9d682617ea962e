"""Request and response bodies shared by several routes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import ConfigDict, EmailStr, Field, StrictInt

from entitle.core.models.accounts import Account
from entitle.services.access.balances import MAX_AMOUNT
from entitle.services.identity.page_links import Page
from entitle.services.identity.passwords import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH
from entitle.services.identity.tokens import TokenPair
from entitle.storable_text import StorableTextModel


class StrictBody(StorableTextModel):
    # Unknown fields are refused so a typo in a client is a clear 422, not a silent no-op; text that
    # the database cannot store (NUL, ...) is a 422 naming its field.
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class PageLinkBody(StrictBody):
    page: Page


class RedemptionBody(StrictBody):
    # The token of a mailed redemption link (`/redeem?token=`).
    token: str = Field(min_length=1, max_length=200)


class BalancePostBody(StrictBody):
    # Strict: 5.0, "5" and true are refused rather than read as 5 (money-like amounts are never guessed).
    amount: StrictInt = Field(
        ge=-MAX_AMOUNT, le=MAX_AMOUNT, description="Negative spends, positive credits; never 0."
    )
    reason: str | None = Field(
        default=None,
        min_length=1,
        max_length=500,
        description="For the ledger; `spend` or `credit` if left out.",
    )
    idempotency_key: str | None = Field(
        default=None,
        min_length=1,
        max_length=255,
        description="The same key again answers the first result (200) and applies nothing.",
    )


class Credentials(StrictBody):
    email: EmailStr = Field(max_length=320)
    password: str = Field(min_length=MIN_PASSWORD_LENGTH, max_length=MAX_PASSWORD_LENGTH)


class LoginCredentials(StrictBody):
    email: EmailStr = Field(max_length=320)
    # No minimum here: a short password is simply wrong, and saying so would leak the policy per account.
    password: str = Field(min_length=1, max_length=MAX_PASSWORD_LENGTH)


class RefreshBody(StrictBody):
    refresh_token: str = Field(min_length=1, max_length=200)


class EmailBody(StrictBody):
    email: EmailStr = Field(max_length=320)


class TokenBody(StrictBody):
    token: str = Field(min_length=1, max_length=200)


class ResetPasswordBody(StrictBody):
    token: str = Field(min_length=1, max_length=200)
    password: str = Field(min_length=MIN_PASSWORD_LENGTH, max_length=MAX_PASSWORD_LENGTH)


class SetPasswordBody(StrictBody):
    password: str = Field(min_length=MIN_PASSWORD_LENGTH, max_length=MAX_PASSWORD_LENGTH)
    # Required when the account already has a working password (a change rather than an addition).
    current_password: str | None = Field(default=None, min_length=1, max_length=MAX_PASSWORD_LENGTH)


def identity_json(identity: Any) -> dict[str, Any]:
    return {
        "id": str(identity.id),
        "provider": identity.provider,
        "email": identity.email,
        "email_verified": identity.email_verified,
        "is_private_relay": identity.is_private_relay,
        "created_at": _iso(identity.created_at),
        "last_sign_in_at": _iso(identity.last_sign_in_at),
    }


def email_verified(account: Account) -> bool:
    """Whether someone vouched for the account's address: its provider, or our mailed link."""
    return account.email is not None and any(
        identity.email == account.email and identity.email_verified for identity in account.identities
    )


def account_json(account: Account) -> dict[str, Any]:
    return {
        "id": str(account.id),
        "email": account.email,
        "email_verified": email_verified(account),
        "external_id": account.external_id,
        "name": account.name,
        "app_account_token": str(account.app_account_token),
        "created_at": _iso(account.created_at),
        "identities": [identity_json(identity) for identity in account.identities],
    }


def session_json(account: Account, pair: TokenPair) -> dict[str, Any]:
    return {
        "account": account_json(account),
        "access_token": pair.access_token,
        "refresh_token": pair.refresh_token,
        "token_type": "Bearer",
        "expires_in": pair.expires_in,
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def parse_uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None
