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


INDEX = "ix_account_events_type_created"


def upgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        # The event log is the largest table: build without blocking its writes while the previous
        # release serves (CONCURRENTLY cannot run inside a transaction).
        with op.get_context().autocommit_block():
            op.create_index(
                INDEX, "account_events", ["type", "created_at"], postgresql_concurrently=True, if_not_exists=True
            )
        return
    op.create_index(INDEX, "account_events", ["type", "created_at"], unique=False)


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        with op.get_context().autocommit_block():
            op.drop_index(INDEX, table_name="account_events", postgresql_concurrently=True, if_exists=True)
        return
    op.drop_index(INDEX, table_name="account_events")
