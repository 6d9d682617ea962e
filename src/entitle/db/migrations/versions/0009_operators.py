"""operators: accounts that may open the dashboard (issue 11)

Revision ID: 0009_operators
Revises: 0008_reports
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import entitle.db.types

revision: str = "0009_operators"
down_revision: str | None = "0008_reports"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "operators",
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("added_at", entitle.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("added_by", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("account_id"),
    )


def downgrade() -> None:
    op.drop_table("operators")
