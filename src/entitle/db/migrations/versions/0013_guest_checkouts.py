"""guest checkouts: purchases paid before an account existed, held until claimed (issue 19)

Revision ID: 0013_guest_checkouts
Revises: 0012_purchases
Create Date: 2026-12-08
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import entitle.db.types

revision: str = "0013_guest_checkouts"
down_revision: str | None = "0012_purchases"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "guest_checkouts",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("store", sa.String(length=20), nullable=False),
        sa.Column("checkout_id", sa.String(length=255), nullable=False),
        sa.Column("browser_hash", sa.String(length=64), nullable=True),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("product", sa.String(length=64), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("store_customer_id", sa.String(length=200), nullable=True),
        sa.Column("store_subscription_id", sa.String(length=200), nullable=True),
        sa.Column("store_purchase_id", sa.String(length=200), nullable=True),
        sa.Column("paid_at", entitle.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("claimed_account_id", sa.Uuid(), nullable=True),
        sa.Column("claimed_at", entitle.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("claimed_by", sa.String(length=20), nullable=True),
        sa.Column("token_hash", sa.String(length=64), nullable=True),
        sa.Column("token_expires_at", entitle.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("token_used_at", entitle.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", entitle.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["claimed_account_id"],
            ["accounts.id"],
            name=op.f("fk_guest_checkouts_claimed_account_id_accounts"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_guest_checkouts")),
        sa.UniqueConstraint("store", "checkout_id", name=op.f("uq_guest_checkouts_store_checkout_id")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_guest_checkouts_token_hash")),
    )
    with op.batch_alter_table("guest_checkouts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_guest_checkouts_claimed_account_id"), ["claimed_account_id"], unique=False
        )
        batch_op.create_index("ix_guest_checkouts_customer", ["store", "store_customer_id"], unique=False)
        batch_op.create_index("ix_guest_checkouts_status", ["status", "created_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("guest_checkouts", schema=None) as batch_op:
        batch_op.drop_index("ix_guest_checkouts_status")
        batch_op.drop_index("ix_guest_checkouts_customer")
        batch_op.drop_index(batch_op.f("ix_guest_checkouts_claimed_account_id"))

    op.drop_table("guest_checkouts")
