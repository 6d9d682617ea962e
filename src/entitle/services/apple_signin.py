"""Sign in with Apple server-to-server notifications: what each one does to our accounts.

The webhook route verifies Apple's signature and stores the raw body in the inbox under provider
`apple_signin`; the inbox then calls `AppleSigninEvents.process_event`, which re-reads the stored payload
and dispatches on its type through `HANDLERS`. Handlers run inside the inbox's transaction and are
idempotent: running one twice leaves the same state.
https://developer.apple.com/documentation/sign_in_with_apple/processing_changes_for_sign_in_with_apple_accounts
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession

from entitle.core import events
from entitle.core.models.events import ProviderEvent
from entitle.db.types import utcnow
from entitle.identity.apple import AppleNotification, AppleNotificationType, read_verified_notification
from entitle.services import accounts
from entitle.services.identities import IDENTITY_REVOKED, find_identity, ways_in
from entitle.services.tokens import revoke_all_sessions

if TYPE_CHECKING:
    from entitle.context import AppContext

PROVIDER = "apple_signin"
EMAIL_FORWARDING_DISABLED = "identity.email_forwarding_disabled"
EMAIL_FORWARDING_ENABLED = "identity.email_forwarding_enabled"

DeletionHooks = Sequence[accounts.DeletionHook]
Handler = Callable[[AsyncSession, AppleNotification, DeletionHooks], Awaitable[str]]


def event_time(notification: AppleNotification) -> datetime | None:
    """Apple's event time; documented in seconds, but milliseconds are read correctly too."""
    value = notification.event_time
    if value is None:
        return None
    return datetime.fromtimestamp(value / 1000 if value > 100_000_000_000 else value, UTC)


async def consent_revoked(db: AsyncSession, notification: AppleNotification, _hooks: DeletionHooks) -> str:
    identity = await find_identity(db, "apple", notification.subject)
    if identity is None:
        return "no identity with this subject"
    happened = event_time(notification) or utcnow()
    # A revocation older than the person's last Apple sign-in was undone by that sign-in (re-consent).
    if identity.last_sign_in_at is not None and identity.last_sign_in_at > happened:
        return "ignored: signed in with Apple again after the revocation"
    if identity.revoked_at is not None:
        return "already revoked"
    identity.revoked_at = min(happened, utcnow())
    sessions = await revoke_all_sessions(db, identity.account_id, reason="consent_revoked")
    await events.record_event(
        db,
        identity.account_id,
        IDENTITY_REVOKED,
        {
            "provider": "apple",
            "identity_id": identity.id,
            "reason": notification.type,
            "sessions_revoked": sessions,
        },
    )
    return f"identity revoked, {sessions} sessions ended"


async def account_delete(db: AsyncSession, notification: AppleNotification, hooks: DeletionHooks) -> str:
    identity = await find_identity(db, "apple", notification.subject)
    if identity is None:
        return "no identity with this subject"
    account = await accounts.get_account(db, identity.account_id)
    await db.delete(identity)
    await db.flush()
    if account is None:
        return "identity deleted"
    await events.record_event(
        db,
        account.id,
        events.IDENTITY_UNLINKED,
        {"provider": "apple", "identity_id": identity.id, "reason": notification.type},
    )
    if not await ways_in(db, account.id):
        # The Apple ID was the only way in: nobody can ever sign into this account again.
        await db.refresh(account, ["identities"])
        await accounts.delete_account(db, account, hooks=hooks, reason="apple_account_deleted")
        return "identity and account deleted"
    sessions = await revoke_all_sessions(db, account.id, reason="apple_account_deleted")
    return f"identity deleted, {sessions} sessions ended"


async def email_disabled(db: AsyncSession, notification: AppleNotification, _hooks: DeletionHooks) -> str:
    return await _set_forwarding(db, notification, enabled=False)


async def email_enabled(db: AsyncSession, notification: AppleNotification, _hooks: DeletionHooks) -> str:
    return await _set_forwarding(db, notification, enabled=True)


async def _set_forwarding(db: AsyncSession, notification: AppleNotification, *, enabled: bool) -> str:
    identity = await find_identity(db, "apple", notification.subject)
    if identity is None:
        return "no identity with this subject"
    # A relay address whose forwarding is off reaches nobody, so it is not a working, verified address
    # while it stays off. Relay addresses never link accounts, so this only informs mail senders.
    identity.email_verified = enabled
    await events.record_event(
        db,
        identity.account_id,
        EMAIL_FORWARDING_ENABLED if enabled else EMAIL_FORWARDING_DISABLED,
        {"provider": "apple", "identity_id": identity.id, "email": notification.email or identity.email},
    )
    return f"email forwarding {'enabled' if enabled else 'disabled'}"


HANDLERS: dict[AppleNotificationType, Handler] = {
    # The person stopped using Sign in with Apple with this app: end their sessions, mark the identity.
    AppleNotificationType.CONSENT_REVOKED: consent_revoked,
    # The Apple ID is gone: drop the identity, and the account when it was the only way in.
    AppleNotificationType.ACCOUNT_DELETE: account_delete,
    # Hide My Email forwarding turned off: mail to the relay address now bounces.
    AppleNotificationType.EMAIL_DISABLED: email_disabled,
    # Hide My Email forwarding turned back on.
    AppleNotificationType.EMAIL_ENABLED: email_enabled,
}


class AppleSigninEvents:
    """The inbox processor for rows stored under provider `apple_signin`."""

    def __init__(self, context: AppContext) -> None:
        self.context = context

    async def process_event(self, db: AsyncSession, event: ProviderEvent) -> str | None:
        body = json.loads(event.raw_body)
        notification = read_verified_notification(body["payload"])
        return await HANDLERS[notification.type](db, notification, self.context.account_deletion_hooks)
