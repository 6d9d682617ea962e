"""The App Store ownership ledger: which account owns each original transaction, and every change of owner.

Apple identifies a subscription by its `originalTransactionId` and a purchaser only by the optional
`appAccountToken` the app set at purchase. The ledger is our own record of the owner, needed for
purchases that carry no token (offer codes redeemed in the App Store, purchases made before the app set
tokens) and for restores into another account. Notifications whose owner is not yet known wait in the
provider inbox with status PARKED, keyed by the original transaction id, until the app posts the purchase.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index
from sqlalchemy.orm import Mapped, mapped_column

from entitle.db.base import Base
from entitle.db.types import UUID, CheckedString, UTCDateTime, new_id, utcnow


class AppStoreOwnership(Base):
    """The current owner of one App Store purchase (one row per originalTransactionId)."""

    __tablename__ = "appstore_ownership"

    original_transaction_id: Mapped[str] = mapped_column(CheckedString(64), primary_key=True)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    # `Production`, `Sandbox` (or `Xcode` in development): which Server API environment to ask about it.
    environment: Mapped[str] = mapped_column(CheckedString(20))
    product_id: Mapped[str] = mapped_column(CheckedString(255))
    # The appAccountToken Apple last reported for it; None for a purchase made outside the app.
    app_account_token: Mapped[uuid.UUID | None] = mapped_column(UUID)
    # PURCHASED or FAMILY_SHARED.
    ownership_type: Mapped[str] = mapped_column(CheckedString(20), default="PURCHASED")
    # When we told Apple the owner's token (Set App Account Token) for a purchase made outside the app.
    token_set_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class AppStoreOwnershipChange(Base):
    """Audit: every time a purchase got its first owner or moved to another account, and why."""

    __tablename__ = "appstore_ownership_changes"
    __table_args__ = (
        Index("ix_appstore_ownership_changes_original", "original_transaction_id", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, default=new_id)
    original_transaction_id: Mapped[str] = mapped_column(CheckedString(64))
    # Plain ids, not foreign keys: the audit outlives the accounts it names.
    from_account_id: Mapped[uuid.UUID | None] = mapped_column(UUID)
    to_account_id: Mapped[uuid.UUID] = mapped_column(UUID)
    # purchase, claimed_without_token, notification, restore_transfer, token_matches, owner_deleted
    reason: Mapped[str] = mapped_column(CheckedString(40))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
