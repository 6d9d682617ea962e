"""app store: ownership ledger, parked notifications (issue 5)

Revision ID: 0004_appstore
Revises: 0003_stripe
Create Date: 2026-11-21
"""

from collections.abc import Sequence

revision: str = "0004_appstore"
down_revision: str | None = "0003_stripe"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
