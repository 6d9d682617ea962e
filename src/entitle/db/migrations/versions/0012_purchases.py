"""purchases and balances: one-time purchases, the currency ledger and its sums (issue 18)

Revision ID: 0012_purchases
Revises: 0011_trials
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import entitle.db.types

revision: str = "0012_purchases"
down_revision: str | None = "0011_trials"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "balance_transactions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("currency", sa.String(length=64), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("balance_after", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("source", sa.String(length=300), nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.Column("created_at", entitle.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_balance_transactions_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_balance_transactions")),
        sa.UniqueConstraint(
            "account_id",
            "currency",
            "idempotency_key",
            name=op.f("uq_balance_transactions_account_id_currency_idempotency_key"),
        ),
    )
    with op.batch_alter_table("balance_transactions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_balance_transactions_ledger", ["account_id", "currency", "created_at"], unique=False
        )
        batch_op.create_index("ix_balance_transactions_source", ["account_id", "source"], unique=False)

    op.create_table(
        "balances",
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("currency", sa.String(length=64), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", entitle.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_balances_account_id_accounts"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("account_id", "currency", name=op.f("pk_balances")),
    )
    op.create_table(
        "purchases",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("store", sa.String(length=20), nullable=False),
        sa.Column("store_purchase_id", sa.String(length=200), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("product", sa.String(length=64), nullable=True),
        sa.Column("store_product_id", sa.String(length=255), nullable=False),
        sa.Column("type", sa.String(length=30), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("purchased_at", entitle.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("refunded_amount", sa.BigInteger(), nullable=False),
        sa.Column("revoked_at", entitle.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("revocation_reason", sa.String(length=30), nullable=True),
        sa.Column("store_expires_at", entitle.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("family_shared", sa.Boolean(), nullable=False),
        sa.Column("environment", sa.String(length=20), nullable=False),
        sa.Column("store_customer_id", sa.String(length=200), nullable=True),
        sa.Column("consumption_consented", sa.Boolean(), nullable=False),
        sa.Column("raw", entitle.db.types.JSONDocument(), nullable=False),
        sa.Column("vendor_updated_at", entitle.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_at", entitle.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", entitle.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_purchases_account_id_accounts"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_purchases")),
        sa.UniqueConstraint("store", "store_purchase_id", name=op.f("uq_purchases_store_store_purchase_id")),
    )
    with op.batch_alter_table("purchases", schema=None) as batch_op:
        batch_op.create_index("ix_purchases_account_id", ["account_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_purchases_purchased_at"), ["purchased_at"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_purchases_store_customer_id"), ["store_customer_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("purchases", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_purchases_store_customer_id"))
        batch_op.drop_index(batch_op.f("ix_purchases_purchased_at"))
        batch_op.drop_index("ix_purchases_account_id")

    op.drop_table("purchases")
    op.drop_table("balances")
    with op.batch_alter_table("balance_transactions", schema=None) as batch_op:
        batch_op.drop_index("ix_balance_transactions_source")
        batch_op.drop_index("ix_balance_transactions_ledger")

    op.drop_table("balance_transactions")
