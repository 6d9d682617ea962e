"""The account event log: what happened to an account, in its own words.

Writers call `record_event` inside the transaction that made the change, so the log and the state
can never disagree. Types are dotted names; the ones below are the vocabulary clients can filter on.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from entitle.core.models.events import AccountEvent
from entitle.db.types import json_safe

ACCOUNT_CREATED = "account.created"
ACCOUNT_DELETED = "account.deleted"
IDENTITY_LINKED = "identity.linked"
IDENTITY_UNLINKED = "identity.unlinked"
PASSWORD_DISABLED = "credential.password_disabled"
SESSIONS_REVOKED = "session.family_revoked"
ENTITLEMENT_GRANTED = "entitlement.granted"
ENTITLEMENT_REVOKED = "entitlement.revoked"
DUPLICATE_SUBSCRIPTION = "subscription.duplicate_detected"


async def record_event(
    db: AsyncSession, account_id: uuid.UUID, type: str, data: dict[str, Any] | None = None
) -> AccountEvent:
    event = AccountEvent(account_id=account_id, type=type, data=json_safe(data or {}))
    db.add(event)
    await db.flush()
    return event
