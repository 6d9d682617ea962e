"""Single-use tokens mailed to an address: email verification and password reset.

Only the SHA-256 of a token is stored, so a database dump cannot be replayed. A token is spent by a
conditional UPDATE (`used_at IS NULL`), so two concurrent uses cannot both succeed. Each token names the
address it was mailed to: it proves that address and no other, even if the account's address changed.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from entitle.core.models.accounts import AccountToken, TokenPurpose
from entitle.db.types import utcnow
from entitle.errors import EntitleError

LIFETIMES = {
    TokenPurpose.VERIFY_EMAIL: timedelta(days=7),
    # Short: a reset link sitting in a mailbox is a password anyone with that mailbox can use.
    TokenPurpose.RESET_PASSWORD: timedelta(hours=1),
}
MAX_TOKEN_LENGTH = 200


class LinkTokenInvalid(EntitleError):
    status_code = 400
    default_code = "invalid_link_token"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def issue(db: AsyncSession, account_id: uuid.UUID, purpose: TokenPurpose, email: str) -> str:
    """A new token for `purpose`, valid for its lifetime; returns the token to put in the mail."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    db.add(
        AccountToken(
            account_id=account_id,
            purpose=purpose.value,
            token_hash=_digest(token),
            email=email,
            created_at=now,
            expires_at=now + LIFETIMES[purpose],
        )
    )
    await db.flush()
    return token


async def spend(db: AsyncSession, token: str, purpose: TokenPurpose) -> AccountToken:
    """Use the token once; raises LinkTokenInvalid when it is unknown, expired or already used."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        raise LinkTokenInvalid("This link is not valid.")
    row = await db.scalar(
        select(AccountToken).where(AccountToken.token_hash == _digest(token), AccountToken.purpose == purpose)
    )
    if row is None:
        raise LinkTokenInvalid("This link is not valid.")
    now = utcnow()
    if row.used_at is not None:
        raise LinkTokenInvalid("This link was already used.", code="link_token_used")
    if row.expires_at <= now:
        raise LinkTokenInvalid("This link has expired; ask for a new one.", code="link_token_expired")
    claimed = await db.execute(
        update(AccountToken)
        .where(AccountToken.id == row.id, AccountToken.used_at.is_(None))
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        raise LinkTokenInvalid("This link was already used.", code="link_token_used")
    return row


async def retire(db: AsyncSession, account_id: uuid.UUID, purpose: TokenPurpose) -> None:
    """Mark every unused token of this kind as used (a reset ends earlier reset links too)."""
    await db.execute(
        update(AccountToken)
        .where(
            AccountToken.account_id == account_id,
            AccountToken.purpose == purpose,
            AccountToken.used_at.is_(None),
        )
        .values(used_at=utcnow())
        .execution_options(synchronize_session=False)
    )
