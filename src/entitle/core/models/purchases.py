"""One-time purchases, and the currency ledger with its running balances.

`purchases` is a source like `subscriptions`: one row per store purchase as the store last reported it.
`balance_transactions` is the ledger: every credit and debit of a currency, never updated, never
deleted. `balances` holds each (account, currency) sum, written in the same transaction as the ledger row
that changed it; it exists so that a spend can check and change the balance in one conditional UPDATE
(atomic on PostgreSQL and SQLite alike), and it never drifts from the ledger because nothing else writes it.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from entitle.db.base import Base
from entitle.db.types import UUID, CheckedString, JSONDocument, UTCDateTime, new_id, utcnow


class Purchase(Base):
    """One one-time purchase as its store last reported it (see core.purchases.PurchaseState)."""

    __tablename__ = "purchases"
    __table_args__ = (
        UniqueConstraint("store", "store_purchase_id"),
        Index("ix_purchases_account_id", "account_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, default=new_id)
    # `stripe` or `app_store`.
    store: Mapped[str] = mapped_column(CheckedString(20))
    # Stripe PaymentIntent `pi_...`; App Store transactionId.
    store_purchase_id: Mapped[str] = mapped_column(CheckedString(200))
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    # Catalog product key; None when the store product is not in the catalog.
    product: Mapped[str | None] = mapped_column(CheckedString(64))
    store_product_id: Mapped[str] = mapped_column(CheckedString(255))
    # core.catalog.ProductType value (never `subscription`).
    type: Mapped[str] = mapped_column(CheckedString(30))
    quantity: Mapped[int] = mapped_column(Integer, default=1)
    purchased_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    # What was paid, in minor units, and in what; None when the store does not say.
    amount: Mapped[int | None] = mapped_column(BigInteger)
    currency: Mapped[str | None] = mapped_column(CheckedString(3))
    refunded_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    # Set when the purchase stopped standing (full refund, dispute, revocation).
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revocation_reason: Mapped[str | None] = mapped_column(CheckedString(30))
    # Only when the store itself dates the end; otherwise the catalog's duration_days decides.
    store_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    family_shared: Mapped[bool] = mapped_column(Boolean, default=False)
    # `production` or `sandbox`.
    environment: Mapped[str] = mapped_column(CheckedString(20))
    store_customer_id: Mapped[str | None] = mapped_column(CheckedString(200), index=True)
    # The app told entitle the person agreed to share consumption data with Apple (CONSUMPTION_REQUEST).
    consumption_consented: Mapped[bool] = mapped_column(Boolean, default=False)
    raw: Mapped[dict[str, Any]] = mapped_column(JSONDocument, default=dict)
    vendor_updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Balance(Base):
    """The sum of one account's ledger in one currency."""

    __tablename__ = "balances"

    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    currency: Mapped[str] = mapped_column(CheckedString(64), primary_key=True)
    amount: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class BalanceTransaction(Base):
    """One ledger row: a credit (positive) or debit (negative) of one currency, with why and from where."""

    __tablename__ = "balance_transactions"
    __table_args__ = (
        # A spend's idempotency key answers its first result; a purchase's or period's credit is keyed
        # by its source so that no event, however often delivered, credits twice.
        UniqueConstraint("account_id", "currency", "idempotency_key"),
        Index("ix_balance_transactions_ledger", "account_id", "currency", "created_at"),
        Index("ix_balance_transactions_source", "account_id", "source"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, default=new_id)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    currency: Mapped[str] = mapped_column(CheckedString(64))
    amount: Mapped[int] = mapped_column(BigInteger)
    # The balance right after this row: the ledger can be read as a statement.
    balance_after: Mapped[int] = mapped_column(BigInteger)
    # `purchase`, `refund`, `refund_reversed`, `subscription_period`, `adjustment` (an operator),
    # `spend` / `credit` (the app's backend through the server-key route).
    reason: Mapped[str] = mapped_column(CheckedString(500))
    # Where it came from: `purchase:<store>:<id>`, `subscription:<store>:<id>`, `operator:<who>`, `api`.
    source: Mapped[str] = mapped_column(CheckedString(300))
    # Unique per account and currency when set (see __table_args__).
    idempotency_key: Mapped[str | None] = mapped_column(CheckedString(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
