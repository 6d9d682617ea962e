"""The one table the Stripe provider owns: which Stripe customer belongs to which account."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Boolean, ForeignKey
from sqlalchemy.orm import Mapped, mapped_column

from entitle.db.base import Base
from entitle.db.types import UUID, CheckedString, UTCDateTime, utcnow


class StripeCustomer(Base):
    """One Stripe customer per account, created by entitle on first need; never chosen by a client."""

    __tablename__ = "stripe_customers"

    # The primary key makes "one per account" a database rule, so two racing first purchases cannot
    # both insert a customer for the same account.
    account_id: Mapped[uuid.UUID] = mapped_column(
        UUID, ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    customer_id: Mapped[str] = mapped_column(CheckedString(64), unique=True)
    livemode: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Set when the customer was deleted at Stripe; the next purchase creates a fresh customer.
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
