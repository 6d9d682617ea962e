"""Sample data for a first look: one demo account with a promotional grant."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from entitle.context import build_context
from entitle.core.models.accounts import Identity
from entitle.db.types import utcnow
from entitle.services import accounts, grants
from entitle.settings import Settings

DEMO_EMAIL = "demo@example.com"
DEMO_PASSWORD = "entitle-demo-password"


async def seed_demo_account(settings: Settings) -> bool:
    """Create the demo account (entitled to the catalog's first entitlement for 30 days) unless it exists."""
    context = build_context(settings)
    try:
        async with context.database.transaction() as db:
            exists = await db.scalar(
                select(Identity.id).where(
                    Identity.provider == accounts.EMAIL_PROVIDER, Identity.subject == DEMO_EMAIL
                )
            )
            if exists is not None:
                return False
            account = await accounts.register_with_password(db, email=DEMO_EMAIL, password=DEMO_PASSWORD)
            first_entitlement = next(iter(context.catalog.entitlements))
            await grants.create_grant(
                db,
                account_id=account.id,
                entitlement=first_entitlement,
                expires_at=utcnow() + timedelta(days=30),
                reason="demo account",
                created_by="entitle serve --demo",
            )
            return True
    finally:
        await context.aclose()
