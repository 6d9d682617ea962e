"""The mail outbox: a mail is a row written in the transaction that caused it, sent later by the worker."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Index, Integer
from sqlalchemy.orm import Mapped, mapped_column

from entitle.db.base import Base
from entitle.db.types import UUID, CheckedString, CheckedText, JSONDocument, UTCDateTime, new_id, utcnow


class MailStatus(StrEnum):
    # Waiting for the worker (first attempt or a retry at next_attempt_at).
    PENDING = "pending"
    # Handed to the SMTP server (or written to the log in development).
    SENT = "sent"
    # Given up after too many attempts; the last error is on the row.
    FAILED = "failed"


class OutboundMail(Base):
    __tablename__ = "mail_outbox"
    __table_args__ = (Index("ix_mail_outbox_due", "status", "next_attempt_at"),)

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, default=new_id)
    account_id: Mapped[uuid.UUID | None] = mapped_column(UUID, index=True)
    to: Mapped[str] = mapped_column(CheckedString(320))
    # A template name from services.delivery.mail.TEMPLATES; rendered at sending time with the current
    # settings.
    template: Mapped[str] = mapped_column(CheckedString(50))
    # The template's values (a link's token among them); emptied once the mail is sent.
    data: Mapped[dict[str, Any]] = mapped_column(JSONDocument, default=dict)
    status: Mapped[str] = mapped_column(CheckedString(20), default=MailStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(CheckedText)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
