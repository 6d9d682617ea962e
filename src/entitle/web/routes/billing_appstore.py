"""POST /v1/billing/appstore/transactions: the iPhone app posts a StoreKit 2 purchase for its account."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import Field

from entitle.db.types import utcnow
from entitle.providers.appstore import purchases
from entitle.providers.appstore.provider import PROVIDER, appstore_provider
from entitle.services.access.entitlements import read_entitlements
from entitle.web.deps import ContextDep, CurrentAccount, SessionDep
from entitle.web.schemas import StrictBody

router = APIRouter(tags=["billing"])


class PostedTransaction(StrictBody):
    # StoreKit 2's `Transaction.jwsRepresentation` (a compact JWS, a few kilobytes).
    signed_transaction: str = Field(min_length=1, max_length=32_768)
    # The person's answer to sharing consumption data with Apple if they ask for a refund (docs/ios.md);
    # kept with a one-time purchase, and entitle answers Apple's CONSUMPTION_REQUEST only when true.
    consented: bool | None = None


@router.post("/v1/billing/appstore/transactions")
async def post_transaction(
    body: PostedTransaction, account: CurrentAccount, context: ContextDep, db: SessionDep
) -> dict[str, Any]:
    provider = appstore_provider(context.providers)
    purchase = await purchases.record_purchase(
        provider, db, account, body.signed_transaction, now=utcnow(), consented=body.consented
    )
    # The purchase must be durable before parked notifications are replayed in transactions of their own.
    await db.commit()
    await context.pipeline.release_parked(PROVIDER, purchase.original_transaction_id)
    await purchases.after_purchase(provider, purchase)
    return await read_entitlements(db, account.id)
