"""Passwords over mail: verifying an address, forgetting and resetting a password, adding or changing one.

Every path that changes a password ends the account's other sessions and tells the person by mail, so
a stolen session or a guessed reset cannot quietly keep access. A reset link also proves the address
(only its owner could open it), so it verifies the address as well.
"""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

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
from entitle.services.delivery import mail
from entitle.services.identity import account_tokens, accounts, passwords
from entitle.services.identity.accounts import EMAIL_PROVIDER, normalize_email
from entitle.services.identity.tokens import revoke_all_sessions, revoke_family

EMAIL_VERIFIED = "email.verified"
PASSWORD_CHANGED = "credential.password_changed"
PASSWORD_ADDED = "credential.password_added"
PASSWORD_RESET_REQUESTED = "credential.password_reset_requested"


async def password_identity(db: AsyncSession, account_id: uuid.UUID) -> Identity | None:
    return await db.scalar(
        select(Identity)
        .where(Identity.account_id == account_id, Identity.provider == EMAIL_PROVIDER)
        .order_by(Identity.created_at)
        .limit(1)
    )


async def working_credential(db: AsyncSession, account_id: uuid.UUID) -> PasswordCredential | None:
    return await db.scalar(
        select(PasswordCredential).where(
            PasswordCredential.account_id == account_id, PasswordCredential.disabled_at.is_(None)
        )
    )


async def resend_verification(db: AsyncSession, account: Account) -> bool:
    """Mail a fresh link when the account's password address is unverified; False when nothing to verify."""
    identity = await password_identity(db, account.id)
    if identity is None or identity.email_verified or identity.email is None:
        return False
    await accounts.send_verification(db, account.id, identity.email)
    return True


async def verify_email(db: AsyncSession, token: str) -> Account:
    spent = await account_tokens.spend(db, token, TokenPurpose.VERIFY_EMAIL)
    account = await accounts.get_account(db, spent.account_id)
    identity = await db.scalar(
        select(Identity).where(
            Identity.account_id == spent.account_id,
            Identity.provider == EMAIL_PROVIDER,
            Identity.subject == spent.email,
        )
    )
    if account is None or identity is None:
        # The account or its address changed since the mail went out: the link proves nothing now.
        raise account_tokens.LinkTokenInvalid("This link no longer matches the account's address.")
    if not identity.email_verified:
        identity.email_verified = True
        await events.record_event(
            db, account.id, EMAIL_VERIFIED, {"identity_id": identity.id, "email": identity.email}
        )
    await db.flush()
    await db.refresh(account, ["identities"])
    return account


async def _account_for_reset(db: AsyncSession, email: str) -> Account | None:
    # Whoever proved the address first (a verified password, Apple or Google) owns it; otherwise the
    # account registered with it; otherwise an account that merely lists it (imported without a password).
    proven = await accounts.account_proving_address(db, email)
    if proven is not None:
        return proven
    registered = await db.scalar(
        select(Account)
        .join(Identity, Identity.account_id == Account.id)
        .where(Identity.provider == EMAIL_PROVIDER, Identity.subject == email, Account.deleted_at.is_(None))
    )
    if registered is not None:
        return registered
    return await db.scalar(
        select(Account)
        .where(Account.email == email, Account.deleted_at.is_(None))
        .order_by(Account.created_at)
        .limit(1)
    )


async def request_password_reset(db: AsyncSession, email: str) -> None:
    """Mail a reset link when an account has this address; do nothing visible otherwise."""
    email = normalize_email(email)
    account = await _account_for_reset(db, email)
    if account is None:
        return
    token = await account_tokens.issue(db, account.id, TokenPurpose.RESET_PASSWORD, email)
    await mail.queue_mail(
        db, to=email, template="reset_password", account_id=account.id, data={"token": token, "email": email}
    )
    await events.record_event(db, account.id, PASSWORD_RESET_REQUESTED, {"email": email})


async def reset_password(db: AsyncSession, token: str, password: str) -> Account:
    """Set a new password from a reset link; every session of the account ends."""
    spent = await account_tokens.spend(db, token, TokenPurpose.RESET_PASSWORD)
    account = await accounts.get_account(db, spent.account_id)
    if account is None:
        raise account_tokens.LinkTokenInvalid("This link is not valid.")
    password_hash = await passwords.hash_password(password)
    # Opening the link proves the address, so the password identity is verified too.
    await _store_password(db, account, spent.email, password_hash, address_proven=True)
    await account_tokens.retire(db, account.id, TokenPurpose.RESET_PASSWORD)
    sessions = await revoke_all_sessions(db, account.id, reason="password_reset")
    await events.record_event(
        db, account.id, PASSWORD_CHANGED, {"via": "reset", "sessions_revoked": sessions}
    )
    await mail.queue_mail(
        db, to=spent.email, template="password_changed", account_id=account.id, data={"email": spent.email}
    )
    await db.flush()
    await db.refresh(account, ["identities"])
    return account


