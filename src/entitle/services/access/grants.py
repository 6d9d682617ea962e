"""Promotional grants: entitlements given by the app's team (server key) or support staff (`entitle grant`).

A grant is a source like a subscription: creating or revoking one recomputes the account's entitlements
in the same transaction. Revoking keeps the row (with `revoked_at`) so the account's history can be
explained later; a grant past its expiry simply stops entitling, nothing needs to run.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from entitle.client_input import check_window
from entitle.core.entitlements import isoformat
from entitle.core.models.accounts import Account
from entitle.core.models.entitlements import PromotionalGrant
from entitle.db.types import utcnow
from entitle.errors import InvalidRequest, NotFound
from entitle.services.access.entitlements import entitlement_rules, refresh_entitlements
from entitle.services.identity.accounts import get_account, normalize_email

# Long enough for "lifetime" offers, short enough that no date arithmetic can overflow.
MAX_GRANT_YEARS = 100


async def require_account(db: AsyncSession, account_id: uuid.UUID) -> Account:
    account = await get_account(db, account_id)
    if account is None:
        raise NotFound("No account has this id.", code="account_not_found")
    return account


async def find_account(db: AsyncSession, id_or_email: str) -> Account:
    """An account by its id, primary email address or external id (for support staff on the command line)."""
    try:
        return await require_account(db, uuid.UUID(id_or_email))
    except ValueError:
        pass
    account = await db.scalar(
        select(Account).where(Account.email == normalize_email(id_or_email), Account.deleted_at.is_(None))
    )
    if account is None:
        account = await db.scalar(
            select(Account).where(Account.external_id == id_or_email, Account.deleted_at.is_(None))
        )
    if account is None:
        raise NotFound(
            f"No account has the id, email or external id {id_or_email!r}.", code="account_not_found"
        )
    return account


def _utc(value: datetime, name: str) -> datetime:
    if value.tzinfo is None:
        raise InvalidRequest(
            f"{name} must include a time zone, for example 2030-01-31T00:00:00Z.", code="invalid_grant_dates"
        )
    check_window(value, name, code="invalid_grant_dates")
    try:
        return value.astimezone(UTC)
    except (OverflowError, ValueError) as exc:
        raise InvalidRequest(f"{name} is out of range.", code="invalid_grant_dates") from exc


async def create_grant(
    db: AsyncSession,
    *,
    account_id: uuid.UUID,
    entitlement: str,
    expires_at: datetime,
    starts_at: datetime | None = None,
    reason: str | None = None,
    created_by: str | None = None,
    now: datetime | None = None,
) -> PromotionalGrant:
    now = now or utcnow()
    catalog = entitlement_rules(db).catalog
    if entitlement not in catalog.entitlements:
        known = ", ".join(sorted(catalog.entitlements))
        raise InvalidRequest(
            f"The catalog has no entitlement {entitlement!r} (it has: {known}).", code="unknown_entitlement"
        )
    expires_at = _utc(expires_at, "expires_at")
    starts_at = _utc(starts_at, "starts_at") if starts_at is not None else None
    if expires_at <= now:
        raise InvalidRequest(
            "expires_at is in the past; a grant must end in the future.", code="grant_expired"
        )
    if starts_at is not None and starts_at >= expires_at:
        raise InvalidRequest("starts_at must be before expires_at.", code="invalid_grant_dates")
    if expires_at > now + timedelta(days=366 * MAX_GRANT_YEARS):
        raise InvalidRequest(f"A grant can last at most {MAX_GRANT_YEARS} years.", code="invalid_grant_dates")
    await require_account(db, account_id)
    grant = PromotionalGrant(
        account_id=account_id,
        entitlement=entitlement,
        starts_at=starts_at,
        expires_at=expires_at,
        reason=reason,
        created_by=created_by,
        created_at=now,
    )
    db.add(grant)
    await db.flush()
    await refresh_entitlements(db, account_id, now=now)
    return grant


async def revoke_grant(
    db: AsyncSession,
    grant_id: uuid.UUID,
    *,
    account_id: uuid.UUID | None = None,
    now: datetime | None = None,
) -> PromotionalGrant:
    """Revoke a grant (again revoking one is a no-op); `account_id` confines the lookup to one account."""
    now = now or utcnow()
    query = select(PromotionalGrant).where(PromotionalGrant.id == grant_id).with_for_update()
    if account_id is not None:
        query = query.where(PromotionalGrant.account_id == account_id)
    grant = await db.scalar(query.execution_options(populate_existing=True))
    if grant is None:
        raise NotFound("No grant has this id.", code="grant_not_found")
    if grant.revoked_at is None:
        grant.revoked_at = now
        await db.flush()
        await refresh_entitlements(db, grant.account_id, now=now)
    return grant


async def list_grants(db: AsyncSession, account_id: uuid.UUID) -> list[PromotionalGrant]:
    rows = await db.scalars(
        select(PromotionalGrant)
        .where(PromotionalGrant.account_id == account_id)
        .order_by(PromotionalGrant.created_at.desc(), PromotionalGrant.id)
    )
    return list(rows)


def is_in_force(grant: PromotionalGrant, now: datetime) -> bool:
    started = grant.starts_at is None or grant.starts_at <= now
    return started and grant.revoked_at is None and now < grant.expires_at


def grant_json(grant: PromotionalGrant, *, now: datetime | None = None) -> dict[str, Any]:
    now = now or utcnow()
    return {
        "id": str(grant.id),
        "account_id": str(grant.account_id),
        "entitlement": grant.entitlement,
        "starts_at": isoformat(grant.starts_at),
        "expires_at": isoformat(grant.expires_at),
        "revoked_at": isoformat(grant.revoked_at),
        "reason": grant.reason,
        "created_by": grant.created_by,
        "created_at": isoformat(grant.created_at),
        "in_force": is_in_force(grant, now),
    }
