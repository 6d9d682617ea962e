"""Keeping App Store subscriptions current from Apple's side: refresh, back-fill, tell Apple the owner.

- `refresh_subscription` asks Get All Subscription Statuses about one known purchase and applies every
  subscription of that customer that the ledger knows. Apple signs these answers when asked, so they are
  the newest truth and win over any notification still in flight.
- `backfill_notifications` reads Get Notification History and feeds each notification through the same
  inbox as the webhook (duplicates collapse on notificationUUID), so a missed delivery is never lost.
- `set_owner_token` calls Set App Account Token for a purchase made outside the app once its owner is
  known, so Apple's future transactions and notifications carry the owner's token.
- `refresh_one_time` asks Get Transaction Info about one known one-time purchase (non-consumable,
  consumable, non-renewing subscription) and applies it when Apple's copy differs from the stored one: a
  refund or its reversal missed while entitle was down. One-time purchases bought while it was down come
  back through the notification history (ONE_TIME_CHARGE), like everything else Apple sent.
HTTP calls happen outside database transactions; each database step is its own short transaction.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from appstoreserverlibrary.models.Environment import Environment as AppleEnvironment
from sqlalchemy import Exists, and_, exists, select

from entitle.core.models.accounts import Account
from entitle.core.models.purchases import Purchase
from entitle.core.subscriptions import Store
from entitle.db.types import utcnow
from entitle.errors import EntitleError
from entitle.providers.appstore.errors import AppStoreApiUnavailable
from entitle.providers.appstore.ledger import find_owner
from entitle.providers.appstore.mapping import is_one_time, purchase_state, subscription_state
from entitle.providers.appstore.models import AppStoreOwnership

if TYPE_CHECKING:
    from entitle.core.purchases import PurchaseState
    from entitle.providers.appstore.api import AppStoreApi
    from entitle.providers.appstore.provider import AppStoreProvider

# The Server API serves these; Xcode and LocalTesting purchases exist only on a developer's machine.
API_ENVIRONMENTS = (AppleEnvironment.PRODUCTION.value, AppleEnvironment.SANDBOX.value)
# Apple keeps notification history for 180 days.
MAX_HISTORY_DAYS = 180


def _api(provider: AppStoreProvider) -> AppStoreApi:
    if provider.api is None:
        raise AppStoreApiUnavailable(
            "App Store Server API credentials are not configured (ENTITLE_APPLE_ISSUER_ID, "
            "ENTITLE_APPLE_KEY_ID, ENTITLE_APPLE_PRIVATE_KEY_PATH)."
        )
    return provider.api


async def refresh_subscription(provider: AppStoreProvider, original_transaction_id: str) -> int:
    """Apply Apple's current state of this purchase and the customer's other known ones; count the changes."""
    api = _api(provider)
    async with provider.database.transaction() as db:
        ledger = await find_owner(db, original_transaction_id)
        environment = ledger.environment if ledger is not None else None
    if environment not in API_ENVIRONMENTS:
        return 0
    items = await api.subscription_statuses(str(environment), original_transaction_id)
    changed = 0
    for item in items:
        if not item.signedTransactionInfo:
            continue
        transaction = await provider.verifier.verify_transaction_async(item.signedTransactionInfo)
        renewal = (
            await provider.verifier.verify_renewal_info_async(item.signedRenewalInfo)
            if item.signedRenewalInfo
            else None
        )
        now = utcnow()
        async with provider.database.transaction() as db:
            owner = await find_owner(db, str(transaction.payload.originalTransactionId))
            if owner is None:
                continue  # another subscription of this customer that no account has posted
            state = subscription_state(
                transaction,
                renewal,
                account_id=owner.account_id,
                catalog=provider.catalog,
                now=now,
                apple_status=item.rawStatus,
            )
            changed += int(await provider.sink.apply(db, state, now=now))
    return changed


async def set_owner_token(provider: AppStoreProvider, original_transaction_id: str) -> bool:
    """Tell Apple the owner's appAccountToken; False when the purchase has no live owner."""
    api = _api(provider)
    async with provider.database.transaction() as db:
        ledger = await find_owner(db, original_transaction_id)
        owner = await db.get(Account, ledger.account_id) if ledger is not None else None
        if ledger is None or owner is None or owner.is_deleted or ledger.environment not in API_ENVIRONMENTS:
            return False
        environment, token = ledger.environment, owner.app_account_token
    await api.set_app_account_token(environment, original_transaction_id, token)
    async with provider.database.transaction() as db:
        ledger = await find_owner(db, original_transaction_id)
        if ledger is not None:
            ledger.app_account_token = token
            ledger.token_set_at = utcnow()
    return True


async def refresh_one_time(provider: AppStoreProvider, transaction_id: str) -> bool:
    """Apply Apple's current copy of a one-time purchase if it differs from ours; True when it did."""
    api = _api(provider)
    async with provider.database.transaction() as db:
        ledger = await find_owner(db, transaction_id)
        environment = ledger.environment if ledger is not None else None
    if environment not in API_ENVIRONMENTS or provider.purchases is None:
        return False
    signed = await api.transaction_info(str(environment), transaction_id)
    if not signed:
        return False
    transaction = await provider.verifier.verify_transaction_async(signed)
    if not is_one_time(transaction):
        return False
    async with provider.database.transaction() as db:
        owner = await find_owner(db, transaction_id)
        if owner is None:
            return False
        state = purchase_state(transaction, account_id=owner.account_id, catalog=provider.catalog)
        stored = await provider.purchases.stored(db, Store.APP_STORE, state.store_purchase_id)
        # Apple signs its answer when asked, so it is always newer: apply it only when it says more.
        if stored is not None and _same_standing(stored, state):
            return False
        return await provider.purchases.apply(db, state)


