"""app store: ownership ledger, parked notifications (issue 5)

Parked notifications are provider inbox rows with status `parked` (0001); this revision adds the ledger
of who owns each App Store original transaction and the audit of every change of owner.

Revision ID: 0004_appstore
Revises: 0003_stripe
Create Date: 2026-11-21
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import entitle.db.types

revision: str = "0004_appstore"
down_revision: str | None = "0003_stripe"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "appstore_ownership",
        sa.Column("original_transaction_id", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("environment", sa.String(length=20), nullable=False),
        sa.Column("product_id", sa.String(length=255), nullable=False),
        sa.Column("app_account_token", sa.Uuid(), nullable=True),
        sa.Column("ownership_type", sa.String(length=20), nullable=False),
        sa.Column("token_set_at", entitle.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", entitle.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", entitle.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_appstore_ownership_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("original_transaction_id", name=op.f("pk_appstore_ownership")),
    )
    with op.batch_alter_table("appstore_ownership", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_appstore_ownership_account_id"), ["account_id"], unique=False)

    op.create_table(
        "appstore_ownership_changes",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("original_transaction_id", sa.String(length=64), nullable=False),
        sa.Column("from_account_id", sa.Uuid(), nullable=True),
        sa.Column("to_account_id", sa.Uuid(), nullable=False),
        sa.Column("reason", sa.String(length=40), nullable=False),
        sa.Column("created_at", entitle.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_appstore_ownership_changes")),
    )
    with op.batch_alter_table("appstore_ownership_changes", schema=None) as batch_op:
        batch_op.create_index(
            "ix_appstore_ownership_changes_original", ["original_transaction_id", "created_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("appstore_ownership_changes", schema=None) as batch_op:
        batch_op.drop_index("ix_appstore_ownership_changes_original")
    op.drop_table("appstore_ownership_changes")
    with op.batch_alter_table("appstore_ownership", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_appstore_ownership_account_id"))
    op.drop_table("appstore_ownership")
