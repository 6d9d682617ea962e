"""The account event log, the provider event inbox, outbound webhook endpoints and deliveries, alerts."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, LargeBinary, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from entitle.db.base import Base
from entitle.db.types import UUID, CheckedString, CheckedText, JSONDocument, UTCDateTime, new_id, utcnow


class AccountEvent(Base):
    """Something that happened to an account, in the account's own log (`GET /v1/me/events`)."""

    __tablename__ = "account_events"
    __table_args__ = (
        Index("ix_account_events_account_created", "account_id", "created_at"),
        # The order of `GET /v1/events`, every account's events.
        Index("ix_account_events_created_id", "created_at", "id"),
        # Reports count one type's events per day over a date range (`services.reporting.reports`).
        Index("ix_account_events_type_created", "type", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, default=new_id)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    # Dotted names: account.created, identity.linked, entitlement.granted, ...
    type: Mapped[str] = mapped_column(CheckedString(80), index=True)
    data: Mapped[dict[str, Any]] = mapped_column(JSONDocument, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class InboxStatus(StrEnum):
    # Stored, not yet processed (or being processed right now).
    PENDING = "pending"
    # Processed successfully; kept for audit and for duplicate detection.
    PROCESSED = "processed"
    # Processing raised; the error is on the row and the worker retries it at next_attempt_at.
    FAILED = "failed"
    # Stored, but waiting for something else first (an App Store purchase whose account is unknown).
    PARKED = "parked"


class ProviderEvent(Base):
    """The inbox: every verified provider event, stored before it is acted on."""

    __tablename__ = "provider_events"
    __table_args__ = (
        UniqueConstraint("provider", "event_id"),
        Index("ix_provider_events_due", "status", "next_attempt_at"),
        # A batch loads every unprocessed event of one ordering key: one vendor read settles them all.
        Index("ix_provider_events_key_status", "provider", "ordering_key", "status"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, default=new_id)
    # `stripe`, `app_store`, `apple_signin`.
    provider: Mapped[str] = mapped_column(CheckedString(30))
    # Stripe event id, App Store notificationUUID, Sign in with Apple event id.
    event_id: Mapped[str] = mapped_column(CheckedString(200))
    type: Mapped[str] = mapped_column(CheckedString(120))
    # The body exactly as received, so it can be re-verified or replayed.
    raw_body: Mapped[bytes] = mapped_column(LargeBinary)
    # Provider-specific key used to serialize work (Stripe customer, App Store originalTransactionId).
    ordering_key: Mapped[str | None] = mapped_column(CheckedString(200), index=True)
    # The vendor's own timestamp for the event (Stripe `created`, App Store `signedDate`).
    occurred_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(CheckedString(20), default=InboxStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(CheckedText)
    outcome: Mapped[str | None] = mapped_column(CheckedString(300))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    account_id: Mapped[uuid.UUID | None] = mapped_column(UUID, index=True)


class WebhookEndpoint(Base):
    """An outbound webhook the app's own backend subscribed to (Standard Webhooks, `whsec_` secret)."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, default=new_id)
    url: Mapped[str] = mapped_column(CheckedString(2000))
    secret: Mapped[str] = mapped_column(CheckedString(200))
    event_types: Mapped[list[str]] = mapped_column(JSONDocument, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Set when the operator deletes the endpoint, or when deliveries to it kept failing for good.
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    disabled_reason: Mapped[str | None] = mapped_column(CheckedString(300))


class DeliveryStatus(StrEnum):
    # Waiting for its first attempt or for its next retry (next_attempt_at).
    PENDING = "pending"
    # The endpoint answered 2xx.
    DELIVERED = "delivered"
    # Every retry failed; kept for the log, sent again only when someone asks (`.../retry`).
    FAILED = "failed"
    # Not sent: the endpoint was disabled before its turn came.
    CANCELED = "canceled"


class WebhookDelivery(Base):
    """One outbound message to one endpoint, written in the transaction that caused it, sent by the worker.

    Its id is the message's `webhook-id`, the same on every retry, so receivers can drop duplicates.
    """

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
        # Per-account order: nothing for an account goes out while an older message to it is pending.
        Index("ix_webhook_deliveries_order", "endpoint_id", "account_id", "status", "created_at"),
        Index("ix_webhook_deliveries_log", "endpoint_id", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, default=new_id)
    endpoint_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    account_event_id: Mapped[uuid.UUID | None] = mapped_column(UUID)
    # None for `webhook.test`, which belongs to no account.
    account_id: Mapped[uuid.UUID | None] = mapped_column(UUID)
    event_type: Mapped[str] = mapped_column(CheckedString(80), default="")
    # The message body, `{"type", "timestamp", "data"}`, fixed when the event happened.
    payload: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    status: Mapped[str] = mapped_column(CheckedString(20), default=DeliveryStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(CheckedText)
    # The HTTP status of the last answer; None when there was none (refused, timed out, blocked).
    response_code: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class StreamTicket(Base):
    """A single-use, short-lived ticket that lets a browser's EventSource (which cannot send an
    Authorization header) open `GET /v1/me/entitlements/stream?ticket=` for a signed-in session."""

    __tablename__ = "stream_tickets"

    # SHA-256 of the ticket: a leaked table row opens nothing.
    ticket_hash: Mapped[str] = mapped_column(CheckedString(64), primary_key=True)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    # The refresh-token family (session) the ticket was issued to; the stream ends when it does. None
    # for a token from the app's own identity provider.
    session_id: Mapped[uuid.UUID | None] = mapped_column(UUID)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class AlertSent(Base):
    """When an operator alert was last sent for a cause, so a cause alerts at most once an hour."""

    __tablename__ = "alerts_sent"

    # e.g. `provider_event_failed:stripe`, `endpoint_disabled:<id>`, `sync_drift:stripe`.
    cause: Mapped[str] = mapped_column(CheckedString(200), primary_key=True)
    last_sent_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Alerts for this cause held back since the last one was sent.
    suppressed: Mapped[int] = mapped_column(Integer, default=0)
