"""The account event log, the provider event inbox, and outbound webhook endpoints and deliveries."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from entitle.db.base import Base
from entitle.db.types import UUID, JSONDocument, UTCDateTime, new_id, utcnow


class AccountEvent(Base):
    """Something that happened to an account, in the account's own log (`GET /v1/me/events`)."""

    __tablename__ = "account_events"
    __table_args__ = (Index("ix_account_events_account_created", "account_id", "created_at"),)

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, default=new_id)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    # Dotted names: account.created, identity.linked, entitlement.granted, ...
    type: Mapped[str] = mapped_column(String(80), index=True)
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
    provider: Mapped[str] = mapped_column(String(30))
    # Stripe event id, App Store notificationUUID, Sign in with Apple event id.
    event_id: Mapped[str] = mapped_column(String(200))
    type: Mapped[str] = mapped_column(String(120))
    # The body exactly as received, so it can be re-verified or replayed.
    raw_body: Mapped[bytes] = mapped_column(LargeBinary)
    # Provider-specific key used to serialize work (Stripe customer, App Store originalTransactionId).
    ordering_key: Mapped[str | None] = mapped_column(String(200), index=True)
    # The vendor's own timestamp for the event (Stripe `created`, App Store `signedDate`).
    occurred_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(20), default=InboxStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    outcome: Mapped[str | None] = mapped_column(String(300))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    account_id: Mapped[uuid.UUID | None] = mapped_column(UUID, index=True)


class WebhookEndpoint(Base):
    """An outbound webhook the app's own backend subscribed to (entitlement changes)."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, default=new_id)
    url: Mapped[str] = mapped_column(String(2000))
    secret: Mapped[str] = mapped_column(String(200))
    event_types: Mapped[list[str]] = mapped_column(JSONDocument, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class WebhookDelivery(Base):
    """One outbound notification, written in the transaction that caused it and sent by the worker."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),)

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, default=new_id)
    endpoint_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    account_event_id: Mapped[uuid.UUID | None] = mapped_column(UUID)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    status: Mapped[str] = mapped_column(String(20), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class StreamTicket(Base):
    """A single-use, short-lived ticket that lets a browser's EventSource (which cannot send an
    Authorization header) open `GET /v1/me/entitlements/stream?ticket=` for a signed-in session."""

    __tablename__ = "stream_tickets"

    # SHA-256 of the ticket: a leaked table row opens nothing.
    ticket_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    # The refresh-token family (session) the ticket was issued to; the stream ends when it does. None
    # for a token from the app's own identity provider.
    session_id: Mapped[uuid.UUID | None] = mapped_column(UUID)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
