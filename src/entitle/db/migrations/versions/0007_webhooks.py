"""webhooks: Standard Webhooks deliveries with a log, per-account order, the events feed, alerts (issue 10)

Existing endpoint secrets were used as raw HMAC keys (`Entitle-Signature`). Standard Webhooks secrets
are `whsec_` + base64 of the key bytes, so each old secret is rewritten to carry the very same key
bytes: `whsec_` + base64(old secret). A receiver that kept the old secret computes its new form the
same way.

Revision ID: 0007_webhooks
Revises: 0006_accounts
Create Date: 2026-12-01
"""

import base64
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import entitle.db.types

revision: str = "0007_webhooks"
down_revision: str | None = "0006_accounts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("account_events", schema=None) as batch_op:
        batch_op.create_index("ix_account_events_created_id", ["created_at", "id"], unique=False)

    with op.batch_alter_table("webhook_endpoints", schema=None) as batch_op:
        batch_op.add_column(sa.Column("disabled_reason", sa.String(length=300), nullable=True))

    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("account_id", sa.Uuid(), nullable=True))
        batch_op.add_column(sa.Column("event_type", sa.String(length=80), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("response_code", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column("last_attempt_at", entitle.db.types.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.create_index(
            "ix_webhook_deliveries_order", ["endpoint_id", "account_id", "status", "created_at"], unique=False
        )
        batch_op.create_index("ix_webhook_deliveries_log", ["endpoint_id", "created_at"], unique=False)
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.alter_column("event_type", server_default=None)

    op.create_table(
        "alerts_sent",
        sa.Column("cause", sa.String(length=200), nullable=False),
        sa.Column("last_sent_at", entitle.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("suppressed", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("cause", name=op.f("pk_alerts_sent")),
    )

    connection = op.get_bind()
    endpoints = sa.table("webhook_endpoints", sa.column("id", sa.Uuid()), sa.column("secret", sa.String()))
    for endpoint_id, secret in connection.execute(sa.select(endpoints.c.id, endpoints.c.secret)).all():
        converted = "whsec_" + base64.b64encode(secret.encode()).decode()
        connection.execute(endpoints.update().where(endpoints.c.id == endpoint_id).values(secret=converted))


def downgrade() -> None:
    connection = op.get_bind()
    endpoints = sa.table("webhook_endpoints", sa.column("id", sa.Uuid()), sa.column("secret", sa.String()))
    for endpoint_id, secret in connection.execute(sa.select(endpoints.c.id, endpoints.c.secret)).all():
        try:
            original = base64.b64decode(secret.removeprefix("whsec_"), validate=True).decode()
        except ValueError:
            continue
        connection.execute(endpoints.update().where(endpoints.c.id == endpoint_id).values(secret=original))

    op.drop_table("alerts_sent")
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_webhook_deliveries_log")
        batch_op.drop_index("ix_webhook_deliveries_order")
        batch_op.drop_column("last_attempt_at")
        batch_op.drop_column("response_code")
        batch_op.drop_column("event_type")
        batch_op.drop_column("account_id")
    with op.batch_alter_table("webhook_endpoints", schema=None) as batch_op:
        batch_op.drop_column("disabled_reason")
    with op.batch_alter_table("account_events", schema=None) as batch_op:
        batch_op.drop_index("ix_account_events_created_id")
