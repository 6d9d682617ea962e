"""Balances: the signed-in account's ledger, and the app's backend reading, spending and crediting.

Spends come from the app's backend (server key), never from the app itself: a client could otherwise
grant itself anything. The guarantees (no spend below zero, once per idempotency key) are the service's.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from entitle.context import AppContext
from entitle.core.models.purchases import BalanceTransaction
from entitle.errors import InvalidRequest, NotFound
from entitle.services.access import balances, fastspend
from entitle.services.access.entitlements import balances_json, entitlement_rules
from entitle.web.deps import AdminDep, SessionDep, SignedIn, require_admin
from entitle.web.schemas import BalancePostBody, parse_uuid

router = APIRouter(tags=["balances"])

LedgerLimit = Annotated[int, Query(ge=1, le=200)]
LedgerCursor = Annotated[str | None, Query(max_length=200, description="`next` from the previous page")]


def ledger_row_json(row: BalanceTransaction) -> dict[str, Any]:
    """One ledger row as the signed-in account reads it (the backend's idempotency keys stay private)."""
    full = balances.transaction_json(row)
    return {key: full[key] for key in ("id", "amount", "balance_after", "reason", "source", "created_at")}


@router.get("/v1/me/balances/{currency}/transactions")
async def my_ledger(
    signed_in: SignedIn, currency: str, db: SessionDep, limit: LedgerLimit = 50, after: LedgerCursor = None
) -> dict[str, Any]:
    """The account's ledger in one currency, newest first; `next` is the `after` of the following page."""
    await balances.require_currency(db, entitlement_rules(db).catalog, signed_in.account_id, currency)
    cursor = None
    if after is not None:
        cursor = parse_uuid(after)
        if cursor is None:
            raise InvalidRequest("`after` is not a transaction id.", code="invalid_cursor")
    rows, following = await balances.ledger(db, signed_in.account_id, currency, limit=limit, after=cursor)
    return {
        "transactions": [ledger_row_json(row) for row in rows],
        "next": str(following) if following is not None else None,
    }


async def _live_account(db: SessionDep, account_id: str) -> uuid.UUID:
    """A live account's id; an unknown, malformed or deleted one is the same 404."""
    parsed = parse_uuid(account_id)
    if parsed is None or not await balances.is_live_account(db, parsed):
        raise NotFound("No account has this id.", code="account_not_found")
    return parsed


@router.get("/v1/accounts/{account_id}/balances")
async def account_balances(_admin: AdminDep, account_id: str, db: SessionDep) -> dict[str, Any]:
    """Every catalog currency (0 until credited), and any other the account holds."""
    account = await _live_account(db, account_id)
    held = await balances.balances_of(db, account)
    return {"balances": balances_json(entitlement_rules(db).catalog, held)}


async def server_key(request: Request) -> AppContext:
    """`AdminDep` in one step, answering the context: the spend route's only dependency."""
    context: AppContext = request.app.state.context
    await require_admin(request, context.settings)
    return context


ServerKey = Annotated[AppContext, Depends(server_key)]


@router.post(
    "/v1/accounts/{account_id}/balances/{currency}/transactions",
    status_code=201,
    responses={
        200: {"description": "The idempotency key was used before: its first result, nothing applied."},
        409: {"description": "`insufficient_balance`: the spend would take the balance below zero."},
    },
)
async def post_transaction(
    context: ServerKey, account_id: str, currency: str, body: BalancePostBody
) -> JSONResponse:
    """Spend (a negative `amount`) or credit (a positive one) a currency -> `{transaction, balance}`."""
    # The app's backend's hottest write: like the signed-in read, no session and no dependency chain
    # unless the raw-driver path (services.access.fastspend) hands the post back.
    account = parse_uuid(account_id)
    if account is None:
        raise NotFound("No account has this id.", code="account_not_found")
    reason = body.reason or ("spend" if body.amount < 0 else "credit")
    posted = None
    if currency in context.catalog.currencies:
        posted = await fastspend.fast_post(
            context.database.hot,
            context.catalog,
            context.bus,
            account,
            currency,
            body.amount,
            reason=reason,
            source="api",
            idempotency_key=body.idempotency_key,
        )
    if posted is None:
        async with context.database.transaction() as db:
            await balances.require_currency(db, context.catalog, account, currency)
            # The post checks the account (deleted ones too) with the lock it takes anyway.
            posted = await balances.post(
                db,
                account,
                currency,
                body.amount,
                reason=reason,
                source="api",
                idempotency_key=body.idempotency_key,
                refuse_deleted=True,
            )
    return JSONResponse(
        {"transaction": balances.transaction_json(posted.transaction), "balance": posted.balance},
        status_code=200 if posted.replayed else 201,
    )
