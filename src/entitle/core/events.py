"""The account event log: what happened to an account, in its own words.

Writers call `record_event` inside the transaction that made the change, so the log and the state
can never disagree; the same transaction queues the event for every outbound webhook endpoint that
subscribed to it (`services.delivery.outbound` sends them later). Types are dotted names; the ones below are
the vocabulary clients can filter on; the subscription lifecycle types live with the rules that
derive them (`core.transitions`).

A queued message is the Standard Webhooks body, fixed at the moment of the event: a retry days later
sends the same bytes' meaning, not the account's later state.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, select
from sqlalchemy.ext.asyncio import AsyncSession

from entitle.core import transitions
from entitle.core.models.accounts import Account
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
# One-time purchases and balances (services.access.purchases and .balances record them).
PURCHASE_COMPLETED = "purchase.completed"
PURCHASE_REFUNDED = "purchase.refunded"
PURCHASE_RESTORED = "purchase.refund_reversed"
PAYMENT_SUCCEEDED = "payment.succeeded"
PAYMENT_REFUNDED = "payment.refunded"
BALANCE_CHANGED = "balance.changed"


# Every type the app's backend can subscribe to (DESIGN.md's vocabulary), plus the test message.
WEBHOOK_TEST = "webhook.test"
OUTBOUND_TYPES = (
    ENTITLEMENT_GRANTED,
    ENTITLEMENT_REVOKED,
    transitions.SUBSCRIPTION_STARTED,
    transitions.SUBSCRIPTION_RENEWED,
    transitions.SUBSCRIPTION_PLAN_CHANGED,
    transitions.SUBSCRIPTION_WILL_NOT_RENEW,
    transitions.SUBSCRIPTION_WILL_RENEW,
    transitions.SUBSCRIPTION_BILLING_ISSUE,
    transitions.SUBSCRIPTION_EXPIRED,
    transitions.SUBSCRIPTION_REFUNDED,
    transitions.SUBSCRIPTION_TRANSFERRED,
    ACCOUNT_CREATED,
    ACCOUNT_DELETED,
    PURCHASE_COMPLETED,
    PURCHASE_REFUNDED,
    BALANCE_CHANGED,
)

# The last `created_at` this session gave an event: events of one transaction keep the order they were
# recorded in even when the clock does not move between them (the feed and deliveries sort on it).
_LAST_CREATED_AT = "entitle.last_event_created_at"


async def record_event(
    db: AsyncSession,
    account_id: uuid.UUID,
    type: str,
    data: dict[str, Any] | None = None,
    *,
    announce: bool = True,
) -> AccountEvent:
    """Append to the account's event log; `announce=False` keeps it out of outbound webhooks (the
    dashboard's audit trail is the operators' business, not the app backend's)."""
    created_at = utcnow()
    last = db.info.get(_LAST_CREATED_AT)
    if isinstance(last, datetime) and created_at <= last:
        created_at = last + timedelta(microseconds=1)
    db.info[_LAST_CREATED_AT] = created_at
    event = AccountEvent(account_id=account_id, type=type, data=json_safe(data or {}), created_at=created_at)
    db.add(event)
    await db.flush()
    if announce:
        await _announce(db, event)
    return event


async def record_transitions(db: AsyncSession, found: list[transitions.Transition]) -> None:
    """Log each subscription transition as an account event (and queue its webhooks)."""
    for transition in found:
        await record_event(db, transition.account_id, transition.type, transition.data)


# Built once, and only the two columns the fan-out needs: it runs for every entitlement change.
_LIVE_ENDPOINTS = select(WebhookEndpoint.id, WebhookEndpoint.event_types).where(
    WebhookEndpoint.disabled_at.is_(None)
)


def is_subscribed(endpoint: WebhookEndpoint | Row[uuid.UUID, list[str]], event_type: str) -> bool:
    """An endpoint with no event types hears everything; `entitlement.*` matches by prefix."""
    return wants(endpoint.event_types, event_type)


def wants(event_types: list[str] | None, event_type: str) -> bool:
    """`is_subscribed` on an endpoint's stored `event_types` alone."""
    if not event_types:
        return True
    return any(
        event_type == wanted or (wanted.endswith(".*") and event_type.startswith(wanted[:-1]))
        for wanted in event_types
    )


async def external_id(db: AsyncSession, account_id: uuid.UUID | None) -> str | None:
    """The app's own id for the account, when accounts carry one (`Account.external_id`); else None."""
    column = getattr(Account, "external_id", None)
    if column is None or account_id is None:
        return None
    value = await db.scalar(select(column).where(Account.id == account_id))
    return None if value is None else str(value)


def message_body(
    type: str, timestamp: datetime, account_id: uuid.UUID | None, external: str | None, data: dict[str, Any]
) -> dict[str, Any]:
    """The Standard Webhooks body: `{"type", "timestamp", "data"}`; data always names the account."""
    return {
        "type": type,
        "timestamp": timestamp.isoformat().replace("+00:00", "Z"),
        "data": {
            **data,
            "account_id": str(account_id) if account_id is not None else None,
            "external_id": external,
        },
    }


async def _announce(db: AsyncSession, event: AccountEvent) -> None:
    """Queue the event for every endpoint that wants it, in the event's own transaction."""
    endpoints = [row for row in (await db.execute(_LIVE_ENDPOINTS)).all() if is_subscribed(row, event.type)]
    if not endpoints:
        return
    body = message_body(
        event.type,
        event.created_at,
        event.account_id,
        await external_id(db, event.account_id),
        {"event_id": str(event.id), **event.data},
    )
    for endpoint in endpoints:
        db.add(
            WebhookDelivery(
                endpoint_id=endpoint.id,
                account_event_id=event.id,
                account_id=event.account_id,
                event_type=event.type,
                payload=body,
                created_at=event.created_at,
                next_attempt_at=event.created_at,
            )
        )
