"""entitlements: subscriptions, promotional grants, entitlement state (issue 3)

Revision ID: 0002_entitlements
Revises: 0001_foundation
Create Date: 2026-11-21
"""

from collections.abc import Sequence

revision: str = "0002_entitlements"
down_revision: str | None = "0001_foundation"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
