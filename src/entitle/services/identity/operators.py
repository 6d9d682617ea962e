"""The people who run the app: accounts allowed into the dashboard, and the trail of what they did."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from entitle.core.events import record_event
from entitle.core.models.accounts import Account, Operator
from entitle.errors import NotFound
from entitle.services.access.grants import find_account

# The type of every dashboard action in the account's event log; `data.action` says which.
OPERATOR_ACTION = "operator.action"


async def add_operator(db: AsyncSession, who: str, *, added_by: str) -> tuple[Account, bool]:
    """Make the account (id, email or external id) an operator; False when it already was one."""
    account = await find_account(db, who)
    if account.is_deleted:
        raise NotFound("That account was deleted.", code="account_not_found")
    if await db.get(Operator, account.id) is not None:
        return account, False
    db.add(Operator(account_id=account.id, added_by=added_by))
    await record_event(
        db, account.id, OPERATOR_ACTION, {"action": "operator.added", "by": added_by}, announce=False
    )
    return account, True


async def remove_operator(db: AsyncSession, who: str, *, removed_by: str) -> Account:
    account = await find_account(db, who)
    result = await db.execute(delete(Operator).where(Operator.account_id == account.id))
    if not result.rowcount:  # type: ignore[attr-defined]
        raise NotFound("That account is not an operator.", code="not_an_operator")
    await record_event(
        db, account.id, OPERATOR_ACTION, {"action": "operator.removed", "by": removed_by}, announce=False
    )
    return account


async def list_operators(db: AsyncSession) -> list[tuple[Account, Operator]]:
    rows = await db.execute(
        select(Account, Operator)
        .join(Operator, Operator.account_id == Account.id)
        .order_by(Operator.added_at)
    )
    return [(account, operator) for account, operator in rows]


async def is_operator(db: AsyncSession, account_id: uuid.UUID) -> bool:
    return await db.get(Operator, account_id) is not None


async def record_action(
    db: AsyncSession, account_id: uuid.UUID, operator: Account, action: str, details: dict[str, Any]
) -> None:
    """Write what an operator did to the account's event log, naming the operator."""
    await record_event(
        db,
        account_id,
        OPERATOR_ACTION,
        {"action": action, "by": operator_label(operator), "operator_id": str(operator.id), **details},
        announce=False,
    )


def operator_label(operator: Account) -> str:
    return operator.email or str(operator.id)
