"""trials: the trial each account has had per entitlement, across stores (issue 16)

Revision ID: 0011_trials
Revises: 0009_operators
Create Date: 2026-12-08
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import entitle.db.types

revision: str = "0011_trials"
down_revision: str | None = "0010_page_links"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "trials",
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("entitlement", sa.String(length=64), nullable=False),
        sa.Column("store", sa.String(length=20), nullable=False),
        sa.Column("store_subscription_id", sa.String(length=200), nullable=False),
        sa.Column("product", sa.String(length=64), nullable=True),
        sa.Column("started_at", entitle.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_at", entitle.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("account_id", "entitlement"),
    )
    op.create_index(op.f("ix_trials_started_at"), "trials", ["started_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_trials_started_at"), table_name="trials")
    op.drop_table("trials")