def _same_standing(stored: PurchaseState, fresh: PurchaseState) -> bool:
    keys = (
        "account_id",
        "revoked_at",
        "revocation_reason",
        "refunded_amount",
        "quantity",
        "store_expires_at",
    )
    return all(getattr(stored, key) == getattr(fresh, key) for key in keys)


@dataclass
class SyncSummary:
    refreshed: int = 0
    changed: int = 0
    purchases_refreshed: int = 0
    purchases_changed: int = 0
    failed: list[str] = field(default_factory=list)
    notifications_seen: int = 0
    notifications_new: int = 0
    notifications_invalid: int = 0
    tokens_set: int = 0
    rate_limited: int = 0


# Feeds one notification body through the same ingestion path as the webhook; True when it was new.
Ingest = Callable[[bytes], Awaitable[bool]]


async def backfill_notifications(
    provider: AppStoreProvider,
    environment: str,
    *,
    start: dt.datetime,
    end: dt.datetime,
    summary: SyncSummary,
    ingest: Ingest,
) -> None:
    api = _api(provider)
    async for signed_payload in api.notification_history(environment, start, end):
        summary.notifications_seen += 1
        body = json.dumps({"signedPayload": signed_payload}).encode()
        try:
            created = await ingest(body)
        except EntitleError:
            summary.notifications_invalid += 1
            continue
        summary.notifications_new += int(created)


def _is_one_time_purchase() -> Exists:
    """An owned purchase that is a one-time one (its transaction id is a stored purchase's)."""
    return exists().where(
        and_(
            Purchase.store == Store.APP_STORE.value,
            Purchase.store_purchase_id == AppStoreOwnership.original_transaction_id,
        )
    )


async def known_purchases(provider: AppStoreProvider, *, one_time: bool = False) -> list[tuple[str, str]]:
    """(original transaction id, environment) of every owned subscription, or one-time purchase."""
    which = _is_one_time_purchase() if one_time else ~_is_one_time_purchase()
    async with provider.database.transaction() as db:
        rows = await db.execute(
            select(AppStoreOwnership.original_transaction_id, AppStoreOwnership.environment)
            .where(which)
            .order_by(AppStoreOwnership.created_at)
        )
        return [(original, environment) for original, environment in rows]


async def purchases_needing_token(provider: AppStoreProvider) -> list[str]:
    """Purchases whose Apple-side token is not their owner's (bought outside the app, or moved)."""
    async with provider.database.transaction() as db:
        rows = await db.execute(
            select(AppStoreOwnership.original_transaction_id, AppStoreOwnership.app_account_token, Account)
            .join(Account, Account.id == AppStoreOwnership.account_id)
            .where(
                AppStoreOwnership.ownership_type == "PURCHASED",
                AppStoreOwnership.environment.in_(API_ENVIRONMENTS),
                Account.deleted_at.is_(None),
                # A one-time purchase's later notifications (refunds) find their owner through the ledger.
                ~_is_one_time_purchase(),
            )
        )
        return [original for original, token, account in rows if token != account.app_account_token]


ProgressCallback = Callable[[str, int, int], None]


async def sync_all(
    provider: AppStoreProvider,
    *,
    ingest: Ingest,
    history_days: int = 30,
    on_progress: ProgressCallback | None = None,
) -> SyncSummary:
    """Refresh every known purchase, back-fill recent notifications, set missing tokens."""
    api = _api(provider)
    summary = SyncSummary()
    purchases = await known_purchases(provider)
    for index, (original, _environment) in enumerate(purchases, start=1):
        try:
            summary.changed += await refresh_subscription(provider, original)
            summary.refreshed += 1
        except EntitleError:
            summary.failed.append(original)
        if on_progress is not None:
            on_progress("refresh", index, len(purchases))
    one_time = await known_purchases(provider, one_time=True)
    for index, (transaction_id, _environment) in enumerate(one_time, start=1):
        try:
            summary.purchases_changed += int(await refresh_one_time(provider, transaction_id))
            summary.purchases_refreshed += 1
        except EntitleError:
            summary.failed.append(transaction_id)
        if on_progress is not None:
            on_progress("purchases", index, len(one_time))
    end = utcnow()
    start = end - dt.timedelta(days=max(1, min(history_days, MAX_HISTORY_DAYS)))
    environments = sorted({environment for _, environment in purchases if environment in API_ENVIRONMENTS})
    for step, environment in enumerate(environments or list(API_ENVIRONMENTS), start=1):
        try:
            await backfill_notifications(
                provider, environment, start=start, end=end, summary=summary, ingest=ingest
            )
        except EntitleError:
            summary.failed.append(f"notification history ({environment})")
        if on_progress is not None:
            on_progress("history", step, len(environments or API_ENVIRONMENTS))
    for original in await purchases_needing_token(provider):
        try:
            summary.tokens_set += int(await set_owner_token(provider, original))
        except EntitleError:
            summary.failed.append(f"token {original}")
    summary.rate_limited = api.rate_limited
    return summary
