"""A purchase posted by the iPhone app (`POST /v1/billing/appstore/transactions`).

`record_purchase` runs inside the request's unit of work: verify the StoreKit 2 `jwsRepresentation`,
decide the owner (`ledger.decide_owner`), record it, apply the subscription or the one-time purchase
(a non-consumable, consumable or non-renewing subscription, keyed by its `transactionId`, through the
provider's `PurchaseSink`: a consumable posted again credits nothing more). A consumable is never moved
to another account by a restore, whatever the restore policy: its credits were given to its first owner
and may be spent already, so a second account posting it would only credit it twice. The route then commits,
releases the notifications parked for this purchase (the inbox's business), and calls `after_purchase`,
which works in transactions of its own and therefore must run after the commit: refresh the purchase
from the App Store Server API, and tell Apple the owner's token for a purchase made outside the app.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from entitle.core.catalog import ProductType
from entitle.core.models.accounts import Account
from entitle.core.subscriptions import Store
from entitle.errors import EntitleError, InvalidRequest
from entitle.providers.appstore import sync
from entitle.providers.appstore.consumption import remember_consent
from entitle.providers.appstore.ledger import account_for_token, decide_owner, find_owner, set_owner
from entitle.providers.appstore.mapping import is_one_time, purchase_state, stale_reason, subscription_state
from entitle.providers.appstore.notifications import is_family_shared, purchase_token, stored_transaction
from entitle.providers.appstore.provider import AppStoreProvider
from entitle.providers.appstore.verification import VerifiedTransaction
from entitle.settings import RestorePolicy

log = logging.getLogger(__name__)

AUTO_RENEWABLE = "Auto-Renewable Subscription"


@dataclass(frozen=True)
class PostedPurchase:
    original_transaction_id: str
    environment: str
    owner: uuid.UUID
    # The owner's token should be set at Apple: bought outside the app, or moved from another account.
    wants_token: bool
    # A non-consumable, consumable or non-renewing subscription: nothing renews, nothing to refresh.
    one_time: bool = False


async def record_purchase(
    provider: AppStoreProvider,
    db: AsyncSession,
    account: Account,
    signed_transaction: str,
    *,
    now: datetime,
    consented: bool | None = None,
) -> PostedPurchase:
    """`consented`: the person's answer, asked by the app, to sharing consumption data with Apple when a
    refund is requested (kept with a one-time purchase; None leaves the last answer)."""
    verified = await provider.verifier.verify_transaction_async(signed_transaction)
    tx = verified.payload
    one_time = is_one_time(verified) and provider.purchases is not None
    if (verified.raw.get("type") != AUTO_RENEWABLE and not one_time) or not tx.originalTransactionId:
        raise InvalidRequest(
            "Only auto-renewable subscriptions and one-time purchases can be posted here.",
            code="not_a_subscription",
        )
    original = str(tx.originalTransactionId)
    token = purchase_token(verified)
    family = is_family_shared(verified)
    ledger = await find_owner(db, original)
    # A deleted account keeps its purchases (accounting), but nobody can use them there: the same person,
    # signed up again, restores into the new account. Its token, or one no account here ever had, names no
    # other account, so the purchase is claimed like one made without a token.
    owner_is_live = ledger is not None and await _is_live(db, ledger.account_id)
    binding = token
    if token is not None and token != account.app_account_token and not await account_for_token(db, token):
        binding = None
    decision = decide_owner(
        poster=account.id,
        poster_token=account.app_account_token,
        purchase_token=binding,
        family_shared=family,
        current_owner=ledger.account_id if ledger is not None and owner_is_live else None,
        policy=RestorePolicy.KEEP if _is_consumable(provider, verified) else provider.config.restore_policy,
    )
    reason = decision.reason or "unchanged"
    if ledger is not None and not owner_is_live and ledger.account_id != decision.owner:
        reason = "owner_deleted"
    await set_owner(
        db,
        original_transaction_id=original,
        owner=decision.owner,
        reason=reason,
        environment=verified.environment.value,
        product_id=tx.productId or "",
        purchase_token=token,
        ownership_type=str(verified.raw.get("inAppOwnershipType") or "PURCHASED"),
        now=now,
    )
    if one_time:
        await _apply_one_time(provider, db, verified, decision.owner, consented)
        return PostedPurchase(
            original_transaction_id=original,
            environment=verified.environment.value,
            owner=decision.owner,
            # Later notifications of a one-time purchase (refunds) find their owner through the ledger.
            wants_token=False,
            one_time=True,
        )
    # The device may hold an old or upgraded-away transaction, freshly signed: never let it regress state.
    stale = stale_reason(verified, await stored_transaction(db, provider.sink, original), from_device=True)
    applied = False
    if stale is None:
        state = subscription_state(
            verified, None, account_id=decision.owner, catalog=provider.catalog, now=now
        )
        applied = await provider.sink.apply(db, state, now=now)
    if not applied:
        await _move_stored_subscription(provider, db, original, decision.owner, now=now)
    return PostedPurchase(
        original_transaction_id=original,
        environment=verified.environment.value,
        owner=decision.owner,
        wants_token=not family and token != account.app_account_token,
    )


def _is_consumable(provider: AppStoreProvider, verified: VerifiedTransaction) -> bool:
    product = provider.catalog.product_by_app_store_id(verified.payload.productId or "")
    if product is not None and product.is_one_time:
        return product.type is ProductType.CONSUMABLE
    return verified.raw.get("type") == "Consumable"


async def _apply_one_time(
    provider: AppStoreProvider,
    db: AsyncSession,
    verified: VerifiedTransaction,
    owner: uuid.UUID,
    consented: bool | None,
) -> None:
    sink = provider.purchases
    assert sink is not None
    state = purchase_state(verified, account_id=owner, catalog=provider.catalog)
    if not await sink.apply(db, state):
        # Newer state is stored (a notification came first); a restore may still have moved the owner.
        stored = await sink.stored(db, Store.APP_STORE, state.store_purchase_id)
        if stored is not None and stored.account_id != owner:
            # Same vendor timestamp, so the purchases service applies it (and refreshes both accounts).
            await sink.apply(db, dataclasses.replace(stored, account_id=owner))
    if consented is not None:
        await remember_consent(db, state.store_purchase_id, consented)


async def _is_live(db: AsyncSession, account_id: uuid.UUID) -> bool:
    owner = await db.get(Account, account_id)
    return owner is not None and not owner.is_deleted


async def _move_stored_subscription(
    provider: AppStoreProvider, db: AsyncSession, original: str, owner: uuid.UUID, *, now: datetime
) -> None:
    """A restore moved the purchase but the device's copy was not applied: move the stored state."""
    stored = await provider.sink.stored(db, Store.APP_STORE, original)
    if stored is None or stored.account_id == owner:
        return
    # Same vendor timestamp, so the subscription service applies it (and refreshes both accounts).
    await provider.sink.apply(db, dataclasses.replace(stored, account_id=owner), now=now)


async def after_purchase(provider: AppStoreProvider, purchase: PostedPurchase) -> None:
    """Follow-ups at Apple in their own transactions, run once the purchase is committed (and the
    notifications parked for it released); failures are logged, never undo the recorded purchase."""
    if provider.api is None or purchase.one_time:
        return
    try:
        await sync.refresh_subscription(provider, purchase.original_transaction_id)
        if purchase.wants_token:
            await sync.set_owner_token(provider, purchase.original_transaction_id)
    except EntitleError as exc:
        log.warning("App Store follow-up for %s failed: %s", purchase.original_transaction_id, exc.message)
