"""Keeping App Store subscriptions current from Apple's side: refresh, back-fill, tell Apple the owner.

- `refresh_subscription` asks Get All Subscription Statuses about one known purchase and applies every
  subscription of that customer that the ledger knows. Apple signs these answers when asked, so they are
  the newest truth and win over any notification still in flight.
- `backfill_notifications` reads Get Notification History and feeds each notification through the same
  inbox as the webhook (duplicates collapse on notificationUUID), so a missed delivery is never lost.
- `set_owner_token` calls Set App Account Token for a purchase made outside the app once its owner is
  known, so Apple's future transactions and notifications carry the owner's token.
HTTP calls happen outside database transactions; each database step is its own short transaction.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from appstoreserverlibrary.models.Environment import Environment as AppleEnvironment
from sqlalchemy import select

from entitle.core.models.accounts import Account
from entitle.db.types import utcnow
from entitle.errors import EntitleError
from entitle.providers.appstore.errors import AppStoreApiUnavailable
from entitle.providers.appstore.ledger import find_owner
from entitle.providers.appstore.mapping import subscription_state
from entitle.providers.appstore.models import AppStoreOwnership

if TYPE_CHECKING:
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


@dataclass
class SyncSummary:
    refreshed: int = 0
    changed: int = 0
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


async def known_purchases(provider: AppStoreProvider) -> list[tuple[str, str]]:
    async with provider.database.transaction() as db:
        rows = await db.execute(
            select(AppStoreOwnership.original_transaction_id, AppStoreOwnership.environment).order_by(
                AppStoreOwnership.created_at
            )
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
