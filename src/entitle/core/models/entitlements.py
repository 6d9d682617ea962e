"""Store subscriptions, promotional grants, and the stored entitlement answer per account.

`subscriptions` and `promotional_grants` are the sources; `account_entitlements` is what the engine
made of them, written in the same transaction as any change to a source, so that answering
`GET /v1/me/entitlements` is one indexed read instead of a recomputation over history.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from entitle.db.base import Base
from entitle.db.types import UUID, CheckedString, CheckedText, JSONDocument, UTCDateTime, new_id, utcnow


class Subscription(Base):
    """One store subscription as the store last reported it (see core.subscriptions.SubscriptionState)."""

    __tablename__ = "subscriptions"
    __table_args__ = (
        UniqueConstraint("store", "store_subscription_id"),
        Index("ix_subscriptions_account_id", "account_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, default=new_id)
    # `stripe` or `app_store` (core.subscriptions.Store).
    store: Mapped[str] = mapped_column(CheckedString(20))
    # Stripe `sub_...`; App Store originalTransactionId.
    store_subscription_id: Mapped[str] = mapped_column(CheckedString(200))
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    # Catalog product key; None when the store product is not in the catalog.
    product: Mapped[str | None] = mapped_column(CheckedString(64))
    store_product_id: Mapped[str] = mapped_column(CheckedString(255))
    # core.subscriptions.SubscriptionStatus value.
    status: Mapped[str] = mapped_column(CheckedString(30))
    current_period_end: Mapped[datetime | None] = mapped_column(UTCDateTime)
    grace_period_ends_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Display-only summary of how the person pays (brand, last 4); see SubscriptionState.payment_method.
    payment_method: Mapped[dict[str, str] | None] = mapped_column(JSONDocument)
    will_renew: Mapped[bool] = mapped_column(Boolean, default=False)
    # `production` or `sandbox`.
    environment: Mapped[str] = mapped_column(CheckedString(20))
    store_customer_id: Mapped[str | None] = mapped_column(CheckedString(200), index=True)
    # The vendor object the state was read from, kept for support and for re-mapping after a fix.
    raw: Mapped[dict[str, Any]] = mapped_column(JSONDocument, default=dict)
    # The vendor's timestamp for the stored state; a snapshot older than this is ignored.
    vendor_updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Trial(Base):
    """A trial an account has had for one entitlement: the one it gets, whichever store gave it.

    Written when a store first reports a subscription that had a trial (or an App Store introductory
    offer) and never changed after: the subscription's own row is overwritten by every renewal, and a
    renewal no longer shows the trial, so eligibility and reports read this instead.
    """

    __tablename__ = "trials"

    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    entitlement: Mapped[str] = mapped_column(CheckedString(64), primary_key=True)
    # The subscription that had the trial: its store, store id and catalog product.
    store: Mapped[str] = mapped_column(CheckedString(20))
    store_subscription_id: Mapped[str] = mapped_column(CheckedString(200))
    product: Mapped[str | None] = mapped_column(CheckedString(64))
    # When the store says the trial began.
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class PromotionalGrant(Base):
    """An entitlement given by the app's team or support staff rather than bought."""

    __tablename__ = "promotional_grants"
    __table_args__ = (Index("ix_promotional_grants_account_id", "account_id"),)

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, default=new_id)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    entitlement: Mapped[str] = mapped_column(CheckedString(64))
    # None: in force from creation.
    starts_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Set when revoked; the row stays so the account's history stays explainable.
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reason: Mapped[str | None] = mapped_column(CheckedString(500))
    # Who gave it: `api` for the server key, `cli:<user>` for `entitle grant`.
    created_by: Mapped[str | None] = mapped_column(CheckedString(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AccountEntitlement(Base):
    """The engine's current answer for one entitlement of one account."""

    __tablename__ = "account_entitlements"
    # Lets a sweep find answers that time alone has changed without scanning every account.
    __table_args__ = (Index("ix_account_entitlements_recheck_at", "recheck_at"),)

    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    entitlement: Mapped[str] = mapped_column(CheckedString(64), primary_key=True)
    active: Mapped[bool] = mapped_column(Boolean)
    # `stripe`, `app_store` or `promotional`; None when inactive.
    source: Mapped[str | None] = mapped_column(CheckedString(20))
    # The store subscription id or grant id that the answer reports.
    source_id: Mapped[str | None] = mapped_column(CheckedString(200))
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The next moment time alone changes the answer; a read after it recomputes instead of trusting it.
    recheck_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The answer exactly as the API shows it (EntitlementAnswer.to_json()).
    answer: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AccountAnswer(Base):
    """The whole `GET /v1/me/entitlements` body of one account, as sent.

    Written in the transaction that changed a source (with `account_entitlements`), so the signed-in read
    is one query that checks the session and returns these bytes untouched. `recheck_at` is the earliest
    moment time alone changes the answer; a read after it recomputes instead of trusting the body.
    """

    __tablename__ = "account_answers"

    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    # Compact JSON text, exactly the bytes a client receives.
    body: Mapped[str] = mapped_column(CheckedText)
    recheck_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
