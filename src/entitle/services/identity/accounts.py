"""Accounts: registration and password sign-in, the signed-in account, and deletion.

Sign-in with Apple and Google, and the rules for linking identities, live in `services.identity.identities`.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import joinedload

from entitle.core import events
from entitle.core.models.accounts import (
    Account,
    Identity,
    PasswordCredential,
    RefreshTokenFamily,
    TokenPurpose,
)
from entitle.db.types import utcnow
from entitle.errors import Conflict, Unauthorized
from entitle.services.access.entitlements import refresh_entitlements
from entitle.services.delivery import mail
from entitle.services.identity import account_tokens, hash_profiles, passwords
from entitle.services.identity.tokens import AccessClaims, revoke_all_sessions

EMAIL_PROVIDER = "email"
# Identity providers whose verified addresses can be trusted to link accounts; a password identity
# joins them once its address was verified by mail.
PROVIDER_IDENTITIES = ("apple", "google")
ADDRESS_PROVING_PROVIDERS = (*PROVIDER_IDENTITIES, EMAIL_PROVIDER)


def normalize_email(email: str) -> str:
    return email.strip().lower()


@dataclass(frozen=True)
class SignedIn:
    account: Account
    # True when this sign-in created the account (the route answers 201).
    created: bool


async def create_account(
    db: AsyncSession,
    *,
    email: str | None,
    name: str | None = None,
    via: str,
    external_id: str | None = None,
    created_at: datetime | None = None,
) -> Account:
    account = Account(
        email=normalize_email(email) if email else None,
        name=name,
        external_id=external_id,
        created_at=created_at or utcnow(),
    )
    db.add(account)
    await db.flush()
    await events.record_event(db, account.id, events.ACCOUNT_CREATED, {"via": via})
    # The answer (nothing yet) is stored from the start, so the account's first signed-in read is the
    # same single query as every later one.
    await refresh_entitlements(db, account.id)
    return account


async def register_with_password(db: AsyncSession, *, email: str, password: str) -> Account:
    email = normalize_email(email)
    existing = await db.scalar(
        select(Identity.id).where(Identity.provider == EMAIL_PROVIDER, Identity.subject == email)
    )
    if existing is not None:
        raise Conflict("An account with this email address already exists.", code="email_taken")
    if await account_proving_address(db, email) is not None:
        # The address's owner proved it through Apple or Google: a password set by someone else now
        # would be a pre-account takeover waiting to happen. The owner keeps signing in with that provider.
        raise Conflict(
            "An account with this email address already exists; sign in with Apple or Google.",
            code="email_taken",
        )
    password_hash = await passwords.hash_password(password)
    account = await create_account(db, email=email, via=EMAIL_PROVIDER)
    # Unverified until the mailed link is opened: until then it never links automatically, and an
    # Apple or Google sign-in proving the address secures the account before landing in it.
    identity = Identity(
        account_id=account.id, provider=EMAIL_PROVIDER, subject=email, email=email, email_verified=False
    )
    db.add(identity)
    await db.flush()
    db.add(PasswordCredential(identity_id=identity.id, account_id=account.id, password_hash=password_hash))
    await db.flush()
    await send_verification(db, account.id, email)
    await db.refresh(account, ["identities"])
    return account


async def send_verification(db: AsyncSession, account_id: uuid.UUID, email: str) -> None:
    """Mail a fresh verification link for `email` (queued in this transaction)."""
    token = await account_tokens.issue(db, account_id, TokenPurpose.VERIFY_EMAIL, email)
    await mail.queue_mail(
        db, to=email, template="verify_email", account_id=account_id, data={"token": token, "email": email}
    )


async def authenticate_password(db: AsyncSession, *, email: str, password: str) -> Account:
    """The account for this email and password; the same error whatever was wrong."""
    email = normalize_email(email)
    row = (
        await db.execute(
            select(PasswordCredential, Account)
            .join(Identity, PasswordCredential.identity_id == Identity.id)
            .join(Account, Identity.account_id == Account.id)
            .where(Identity.provider == EMAIL_PROVIDER, Identity.subject == email)
        )
    ).one_or_none()
    credential, account = row if row is not None else (None, None)
    usable = (
        credential is not None
        and credential.disabled_at is None
        and account is not None
        and not account.is_deleted
    )
    # Verify even when there is nothing to verify against, and pay for every stored hash format whatever
    # this account's is, so timing reveals neither whether the address exists nor how it was imported.
    matches = await passwords.verify_with_parity(
        credential.password_hash if usable and credential else None,
        password,
        await hash_profiles.stored_profiles(db),
    )
    if not matches or account is None or credential is None:
        raise Unauthorized("The email or password is not right.", code="invalid_credentials")
    if passwords.needs_rehash(credential.password_hash):
        credential.password_hash = await passwords.hash_password(password)
        credential.updated_at = utcnow()
    await db.execute(
        update(Identity)
        .where(Identity.id == credential.identity_id)
        .values(last_sign_in_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return account


async def account_proving_address(db: AsyncSession, email: str) -> Account | None:
    """The live account holding a verified (non-relay) identity for `email`, if any.

    Apple and Google vouch for their addresses; a password identity counts once its address was verified
    by the link we mailed to it.
    """
    # Oldest first: if explicit linking left two accounts proving the address, the choice is stable.
    candidates = await db.scalars(
        select(Account)
        .join(Identity, Identity.account_id == Account.id)
        .where(
            Identity.provider.in_(ADDRESS_PROVING_PROVIDERS),
            Identity.email == normalize_email(email),
            Identity.email_verified.is_(True),
            Identity.is_private_relay.is_(False),
            Account.deleted_at.is_(None),
        )
        .order_by(Account.created_at, Account.id)
        .limit(1)
    )
    return candidates.first()


# Built once: constructing a statement costs more than running it, and this runs on every request.
_SESSION_STATE = (
    select(Account.deleted_at, RefreshTokenFamily.revoked_at)
    .join(RefreshTokenFamily, RefreshTokenFamily.account_id == Account.id)
    .where(Account.id == bindparam("account_id"), RefreshTokenFamily.id == bindparam("session_id"))
)

_ACCOUNT_STATE = select(Account.deleted_at).where(Account.id == bindparam("account_id"))


async def check_session(db: AsyncSession, claims: AccessClaims) -> None:
    """Refuse an access token whose account was deleted or whose session was ended (one indexed read)."""
    # A Core execution on the session's connection: the ORM's per-statement bookkeeping is not needed
    # for two plain columns, and this runs on every signed-in request.
    connection = await db.connection()
    if claims.session_id is None:
        # A token from the app's own identity provider: its sessions are the app's; the account must live.
        deleted = await connection.execute(_ACCOUNT_STATE, {"account_id": claims.account_id})
        account_row = deleted.one_or_none()
        if account_row is None or account_row.deleted_at is not None:
            raise Unauthorized("The account for this token no longer exists.", code="invalid_token")
        return
    params = {"account_id": claims.account_id, "session_id": claims.session_id}
    result = await connection.execute(_SESSION_STATE, params)
    row = result.one_or_none()
    if row is None or row.deleted_at is not None:
        raise Unauthorized("The account for this token no longer exists.", code="invalid_token")
    if row.revoked_at is not None:
        raise Unauthorized("This session has ended; sign in again.", code="session_revoked")


_ACCOUNT_WITH_IDENTITIES = (
    select(Account).where(Account.id == bindparam("account_id")).options(joinedload(Account.identities))
)


async def load_account(db: AsyncSession, account_id: uuid.UUID) -> Account:
    # The account and its identities in one round trip (a joined load instead of a second SELECT).
    result = await db.execute(_ACCOUNT_WITH_IDENTITIES, {"account_id": account_id})
    account = result.unique().scalar_one_or_none()
    if account is None or account.is_deleted:
        raise Unauthorized("The account for this token no longer exists.", code="invalid_token")
    return account


async def get_account(db: AsyncSession, account_id: uuid.UUID) -> Account | None:
    account = await db.get(Account, account_id)
    return None if account is None or account.is_deleted else account


# Called inside the deletion's transaction before anything is erased, e.g. to stop Stripe billing; a
# hook that raises aborts the deletion, so nothing is half done.
DeletionHook = Callable[[AsyncSession, Account], Awaitable[None]]


async def delete_account(
    db: AsyncSession,
    account: Account,
    *,
    hooks: Sequence[DeletionHook] = (),
    reason: str = "requested",
) -> None:
    """Delete the account as the App Store requires, keeping what accounting law needs.

    Ways in (identities, passwords, sessions) and personal data go; the account row stays, anonymized,
    with its subscriptions and event log, because invoices and store transactions must stay traceable
    for tax records. An App Store subscription cannot be cancelled from here (only the person can, in
    Settings), so it stays attached to the anonymized row and keeps being tracked.
    """
    for hook in hooks:
        await hook(db, account)
    await events.record_event(db, account.id, events.ACCOUNT_DELETED, {"reason": reason})
    await revoke_all_sessions(db, account.id, reason="account_deleted")
    for identity in list(account.identities):
        await db.delete(identity)
    account.email = None
    account.name = None
    # The app's own id for the person is personal data too; a later external sign-in starts afresh.
    account.external_id = None
    account.deleted_at = utcnow()
    await db.flush()
