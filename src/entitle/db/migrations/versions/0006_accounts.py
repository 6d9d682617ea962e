"""accounts: mail outbox, single-use mailed tokens, Sign in with Apple refresh tokens, external ids (issue 9)

Revision ID: 0006_accounts
Revises: 0005_pipeline
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import entitle.db.types

revision: str = "0006_accounts"
down_revision: str | None = "0005_pipeline"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "mail_outbox",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=True),
        sa.Column("to", sa.String(length=320), nullable=False),
        sa.Column("template", sa.String(length=50), nullable=False),
        sa.Column("data", entitle.db.types.JSONDocument, nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", entitle.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("next_attempt_at", entitle.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("sent_at", entitle.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mail_outbox")),
    )
    with op.batch_alter_table("mail_outbox", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_mail_outbox_account_id"), ["account_id"], unique=False)
        batch_op.create_index("ix_mail_outbox_due", ["status", "next_attempt_at"], unique=False)

    op.create_table(
        "account_tokens",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("purpose", sa.String(length=30), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("created_at", entitle.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", entitle.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("used_at", entitle.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_account_tokens_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_account_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_account_tokens_token_hash")),
    )
    with op.batch_alter_table("account_tokens", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_account_tokens_account_id"), ["account_id"], unique=False)

    op.create_table(
        "apple_signin_tokens",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("subject", sa.String(length=320), nullable=False),
        sa.Column("client_id", sa.String(length=255), nullable=False),
        sa.Column("refresh_token_encrypted", sa.Text(), nullable=True),
        sa.Column("created_at", entitle.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("revoke_requested_at", entitle.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", entitle.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", entitle.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_apple_signin_tokens_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_apple_signin_tokens")),
    )
    with op.batch_alter_table("apple_signin_tokens", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_apple_signin_tokens_account_id"), ["account_id"], unique=False)
        batch_op.create_index(
            "ix_apple_signin_tokens_due", ["revoke_requested_at", "revoked_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_apple_signin_tokens_subject"), ["subject"], unique=False)

    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("external_id", sa.String(length=255), nullable=True))
        batch_op.create_unique_constraint(batch_op.f("uq_accounts_external_id"), ["external_id"])


def downgrade() -> None:
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_accounts_external_id"), type_="unique")
        batch_op.drop_column("external_id")

    with op.batch_alter_table("apple_signin_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_apple_signin_tokens_subject"))
        batch_op.drop_index("ix_apple_signin_tokens_due")
        batch_op.drop_index(batch_op.f("ix_apple_signin_tokens_account_id"))

    op.drop_table("apple_signin_tokens")
    with op.batch_alter_table("account_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_account_tokens_account_id"))

    op.drop_table("account_tokens")
    with op.batch_alter_table("mail_outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_mail_outbox_due")
        batch_op.drop_index(batch_op.f("ix_mail_outbox_account_id"))

    op.drop_table("mail_outbox")
