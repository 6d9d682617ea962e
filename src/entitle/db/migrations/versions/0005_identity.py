"""identity: sign in with apple / google additions

Revision ID: 0005_identity
Revises: 0004_appstore
Create Date: 2026-11-21
"""

from collections.abc import Sequence

revision: str = "0005_identity"
down_revision: str | None = "0004_appstore"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
