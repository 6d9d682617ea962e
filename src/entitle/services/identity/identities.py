"""Sign-in with Apple and Google, and the rules that decide which account an identity belongs to.

The linking rules exist so that one person has one account whatever the way in, without letting an
email address become a way to take over someone else's account (docs/identity.md names each attack):

- An identity already known by (provider, subject) always signs into its own account.
- A new identity joins an existing account automatically only when both sides have an address someone
  vouches for: the new token says `email_verified`, and the account holds an identity with the same
  address, also verified: Apple or Google, or a password whose address was verified by mail. An Apple
  private-relay address never qualifies: it is unique per app and proves nothing about anyone else.
- When a provider proves an address that only an unverified password account claims, the sign-in
  lands in that account (what it owns is never orphaned) but secures it first: its password and every
  identity that never proved the address are removed and its other sessions end, because whoever
  registered the address may not be its owner (pre-account takeover). The person is told by mail.
- Anything else is linked explicitly, while signed in, and never removes the last way in.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from entitle.core import events
from entitle.core.models.accounts import Account, Identity, PasswordCredential
from entitle.db.types import utcnow
from entitle.errors import Conflict, NotFound, Unauthorized
from entitle.identity import VerifiedIdentity, is_private_relay_address
from entitle.identity.apple_api import AppleSigninApi
from entitle.services.delivery import mail
from entitle.services.identity import accounts, apple_tokens
from entitle.services.identity.accounts import EMAIL_PROVIDER, SignedIn, normalize_email
from entitle.services.identity.encryption import SecretBox
from entitle.services.identity.tokens import revoke_all_sessions

IDENTITY_REVOKED = "identity.revoked"
# An unverified password account was secured as a provider-proven owner landed in it.
ACCOUNT_SECURED = "account.secured"


async def find_identity(db: AsyncSession, provider: str, subject: str) -> Identity | None:
    return await db.scalar(select(Identity).where(Identity.provider == provider, Identity.subject == subject))


async def sign_in_with_identity(
    db: AsyncSession, verified: VerifiedIdentity, *, name: str | None = None
) -> SignedIn:
    """The account this verified identity signs into, creating the account when no rule links it."""
    name = _clean_name(name) or _clean_name(verified.name)
    identity = await find_identity(db, verified.provider, verified.subject)
    if identity is not None:
        account = await _live_account(db, identity.account_id)
        _reinstate_if_revoked(identity, verified)
        _refresh_identity(identity, verified, name)
        if name and not account.name:
            account.name = name
        if account.email is None and identity.email:
            account.email = identity.email
        await _disable_unproven_passwords(db, verified, keep_account_id=account.id)
        await db.flush()
        await db.refresh(account, ["identities"])
        return SignedIn(account=account, created=False)

    linked_to = await _account_proving_same_address(db, verified)
    via = "verified_email"
    if linked_to is None:
        linked_to = await _unverified_password_account(db, verified)
        if linked_to is not None:
            via = "verified_email_secured"
            await _secure_unverified_account(db, linked_to, verified)
    created = linked_to is None
    account = linked_to or await accounts.create_account(
        db, email=_stored_email(verified), name=name, via=verified.provider
    )
    identity = _new_identity(account.id, verified, name)
    db.add(identity)
    await db.flush()
    await events.record_event(
        db,
        account.id,
        events.IDENTITY_LINKED,
        {
            "provider": identity.provider,
            "identity_id": identity.id,
            "via": "sign_in" if created else via,
        },
    )
    await _disable_unproven_passwords(db, verified, keep_account_id=account.id)
    await db.refresh(account, ["identities"])
    return SignedIn(account=account, created=created)


async def sign_in_with_apple(
    db: AsyncSession,
    api: AppleSigninApi | None,
    box: SecretBox,
    verified: VerifiedIdentity,
    *,
    code: str | None,
    name: str | None = None,
) -> SignedIn:
    """Sign in with a verified Apple identity token and its authorization code (the app's and the web's)."""
    # The code is traded before any account is touched: a bad code changes nothing.
    exchanged = await apple_tokens.exchange_code(api, code, verified)
    signed_in = await sign_in_with_identity(db, verified, name=name)
    await apple_tokens.keep(db, box, signed_in.account.id, verified, exchanged)
    return signed_in


async def link_identity(
    db: AsyncSession, account: Account, verified: VerifiedIdentity, *, name: str | None = None
) -> tuple[Identity, bool]:
    """Attach the identity to the signed-in account; returns (identity, newly_linked)."""
    name = _clean_name(name) or _clean_name(verified.name)
    identity = await find_identity(db, verified.provider, verified.subject)
    if identity is not None:
        if identity.account_id != account.id:
            raise Conflict(
                f"This {verified.provider.title()} account already signs into another account; "
                "unlink it there first.",
                code="identity_already_linked",
            )
        _reinstate_if_revoked(identity, verified)
        _refresh_identity(identity, verified, name)
        await db.flush()
        return identity, False
    identity = _new_identity(account.id, verified, name)
    db.add(identity)
    await db.flush()
    if name and not account.name:
        account.name = name
    await events.record_event(
        db,
        account.id,
        events.IDENTITY_LINKED,
        {"provider": identity.provider, "identity_id": identity.id, "via": "explicit"},
    )
    await _disable_unproven_passwords(db, verified, keep_account_id=account.id)
    await db.refresh(account, ["identities"])
    return identity, True


async def unlink_identity(db: AsyncSession, account: Account, identity_id: uuid.UUID) -> None:
    """Remove one way into the signed-in account, unless it is the last one."""
    identity = await db.scalar(
        select(Identity).where(Identity.id == identity_id, Identity.account_id == account.id)
    )
    if identity is None:
        # Another account's identity id gets the same answer as a made-up one.
        raise NotFound("This account has no such identity.", code="identity_not_found")
    remaining = [way for way in await ways_in(db, account.id) if way.id != identity.id]
    if not remaining:
        raise Conflict(
            "This is the last way into the account; add another before removing it.", code="last_identity"
        )
    await _remove_identity(db, identity, reason="explicit")
    await db.refresh(account, ["identities"])


async def ways_in(db: AsyncSession, account_id: uuid.UUID) -> list[Identity]:
    """Identities that can still sign into the account.

    A password identity counts only while its credential works. An Apple identity whose consent was
    revoked still counts: signing in with Apple again re-grants consent under the same subject.
    """
    identities = list((await db.scalars(select(Identity).where(Identity.account_id == account_id))).all())
    working_passwords = set(
        (
            await db.scalars(
                select(PasswordCredential.identity_id).where(
                    PasswordCredential.account_id == account_id, PasswordCredential.disabled_at.is_(None)
                )
            )
        ).all()
    )
    return [i for i in identities if i.provider != EMAIL_PROVIDER or i.id in working_passwords]


async def _account_proving_same_address(db: AsyncSession, verified: VerifiedIdentity) -> Account | None:
    email = _trusted_email(verified)
    if email is None:
        return None
    return await accounts.account_proving_address(db, email)


async def _unverified_password_account(db: AsyncSession, verified: VerifiedIdentity) -> Account | None:
    """The live account whose never-verified password identity claims the address this token proves."""
    email = _trusted_email(verified)
    if email is None:
        return None
    return await db.scalar(
        select(Account)
        .join(Identity, Identity.account_id == Account.id)
        .where(
            Identity.provider == EMAIL_PROVIDER,
            Identity.subject == email,
            Identity.email_verified.is_(False),
            Account.deleted_at.is_(None),
        )
    )


async def _secure_unverified_account(db: AsyncSession, account: Account, verified: VerifiedIdentity) -> None:
    """Before a proven owner lands in an unverified account: drop every way in that did not prove the address.

    Whoever registered the address may have been an attacker waiting for the owner (pre-account
    takeover); their password, any identity they linked, and their sessions must not survive the owner's
    arrival. What the account owns (subscriptions, grants, purchases) stays: it may well be the owner's.
    """
    email = _trusted_email(verified)
    assert email is not None, "only a proven address leads here"
    sessions = await revoke_all_sessions(db, account.id, reason="address_proven_by_provider")
    identities = (await db.scalars(select(Identity).where(Identity.account_id == account.id))).all()
    removed = []
    for identity in identities:
        proves = (
            identity.provider != EMAIL_PROVIDER
            and identity.email == email
            and identity.email_verified
            and not identity.is_private_relay
        )
        if not proves:
            removed.append(identity.provider)
            await _remove_identity(db, identity, reason=f"address_proven_by_{verified.provider}")
    await events.record_event(
        db,
        account.id,
        ACCOUNT_SECURED,
        {
            "provider": verified.provider,
            "email": email,
            "removed_identities": removed,
            "sessions_revoked": sessions,
        },
    )
    # Told by mail: if the person did register that password, this is how they learn where it went.
    await mail.queue_mail(
        db,
        to=email,
        template="account_secured",
        account_id=account.id,
        data={"email": email, "provider": verified.provider.title()},
    )


async def _remove_identity(db: AsyncSession, identity: Identity, *, reason: str) -> None:
    """Delete one identity (its password goes with it), revoke its Apple tokens, and log the unlink."""
    if identity.provider == "apple":
        await apple_tokens.request_revocation(db, identity.account_id, subject=identity.subject)
    await db.delete(identity)
    await db.flush()
    await events.record_event(
        db,
        identity.account_id,
        events.IDENTITY_UNLINKED,
        {"provider": identity.provider, "identity_id": identity.id, "reason": reason},
    )


async def _disable_unproven_passwords(
    db: AsyncSession, verified: VerifiedIdentity, *, keep_account_id: uuid.UUID
) -> None:
    email = _trusted_email(verified)
    if email is None:
        return
    rows = await db.execute(
        select(PasswordCredential, Identity)
        .join(Identity, PasswordCredential.identity_id == Identity.id)
        .where(
            Identity.provider == EMAIL_PROVIDER,
            Identity.subject == email,
            Identity.email_verified.is_(False),
            PasswordCredential.disabled_at.is_(None),
            PasswordCredential.account_id != keep_account_id,
        )
    )
    for credential, identity in rows.all():
        credential.disabled_at = utcnow()
        credential.disabled_reason = f"address_proven_by_{verified.provider}"
        await events.record_event(
            db,
            credential.account_id,
            events.PASSWORD_DISABLED,
            {"reason": credential.disabled_reason, "identity_id": identity.id, "email": email},
        )


def _trusted_email(verified: VerifiedIdentity) -> str | None:
    """The address this token proves, or None when it proves nothing another account could rely on."""
    if not verified.email or not verified.email_verified or verified.is_private_relay:
        return None
    email = normalize_email(verified.email)
    return None if is_private_relay_address(email) else email


def _stored_email(verified: VerifiedIdentity) -> str | None:
    return normalize_email(verified.email) if verified.email else None


def _new_identity(account_id: uuid.UUID, verified: VerifiedIdentity, name: str | None) -> Identity:
    return Identity(
        account_id=account_id,
        provider=verified.provider,
        subject=verified.subject,
        email=_stored_email(verified),
        email_verified=verified.email_verified,
        is_private_relay=verified.is_private_relay or is_private_relay_address(verified.email),
        name=name,
        last_sign_in_at=utcnow(),
    )


def _refresh_identity(identity: Identity, verified: VerifiedIdentity, name: str | None) -> None:
    # Apple sends the email in every token but the name only on the first authorization; a token
    # without an email (or a request without a name) leaves what we kept alone.
    if verified.email:
        email = _stored_email(verified)
        relay = verified.is_private_relay or is_private_relay_address(verified.email)
        # For an unchanged relay address the flag tracks Hide My Email forwarding, which only Apple's
        # email-disabled / email-enabled notifications report (services.identity.apple_signin); tokens do not.
        if not (relay and identity.is_private_relay and identity.email == email):
            identity.email_verified = verified.email_verified
        identity.email = email
        identity.is_private_relay = relay
    if name:
        identity.name = name
    identity.last_sign_in_at = utcnow()


def _reinstate_if_revoked(identity: Identity, verified: VerifiedIdentity) -> None:
    """A token issued after the person revoked consent means they granted it again."""
    if identity.revoked_at is None:
        return
    issued = datetime.fromtimestamp(verified.issued_at, UTC) if verified.issued_at is not None else None
    if issued is None or issued <= identity.revoked_at:
        raise Unauthorized("This sign-in was revoked by the person; sign in again.", code="identity_revoked")
    identity.revoked_at = None


async def _live_account(db: AsyncSession, account_id: uuid.UUID) -> Account:
    account = await accounts.get_account(db, account_id)
    if account is None:
        raise Unauthorized("The account for this identity no longer exists.", code="account_deleted")
    return account


def _clean_name(name: str | None) -> str | None:
    if name is None:
        return None
    name = " ".join(name.split())[:200]
    return name or None
