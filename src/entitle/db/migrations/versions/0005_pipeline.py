"""pipeline: stored answer bodies, stream tickets, batch lookups in the inbox (issue 8)

`account_answers` holds each account's whole entitlements body as sent, so the signed-in read is one
query; `stream_tickets` lets browsers open the entitlements stream; the inbox gets an index to load every
unprocessed event of one ordering key at once (one vendor read settles them all).

Revision ID: 0005_pipeline
Revises: 0004_appstore
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import entitle.db.types

revision: str = "0005_pipeline"
down_revision: str | None = "0004_appstore"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "account_answers",
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("recheck_at", entitle.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("updated_at", entitle.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_account_answers_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_account_answers")),
    )
    op.create_table(
        "stream_tickets",
        sa.Column("ticket_hash", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("session_id", sa.Uuid(), nullable=True),
        sa.Column("expires_at", entitle.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("used_at", entitle.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_stream_tickets_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("ticket_hash", name=op.f("pk_stream_tickets")),
    )
    op.create_index(op.f("ix_stream_tickets_expires_at"), "stream_tickets", ["expires_at"], unique=False)
    op.create_index(
        "ix_provider_events_key_status", "provider_events", ["provider", "ordering_key", "status"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_provider_events_key_status", table_name="provider_events")
    op.drop_index(op.f("ix_stream_tickets_expires_at"), table_name="stream_tickets")
    op.drop_table("stream_tickets")
    op.drop_table("account_answers")
