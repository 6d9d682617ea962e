"""Sign in with Apple server-to-server notifications: what each one does to our accounts.

`AppleSigninNotifications` is a provider like the stores (`providers.base.Provider`): it verifies
Apple's signed notification for the generic ingestion path, which stores the raw body in the inbox under
provider `apple_signin`; processing re-reads the stored payload and dispatches on its type through
`HANDLERS`. It lives among the services because what the notifications do (end sessions, delete an
account) is account business. Handlers run inside the inbox's transaction and are idempotent: running
one twice leaves the same state.
https://developer.apple.com/documentation/sign_in_with_apple/processing_changes_for_sign_in_with_apple_accounts
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from entitle import untrusted_json
from entitle.core import events
from entitle.core.models.events import ProviderEvent
from entitle.db.types import utcnow
from entitle.errors import EntitleError
from entitle.identity.apple import (
    AppleIdentityVerifier,
    AppleNotification,
    AppleNotificationType,
    read_verified_notification,
)
from entitle.providers.base import IncomingEvent, no_slot
from entitle.services.identity import accounts
from entitle.services.identity.identities import IDENTITY_REVOKED, find_identity, ways_in
from entitle.services.identity.tokens import revoke_all_sessions

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


MAX_PAYLOAD_LENGTH = 8192


class AppleSigninNotifications:
    """The provider for rows stored under `apple_signin`."""

    name = PROVIDER

    def __init__(self, verifier: AppleIdentityVerifier, deletion_hooks: DeletionHooks) -> None:
        self.verifier = verifier
        # Shared with the app: run when a notification deletes an account (e.g. cancel Stripe billing).
        self.deletion_hooks = deletion_hooks

    async def verify_webhook(self, body: bytes, headers: Mapping[str, str]) -> IncomingEvent:
        try:
            document = untrusted_json.loads(body)
        except ValueError as exc:
            raise EntitleError("The request body is not valid JSON.", code="malformed_json") from exc
        payload = document.get("payload") if isinstance(document, dict) else None
        if not isinstance(payload, str) or not payload or len(payload) > MAX_PAYLOAD_LENGTH:
            raise EntitleError('Expected {"payload": "<signed JWT>"}.', code="invalid_notification")
        notification = await self.verifier.verify_notification(payload)
        return IncomingEvent(
            event_id=notification.event_id,
            type=notification.type.value,
            ordering_key=f"apple:{notification.subject}",
            occurred_at=event_time(notification),
        )

    def read_slot(self, events: Sequence[ProviderEvent]) -> AbstractAsyncContextManager[bool]:
        return no_slot()

    async def process_events(self, db: AsyncSession, events: Sequence[ProviderEvent]) -> list[str]:
        outcomes = []
        for event in events:
            notification = read_verified_notification(json.loads(event.raw_body)["payload"])
            outcomes.append(await HANDLERS[notification.type](db, notification, self.deletion_hooks))
        return outcomes

    async def aclose(self) -> None:
        return None
