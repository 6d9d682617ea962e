"""The account event log: what happened to an account, in its own words.

Writers call `record_event` inside the transaction that made the change, so the log and the state
can never disagree; the same transaction queues the event for every outbound webhook endpoint that
subscribed to it (`services.outbound` sends them later). Types are dotted names; the ones below are
the vocabulary clients can filter on.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Row, select
from sqlalchemy.ext.asyncio import AsyncSession

from entitle.core.models.events import AccountEvent, WebhookDelivery, WebhookEndpoint
from entitle.db.types import json_safe, utcnow

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
    event = AccountEvent(account_id=account_id, type=type, data=json_safe(data or {}), created_at=utcnow())
    db.add(event)
    await db.flush()
    await _announce(db, event)
    return event


# Built once, and only the two columns the fan-out needs: it runs for every entitlement change.
_LIVE_ENDPOINTS = select(WebhookEndpoint.id, WebhookEndpoint.event_types).where(
    WebhookEndpoint.disabled_at.is_(None)
)


def is_subscribed(endpoint: WebhookEndpoint | Row[uuid.UUID, list[str]], event_type: str) -> bool:
    """An endpoint with no event types hears everything; `entitlement.*` matches by prefix."""
    if not endpoint.event_types:
        return True
    return any(
        event_type == wanted or (wanted.endswith(".*") and event_type.startswith(wanted[:-1]))
        for wanted in endpoint.event_types
    )


async def _announce(db: AsyncSession, event: AccountEvent) -> None:
    """Queue the event for every endpoint that wants it, in the event's own transaction."""
    endpoints = (await db.execute(_LIVE_ENDPOINTS)).all()
    payload = {
        "id": str(event.id),
        "type": event.type,
        "account_id": str(event.account_id),
        "created_at": event.created_at.isoformat(),
        "data": event.data,
    }
    for endpoint in endpoints:
        if is_subscribed(endpoint, event.type):
            db.add(
                WebhookDelivery(
                    endpoint_id=endpoint.id,
                    account_event_id=event.id,
                    payload=payload,
                    next_attempt_at=utcnow(),
                )
            )
