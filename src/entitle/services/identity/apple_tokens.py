"""Sign in with Apple refresh tokens: kept encrypted, revoked when the account or the identity goes.

Apple requires apps that offer account deletion to revoke the person's Sign in with Apple tokens
(App Store Review Guideline 5.1.1(v)). The refresh token from the authorization code is the handle
that revocation needs, so it is kept, encrypted (`services.identity.encryption`). Deleting the account or
unlinking the Apple identity marks its tokens in the same transaction; the worker (`revoke_due`)
calls Apple's revoke endpoint and retries with backoff until Apple confirms, then erases the ciphertext.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from entitle.core.models.accounts import Account, AppleSigninToken
from entitle.db.claims import Claim, claim_leases, holding
from entitle.db.engine import Database
from entitle.db.types import utcnow
from entitle.errors import EntitleError, ProviderUnavailable
from entitle.identity import VerifiedIdentity
from entitle.identity.apple_api import AppleSigninApi, AppleTokens, InvalidAuthorizationCode
from entitle.services.identity.encryption import SecretBox

log = logging.getLogger(__name__)

FIRST_RETRY = timedelta(minutes=1)
MAX_RETRY = timedelta(hours=6)
CLAIM_LEASE = timedelta(minutes=2)


async def exchange_code(
    api: AppleSigninApi | None, code: str | None, verified: VerifiedIdentity
) -> AppleTokens | None:
    """Trade the app's authorization code for Apple's refresh token; None when the app sent no code."""
    if code is None:
        return None
    if api is None:
        raise ProviderUnavailable(
            "Sign in with Apple's API is not configured: set ENTITLE_APPLE_SIGNIN_TEAM_ID, "
            "ENTITLE_APPLE_SIGNIN_KEY_ID and ENTITLE_APPLE_SIGNIN_PRIVATE_KEY_PATH.",
            code="apple_signin_api_not_configured",
        )
    # The code was issued to the same client as the identity token (bundle id on iOS, Services ID on web).
    exchanged = await api.exchange_code(code, client_id=verified.audience or "")
    if exchanged.subject is not None and exchanged.subject != verified.subject:
        raise InvalidAuthorizationCode(
            "The authorization code belongs to another Apple ID than the identity token."
        )
    return exchanged


async def keep(
    db: AsyncSession,
    box: SecretBox,
    account_id: uuid.UUID,
    verified: VerifiedIdentity,
    exchanged: AppleTokens | None,
) -> None:
    """Keep the refresh token from an exchanged code (nothing when there was none)."""
    if exchanged is None:
        return
    await keep_refresh_token(
        db,
        box,
        account_id=account_id,
        subject=verified.subject,
        client_id=verified.audience or "",
        token=exchanged.refresh_token,
    )


async def keep_refresh_token(
    db: AsyncSession, box: SecretBox, *, account_id: uuid.UUID, subject: str, client_id: str, token: str
) -> None:
    """Store (or replace) the account's refresh token for this Apple subject and client id."""
    existing = await db.scalar(
        select(AppleSigninToken).where(
            AppleSigninToken.account_id == account_id,
            AppleSigninToken.subject == subject,
            AppleSigninToken.client_id == client_id,
            AppleSigninToken.revoke_requested_at.is_(None),
        )
    )
    if existing is None:
        db.add(
            AppleSigninToken(
                account_id=account_id,
                subject=subject,
                client_id=client_id,
                refresh_token_encrypted=box.encrypt(token),
            )
        )
    else:
        existing.refresh_token_encrypted = box.encrypt(token)
    await db.flush()


async def request_revocation(db: AsyncSession, account_id: uuid.UUID, *, subject: str | None = None) -> int:
    """Mark the account's Apple tokens (or one subject's) for revocation by the worker."""
    conditions = [
        AppleSigninToken.account_id == account_id,
        AppleSigninToken.revoke_requested_at.is_(None),
    ]
    if subject is not None:
        conditions.append(AppleSigninToken.subject == subject)
    now = utcnow()
    result = await db.execute(
        update(AppleSigninToken)
        .where(*conditions)
        .values(revoke_requested_at=now, next_attempt_at=now)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def revoke_on_deletion(db: AsyncSession, account: Account) -> None:
    """An account deletion hook (AppContext.account_deletion_hooks)."""
    await request_revocation(db, account.id)


async def revoke_due(
    database: Database,
    api: AppleSigninApi | None,
    box: SecretBox,
    *,
    limit: int = 50,
    lease: timedelta = CLAIM_LEASE,
) -> int:
    """Revoke marked tokens at Apple; returns how many were attempted."""
    if api is None:
        return 0
    now = utcnow()
    async with database.transaction() as db:
        # Claimed with a lease, so two workers never revoke the same token at once.
        claimed = await claim_leases(
            db,
            AppleSigninToken,
            AppleSigninToken.revoke_requested_at.is_not(None)
            & AppleSigninToken.revoked_at.is_(None)
            & (AppleSigninToken.next_attempt_at <= now),
            order_by=AppleSigninToken.revoke_requested_at,
            limit=limit,
            lease=lease,
        )
    for claim in claimed:
        await _revoke(database, api, box, claim, lease)
    return len(claimed)


async def _revoke(
    database: Database, api: AppleSigninApi, box: SecretBox, claim: Claim, lease: timedelta
) -> None:
    async with database.transaction() as db:
        row = await db.get(AppleSigninToken, claim.id)
        if row is None or row.revoked_at is not None:
            return
        token = box.decrypt(row.refresh_token_encrypted) if row.refresh_token_encrypted else None
        client_id = row.client_id
        if token is None:
            # Encrypted under a key this server no longer has: nothing can be sent; say so and stop.
            row.attempts += 1
            row.last_error = "the token cannot be decrypted with ENTITLE_ENCRYPTION_KEY"
            row.next_attempt_at = None
            log.error("Apple token %s cannot be decrypted; it was not revoked", row.id)
            return
    # The batch's lease may have run out while the revocations before this one went (a slow Apple): sent
    # only if no other worker took the row since. No transaction is held while Apple answers.
    failure: str | None = None
    async with holding(database, AppleSigninToken, claim, lease) as still_ours:
        if not still_ours:
            return
        try:
            await api.revoke(token, client_id=client_id)
        except EntitleError as exc:
            failure = exc.message
    async with database.transaction() as db:
        row = await db.get(AppleSigninToken, claim.id)
        if row is None:
            return
        row.attempts += 1
        if failure is not None:
            row.last_error = failure[:500]
            delay: timedelta = FIRST_RETRY * (2 ** min(row.attempts - 1, 20))
            row.next_attempt_at = utcnow() + min(delay, MAX_RETRY)
            log.warning("revoking Apple token %s failed (attempt %d): %s", row.id, row.attempts, failure)
            return
        row.revoked_at = utcnow()
        row.refresh_token_encrypted = None
        row.last_error = None
