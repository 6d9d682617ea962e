"""Purchases paid before an account existed ("pay first, the account after"), held until claimed.

One row per Checkout a visitor started without signing in. The store's objects it names (customer,
subscription or one-time purchase) belong to no account until the row is claimed: by the browser that
paid (the hash of a cookie bound to it), by the mailed redemption link (the hash of its token), or by an
operator. Nothing is ever attached on the strength of the address typed into the store's page alone.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, Integer, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from entitle.db.base import Base
from entitle.db.types import UUID, CheckedString, UTCDateTime, new_id, utcnow


class GuestCheckoutStatus(StrEnum):
    # Checkout was opened; nothing paid yet.
    OPEN = "open"
    # Paid and waiting for whoever proves the right to it.
    PAID = "paid"
    # Moved to an account (claimed_account_id).
    CLAIMED = "claimed"
    # The store's page expired unpaid.
    EXPIRED = "expired"


class GuestCheckout(Base):
    __tablename__ = "guest_checkouts"
    __table_args__ = (
        UniqueConstraint("store", "checkout_id"),
        Index("ix_guest_checkouts_status", "status", "created_at"),
        Index("ix_guest_checkouts_customer", "store", "store_customer_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, default=new_id)
    # `stripe`.
    store: Mapped[str] = mapped_column(CheckedString(20))
    # The store's checkout id (a Stripe Checkout Session `cs_...`).
    checkout_id: Mapped[str] = mapped_column(CheckedString(255))
    # SHA-256 (hex) of the cookie of the browser that opened Checkout; None when it came from elsewhere.
    browser_hash: Mapped[str | None] = mapped_column(CheckedString(64))
    # The address the person typed into the store's page (not proven until the mailed link is opened).
    email: Mapped[str | None] = mapped_column(CheckedString(320))
    product: Mapped[str] = mapped_column(CheckedString(64))
    quantity: Mapped[int] = mapped_column(Integer, default=1)
    # GuestCheckoutStatus value.
    status: Mapped[str] = mapped_column(CheckedString(20), default=GuestCheckoutStatus.OPEN.value)
    # The store's customer made for the guest; the account that claims it keeps it.
    store_customer_id: Mapped[str | None] = mapped_column(CheckedString(200))
    # What was bought: a subscription, or a one-time purchase (a Stripe PaymentIntent).
    store_subscription_id: Mapped[str | None] = mapped_column(CheckedString(200))
    store_purchase_id: Mapped[str | None] = mapped_column(CheckedString(200))
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claimed_account_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID, ForeignKey("accounts.id", ondelete="SET NULL"), index=True
    )
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # `browser`, `link` or `operator`: how the right to it was proven.
    claimed_by: Mapped[str | None] = mapped_column(CheckedString(20))
    # The mailed redemption link: SHA-256 (hex) of its token, single-use, until expires_at.
    token_hash: Mapped[str | None] = mapped_column(CheckedString(64), unique=True)
    token_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    token_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
