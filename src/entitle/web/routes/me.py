"""The signed-in account: who am I, delete me, what happened to me."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from sqlalchemy import func, select

from entitle.core.models.events import AccountEvent
from entitle.services import accounts
from entitle.web.deps import ContextDep, CurrentAccount, SessionDep, SignedIn
from entitle.web.schemas import account_json

router = APIRouter(prefix="/v1/me", tags=["account"])


@router.get("")
async def me(account: CurrentAccount) -> dict[str, Any]:
    return account_json(account)


@router.delete("", status_code=204)
async def delete_me(account: CurrentAccount, context: ContextDep, db: SessionDep) -> Response:
    await accounts.delete_account(db, account, hooks=context.account_deletion_hooks)
    return Response(status_code=204)


@router.get("/events")
async def my_events(
    signed_in: SignedIn,
    db: SessionDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    type: Annotated[str | None, Query(max_length=80, pattern=r"^[a-z_]+(\.[a-z_]+)*(\.\*)?$")] = None,
) -> dict[str, Any]:
    """The account's event log, newest first; `type` matches exactly or, ending in `*`, by prefix."""
    query = select(AccountEvent).where(AccountEvent.account_id == signed_in.account_id)
    if type is not None:
        if type.endswith("*"):
            query = query.where(AccountEvent.type.startswith(type[:-1], autoescape=True))
        else:
            query = query.where(AccountEvent.type == type)
    total = await db.scalar(select(func.count()).select_from(query.subquery()))
    rows = await db.scalars(
        query.order_by(AccountEvent.created_at.desc(), AccountEvent.id.desc()).limit(limit).offset(offset)
    )
    return {
        "events": [
            {"id": str(e.id), "type": e.type, "data": e.data, "created_at": e.created_at.isoformat()}
            for e in rows
        ],
        "total": total,
        "limit": limit,
        "offset": offset,
    }
