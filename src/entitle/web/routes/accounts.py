"""Support lookups with the server key: find an account, read it, read its event log."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from entitle.core.models.accounts import Account
from entitle.errors import NotFound
from entitle.services.reporting import lookups
from entitle.web.deps import AdminDep, SessionDep
from entitle.web.routes.me import EventLimit, EventOffset, EventType
from entitle.web.schemas import account_json, parse_uuid

router = APIRouter(prefix="/v1/accounts", tags=["support"])

LookupValue = Annotated[str | None, Query(min_length=1, max_length=320)]


def support_json(account: Account) -> dict[str, Any]:
    return account_json(account) | {
        "deleted_at": account.deleted_at.isoformat() if account.deleted_at else None,
    }


@router.get("")
async def find_accounts(
    _admin: AdminDep,
    db: SessionDep,
    email: LookupValue = None,
    external_id: LookupValue = None,
    stripe_customer_id: LookupValue = None,
    original_transaction_id: LookupValue = None,
    purchase_id: LookupValue = None,
) -> dict[str, Any]:
    """Accounts by email, external id, Stripe customer, App Store original transaction id, or the id of a
    one-time purchase (a Stripe PaymentIntent `pi_...`, an App Store transaction id)."""
    found = await lookups.find_accounts(
        db,
        email=email,
        external_id=external_id,
        stripe_customer_id=stripe_customer_id,
        original_transaction_id=original_transaction_id,
        purchase_id=purchase_id,
    )
    return {"accounts": [support_json(account) for account in found]}


async def _account(db: SessionDep, account_id: str) -> Account:
    parsed = parse_uuid(account_id)
    if parsed is None:
        raise NotFound("No account has this id.", code="account_not_found")
    return await lookups.require_account(db, parsed)


@router.get("/{account_id}")
async def get_account(_admin: AdminDep, account_id: str, db: SessionDep) -> dict[str, Any]:
    return support_json(await _account(db, account_id))


@router.get("/{account_id}/events")
async def account_events(
    _admin: AdminDep,
    account_id: str,
    db: SessionDep,
    limit: EventLimit = 50,
    offset: EventOffset = 0,
    type: EventType = None,
) -> dict[str, Any]:
    """That account's event log, as `GET /v1/me/events`."""
    account = await _account(db, account_id)
    return await lookups.event_log(db, account.id, limit=limit, offset=offset, type=type)
