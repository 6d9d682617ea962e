"""The iPhone app's billing calls: `transactions` posts a StoreKit 2 purchase for its account;
`offer-signature` signs a promotional offer the account may have (docs/ios.md shows the Swift calls)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from entitle.db.types import utcnow
from entitle.providers.appstore import purchases
from entitle.providers.appstore.provider import PROVIDER, appstore_provider
from entitle.services.access.entitlements import read_entitlements
from entitle.services.billing import offers
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


class OfferRequest(StrictBody):
    product_id: str = Field(
        min_length=1, max_length=255, description="The subscription's App Store product id (`Product.id`)."
    )
    offer_id: str = Field(
        min_length=1,
        max_length=64,
        description="The offer's identifier in App Store Connect (`Product.SubscriptionOffer.id`).",
    )


class SignedOfferAnswer(BaseModel):
    product_id: str = Field(description="The App Store product id the offer was signed for.")
    offer_id: str = Field(description="The promotional offer's identifier, as signed.")
    key_id: str = Field(description="The In-App Purchase key's id: `keyID` of the older form.")
    nonce: str = Field(description="A fresh lowercase UUID: `nonce` of the older form (single-use).")
    timestamp: int = Field(
        description="UNIX time in milliseconds: `timestamp` of the older form; Apple accepts it for 24 hours."
    )
    signature: str = Field(description="Base64 ECDSA P-256 signature: `signature` of the older form.")
    app_account_token: str = Field(
        description="The account's appAccountToken, signed in the older form: pass the same "
        "`.appAccountToken(_:)` with the purchase, or that form does not verify."
    )
    jws: str = Field(
        description="Compact JWS for `Product.PurchaseOption.promotionalOffer(_:compactJWS:)` (iOS 18.4+)."
    )


@router.post(
    "/v1/billing/appstore/offer-signature",
    response_model=SignedOfferAnswer,
    responses={
        403: {"description": "`offer_not_eligible`: the offer's catalog rule excludes this account."},
        404: {"description": "`unknown_product` or `unknown_offer`: not in the catalog's offers."},
        503: {"description": "`appstore_not_configured`: the server has no In-App Purchase key."},
    },
)
async def offer_signature(
    body: OfferRequest, account: CurrentAccount, context: ContextDep, db: SessionDep
) -> dict[str, Any]:
    """Sign an App Store promotional offer for the signed-in account, both forms StoreKit accepts."""
    signed = await offers.sign_offer(
        db,
        appstore_provider(context.providers),
        context.catalog,
        account,
        product_id=body.product_id,
        offer_id=body.offer_id,
        now=utcnow(),
    )
    return asdict(signed)