async def set_password(
    db: AsyncSession,
    account: Account,
    *,
    password: str,
    current_password: str | None,
    keep_session: uuid.UUID | None,
) -> None:
    """Change the password (the current one required), or add one to an Apple or Google account."""
    credential = await working_credential(db, account.id)
    if credential is not None:
        if current_password is None:
            raise Unauthorized("Give the current password to change it.", code="current_password_required")
        if not await passwords.verify_or_burn(credential.password_hash, current_password):
            raise Unauthorized("The current password is not right.", code="invalid_credentials")
        identity = await db.get(Identity, credential.identity_id)
        email = identity.subject if identity is not None else account.email
    else:
        email = account.email
    if email is None:
        raise Conflict(
            "This account has no email address to sign in with; it needs one for a password.",
            code="no_email_address",
        )
    proven = await _address_proven_by_account(db, account.id, email)
    password_hash = await passwords.hash_password(password)
    added = await _store_password(db, account, email, password_hash, address_proven=proven)
    # Every other session ends: whoever else held one may be why the password changes.
    await _end_other_sessions(db, account.id, keep_session)
    await events.record_event(
        db, account.id, PASSWORD_ADDED if added else PASSWORD_CHANGED, {"via": "signed_in"}
    )
    await mail.queue_mail(
        db, to=email, template="password_changed", account_id=account.id, data={"email": email}
    )
    identity = await password_identity(db, account.id)
    if identity is not None and not identity.email_verified:
        await accounts.send_verification(db, account.id, email)


async def _address_proven_by_account(db: AsyncSession, account_id: uuid.UUID, email: str) -> bool:
    proving = await db.scalar(
        select(Identity.id).where(
            Identity.account_id == account_id,
            Identity.email == email,
            Identity.email_verified.is_(True),
        )
    )
    return proving is not None


async def _store_password(
    db: AsyncSession, account: Account, email: str, password_hash: str, *, address_proven: bool
) -> bool:
    """Put the password on the account's identity for `email`; True when the account had none before."""
    email = normalize_email(email)
    identity = await db.scalar(
        select(Identity).where(Identity.provider == EMAIL_PROVIDER, Identity.subject == email)
    )
    if identity is not None and identity.account_id != account.id:
        if identity.email_verified or not address_proven:
            raise Conflict("Another account signs in with this email address.", code="email_taken")
        # Someone registered the address without ever proving it, and this account just proved it:
        # that password identity was a squatter's (pre-account takeover), so it goes.
        await db.delete(identity)
        await db.flush()
        await events.record_event(
            db,
            identity.account_id,
            events.IDENTITY_UNLINKED,
            {"provider": EMAIL_PROVIDER, "identity_id": identity.id, "reason": "address_proven_elsewhere"},
        )
        identity = None
    added = False
    if identity is None:
        identity = Identity(
            account_id=account.id,
            provider=EMAIL_PROVIDER,
            subject=email,
            email=email,
            email_verified=address_proven,
        )
        db.add(identity)
        await db.flush()
        await events.record_event(
            db,
            account.id,
            events.IDENTITY_LINKED,
            {"provider": EMAIL_PROVIDER, "identity_id": identity.id, "via": "password_added"},
        )
    elif address_proven:
        identity.email_verified = True
    credential = await db.get(PasswordCredential, identity.id)
    if credential is None:
        added = True
        db.add(
            PasswordCredential(identity_id=identity.id, account_id=account.id, password_hash=password_hash)
        )
    else:
        added = credential.disabled_at is not None
        credential.password_hash = password_hash
        credential.updated_at = utcnow()
        credential.disabled_at = None
        credential.disabled_reason = None
    if account.email is None:
        account.email = email
    await db.flush()
    return added


async def _end_other_sessions(db: AsyncSession, account_id: uuid.UUID, keep: uuid.UUID | None) -> None:
    families = await db.scalars(
        select(RefreshTokenFamily.id).where(
            RefreshTokenFamily.account_id == account_id, RefreshTokenFamily.revoked_at.is_(None)
        )
    )
    for family_id in families.all():
        if family_id != keep:
            await revoke_family(db, family_id, reason="password_changed")
