"""What a notification handler works with: the verified notification, its owner, and how to apply it.

The owner of a notification is found, in order, by the `appAccountToken` Apple echoes (the app set it at
purchase, so it names the account the purchase was made for), then by the ownership ledger's
`originalTransactionId`. When neither knows it (a purchase made outside the app that the app has not
posted yet) the handler raises `ParkEvent`: the inbox keeps the row PARKED until the app posts the
transaction, and the purchase route releases it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncSession

from entitle.core.catalog import Catalog
from entitle.core.events import record_event
from entitle.core.models.events import ProviderEvent
from entitle.core.purchases import PurchaseSink
from entitle.core.subscriptions import Store, SubscriptionSink
from entitle.providers.appstore.ledger import account_for_token, find_owner, set_owner
from entitle.providers.appstore.mapping import is_one_time, purchase_state, stale_reason, subscription_state
from entitle.providers.appstore.verification import VerifiedNotification, VerifiedTransaction, from_millis
from entitle.providers.base import ParkEvent

if TYPE_CHECKING:
    from entitle.providers.appstore.api import AppStoreApi


def purchase_token(transaction: VerifiedTransaction) -> uuid.UUID | None:
    """The transaction's appAccountToken as a UUID; anything else Apple would never send counts as none."""
    value = transaction.payload.appAccountToken
    try:
        return uuid.UUID(value) if value else None
    except ValueError:
        return None


def is_family_shared(transaction: VerifiedTransaction) -> bool:
    return transaction.raw.get("inAppOwnershipType") == "FAMILY_SHARED"


async def stored_transaction(
    db: AsyncSession, sink: SubscriptionSink, original_transaction_id: str
) -> dict[str, Any] | None:
    """The raw App Store transaction kept with the stored subscription, if any."""
    stored = await sink.stored(db, Store.APP_STORE, original_transaction_id)
    kept = stored.raw.get("transaction") if stored is not None and isinstance(stored.raw, dict) else None
    return kept if isinstance(kept, dict) else None


@dataclass
class NotificationContext:
    db: AsyncSession
    note: VerifiedNotification
    catalog: Catalog
    sink: SubscriptionSink
    now: datetime
    event: ProviderEvent | None = None
    # One-time purchases (non-consumables, consumables, non-renewing subscriptions) go here.
    purchases: PurchaseSink | None = None
    # The App Store Server API, when configured (answering CONSUMPTION_REQUEST needs it).
    api: AppStoreApi | None = None
    _owner: uuid.UUID | None = field(default=None, init=False)

    async def find_owner(self) -> uuid.UUID | None:
        """The owning account, recording it in the ledger when only the token knew it; None when unknown."""
        if self._owner is not None:
            return self._owner
        transaction = self.note.transaction
        if transaction is None:
            return None
        original = str(transaction.payload.originalTransactionId)
        ledger = await find_owner(self.db, original)
        token = purchase_token(transaction)
        # A family member's transaction is not theirs to route by token (it may carry the purchaser's).
        account = (
            None
            if token is None or is_family_shared(transaction)
            else await account_for_token(self.db, token)
        )
        if account is not None:
            if ledger is None or ledger.account_id != account.id:
                await set_owner(
                    self.db,
                    original_transaction_id=original,
                    owner=account.id,
                    reason="notification" if ledger is None else "token_matches",
                    environment=transaction.environment.value,
                    product_id=transaction.payload.productId or "",
                    purchase_token=token,
                    ownership_type=str(transaction.raw.get("inAppOwnershipType") or "PURCHASED"),
                    now=self.now,
                )
            self._owner = account.id
        elif ledger is not None:
            self._owner = ledger.account_id
        if self._owner is not None and self.event is not None:
            self.event.account_id = self._owner
        return self._owner

    async def apply(self) -> str:
        """Apply the state the notification carries (a subscription snapshot, or a one-time purchase's
        state for a one-time transaction); park it when its owner is unknown."""
        transaction = self.note.transaction
        if transaction is None:
            return "ignored: no transaction in notification"
        owner = await self.find_owner()
        if owner is None:
            raise ParkEvent(
                f"no account known yet for original transaction {transaction.payload.originalTransactionId}"
            )
        if is_one_time(transaction):
            return await self._apply_purchase(transaction, owner)
        stored = await stored_transaction(self.db, self.sink, str(transaction.payload.originalTransactionId))
        stale = stale_reason(transaction, stored, from_device=False)
        if stale is not None:
            # A refund of a past period, say: recorded by the handler, but the subscription is a later one.
            return f"ignored: {stale}"
        state = subscription_state(
            transaction,
            self.note.renewal_info,
            account_id=owner,
            catalog=self.catalog,
            now=self.now,
            notification=self.note,
        )
        applied = await self.sink.apply(self.db, state, now=self.now)
        return f"applied {state.status.value}" if applied else "ignored: older than stored state"

    async def _apply_purchase(self, transaction: VerifiedTransaction, owner: uuid.UUID) -> str:
        if self.purchases is None:
            return "ignored: one-time purchases are not recorded by this provider"
        state = purchase_state(transaction, account_id=owner, catalog=self.catalog, notification=self.note)
        applied = await self.purchases.apply(self.db, state)
        if not applied:
            return "ignored: older than stored state"
        return f"applied purchase {state.revocation_reason or 'standing'}"

    async def record(self, type: str, data: dict[str, Any]) -> None:
        """Write an event to the owner's log; park the notification while its purchase has no known owner."""
        owner = await self.find_owner()
        transaction = self.note.transaction
        if owner is None:
            if transaction is None:
                return  # about no purchase at all (a summary): nobody to tell
            # A refund request or decision is for support to see: it waits for the owner like a state change.
            raise ParkEvent(
                f"no account known yet for original transaction {transaction.payload.originalTransactionId}"
            )
        details: dict[str, Any] = {
            "notification_uuid": self.note.notification_uuid,
            "original_transaction_id": transaction.payload.originalTransactionId if transaction else None,
            **data,
        }
        await record_event(self.db, owner, type, details)

    def revocation_details(self) -> dict[str, Any]:
        transaction = self.note.transaction
        if transaction is None:
            return {}
        return {
            "revoked_at": from_millis(transaction.payload.revocationDate),
            "revocation_reason": transaction.raw.get("revocationReason"),
            "ownership": transaction.raw.get("inAppOwnershipType"),
        }
