"""stripe: customers (issue 4)

Revision ID: 0003_stripe
Revises: 0002_entitlements
Create Date: 2026-11-21
"""

from collections.abc import Sequence

revision: str = "0003_stripe"
down_revision: str | None = "0002_entitlements"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
