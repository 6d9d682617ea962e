"""entitlements: subscriptions, promotional grants, entitlement state (issue 3)

Revision ID: 0002_entitlements
Revises: 0001_foundation
Create Date: 2026-11-21
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import entitle.db.types

revision: str = "0002_entitlements"
down_revision: str | None = "0001_foundation"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "account_entitlements",
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("entitlement", sa.String(length=64), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("source", sa.String(length=20), nullable=True),
        sa.Column("source_id", sa.String(length=200), nullable=True),
        sa.Column("expires_at", entitle.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("recheck_at", entitle.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column(
            "answer",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("updated_at", entitle.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_account_entitlements_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("account_id", "entitlement", name=op.f("pk_account_entitlements")),
    )
    with op.batch_alter_table("account_entitlements", schema=None) as batch_op:
        batch_op.create_index("ix_account_entitlements_recheck_at", ["recheck_at"], unique=False)

    op.create_table(
        "promotional_grants",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("entitlement", sa.String(length=64), nullable=False),
        sa.Column("starts_at", entitle.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("expires_at", entitle.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", entitle.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.Column("created_by", sa.String(length=200), nullable=True),
        sa.Column("created_at", entitle.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_promotional_grants_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_promotional_grants")),
    )
    with op.batch_alter_table("promotional_grants", schema=None) as batch_op:
        batch_op.create_index("ix_promotional_grants_account_id", ["account_id"], unique=False)

    op.create_table(
        "subscriptions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("store", sa.String(length=20), nullable=False),
        sa.Column("store_subscription_id", sa.String(length=200), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("product", sa.String(length=64), nullable=True),
        sa.Column("store_product_id", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=30), nullable=False),
        sa.Column("current_period_end", entitle.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("grace_period_ends_at", entitle.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column(
            "payment_method",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("will_renew", sa.Boolean(), nullable=False),
        sa.Column("environment", sa.String(length=20), nullable=False),
        sa.Column("store_customer_id", sa.String(length=200), nullable=True),
        sa.Column(
            "raw",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("vendor_updated_at", entitle.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_at", entitle.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", entitle.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_subscriptions_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subscriptions")),
        sa.UniqueConstraint(
            "store", "store_subscription_id", name=op.f("uq_subscriptions_store_store_subscription_id")
        ),
    )
    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.create_index("ix_subscriptions_account_id", ["account_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_subscriptions_store_customer_id"), ["store_customer_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_subscriptions_store_customer_id"))
        batch_op.drop_index("ix_subscriptions_account_id")

    op.drop_table("subscriptions")
    with op.batch_alter_table("promotional_grants", schema=None) as batch_op:
        batch_op.drop_index("ix_promotional_grants_account_id")

    op.drop_table("promotional_grants")
    with op.batch_alter_table("account_entitlements", schema=None) as batch_op:
        batch_op.drop_index("ix_account_entitlements_recheck_at")

    op.drop_table("account_entitlements")
