"""Who owns an App Store purchase: the ledger's rules, its audit, and the event log of both accounts.

The rules (`decide_owner`):
- A purchase whose `appAccountToken` names another account was made for that account: it is refused
  (409 `purchase_belongs_to_another_account`), never moved, whatever the restore policy says.
- A purchase carrying the poster's token belongs to the poster; if the ledger said otherwise (it was
  claimed earlier without a token), Apple's data wins and the move is audited.
- A purchase with no token (bought outside the app, or before the app set tokens) and Family Sharing
  purchases (which carry the purchaser's token, not the family member's) go to whoever posts them first;
  a later post from another account is a restore and follows `ENTITLE_APPSTORE_RESTORE_POLICY`:
  `keep` refuses it with the same 409, `transfer` moves the purchase.
- A token that no live account holds (its account was deleted, or another installation set it) binds
  nothing, and a deleted owner owns nothing: the purchase route passes such a purchase in as unclaimed.
Every change of owner writes one audit row and an `appstore.ownership_changed` event to each account.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from entitle.core.events import record_event
from entitle.core.models.accounts import Account
from entitle.errors import Conflict
from entitle.providers.appstore.models import AppStoreOwnership, AppStoreOwnershipChange
from entitle.settings import RestorePolicy

OWNERSHIP_CHANGED = "appstore.ownership_changed"


class PurchaseBelongsToAnotherAccount(Conflict):
    default_code = "purchase_belongs_to_another_account"


@dataclass(frozen=True)
class OwnerDecision:
    owner: uuid.UUID
    # Why the owner changed; None when the ledger already had this owner.
    reason: str | None


def decide_owner(
    *,
    poster: uuid.UUID,
    poster_token: uuid.UUID,
    purchase_token: uuid.UUID | None,
    family_shared: bool,
    current_owner: uuid.UUID | None,
    policy: RestorePolicy,
) -> OwnerDecision:
    """Pure rule: who owns the purchase after `poster` posted it; raises when the poster may not have it."""
    token_binds = purchase_token is not None and not family_shared
    if token_binds and purchase_token != poster_token:
        raise PurchaseBelongsToAnotherAccount(
            "This purchase was made while signed in to another account; sign in to that account to use it."
        )
    if current_owner is None:
        return OwnerDecision(poster, "purchase" if token_binds else "claimed_without_token")
    if current_owner == poster:
        return OwnerDecision(poster, None)
    if token_binds:
        return OwnerDecision(poster, "token_matches")
    if policy is RestorePolicy.TRANSFER:
        return OwnerDecision(poster, "restore_transfer")
    raise PurchaseBelongsToAnotherAccount(
        "This purchase is already in use by another account; it stays there (restore policy: keep)."
    )


def _locks(db: AsyncSession) -> bool:
    return db.get_bind().dialect.name == "postgresql"


async def find_owner(db: AsyncSession, original_transaction_id: str) -> AppStoreOwnership | None:
    return await db.get(AppStoreOwnership, original_transaction_id)


async def account_for_token(db: AsyncSession, token: uuid.UUID) -> Account | None:
    """The live account whose app_account_token this is."""
    return await db.scalar(
        select(Account).where(Account.app_account_token == token, Account.deleted_at.is_(None))
    )


async def set_owner(
    db: AsyncSession,
    *,
    original_transaction_id: str,
    owner: uuid.UUID,
    reason: str,
    environment: str,
    product_id: str,
    purchase_token: uuid.UUID | None,
    ownership_type: str,
    now: datetime,
) -> AppStoreOwnership:
    """Record `owner` for the purchase, auditing the change and telling both accounts."""
    row = await find_owner(db, original_transaction_id)
    previous = row.account_id if row is not None else None
    if row is None:
        # The app's post and Apple's notification of a new purchase often arrive together: whichever
        # inserts second finds the first's row here instead of failing on the key.
        insert = postgresql.insert if db.get_bind().dialect.name == "postgresql" else sqlite.insert
        created = await db.scalar(
            insert(AppStoreOwnership)
            .values(
                original_transaction_id=original_transaction_id,
                account_id=owner,
                environment=environment,
                product_id=product_id,
                app_account_token=purchase_token,
                ownership_type=ownership_type,
                created_at=now,
                updated_at=now,
            )
            .on_conflict_do_nothing(index_elements=["original_transaction_id"])
            .returning(AppStoreOwnership.original_transaction_id)
        )
        row = await db.get(
            AppStoreOwnership, original_transaction_id, populate_existing=True, with_for_update=_locks(db)
        )
        if row is None:  # deleted between the two statements (its account was erased): nothing to own
            raise Conflict(
                "The purchase changed while it was being recorded; try again.", code="concurrent_change"
            )
        if row.account_id != owner:
            # The other writer gave it to another account: the decision must be made again on what is
            # stored now (a retry of the event or the post does that).
            raise Conflict(
                "The purchase changed while it was being recorded; try again.", code="concurrent_change"
            )
        previous = None if created is not None else row.account_id
    row.account_id = owner
    row.environment = environment
    row.product_id = product_id
    row.app_account_token = purchase_token
    row.ownership_type = ownership_type
    row.updated_at = now
    if previous != owner:
        db.add(
            AppStoreOwnershipChange(
                original_transaction_id=original_transaction_id,
                from_account_id=previous,
                to_account_id=owner,
                reason=reason,
                created_at=now,
            )
        )
        data = {
            "original_transaction_id": original_transaction_id,
            "from_account_id": previous,
            "to_account_id": owner,
            "reason": reason,
            "product_id": product_id,
        }
        await db.flush()
        await record_event(db, owner, OWNERSHIP_CHANGED, data)
        if previous is not None:
            await record_event(db, previous, OWNERSHIP_CHANGED, data)
    await db.flush()
    return row


async def ownership_history(db: AsyncSession, original_transaction_id: str) -> list[AppStoreOwnershipChange]:
    rows = await db.scalars(
        select(AppStoreOwnershipChange)
        .where(AppStoreOwnershipChange.original_transaction_id == original_transaction_id)
        .order_by(AppStoreOwnershipChange.created_at, AppStoreOwnershipChange.id)
    )
    return list(rows)
