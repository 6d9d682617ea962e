"""reports: an index for counting one event type's events per day (GET /v1/reports/summary)

Revision ID: 0008_reports
Revises: 0007_webhooks
Create Date: 2026-12-15
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008_reports"
down_revision: str | None = "0007_webhooks"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("account_events", schema=None) as batch_op:
        batch_op.create_index("ix_account_events_type_created", ["type", "created_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("account_events", schema=None) as batch_op:
        batch_op.drop_index("ix_account_events_type_created")
