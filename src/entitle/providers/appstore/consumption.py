"""Answering Apple's CONSUMPTION_REQUEST: how much of a one-time purchase the person already used.

When someone asks Apple for a refund of an In-App Purchase, Apple may ask the app's server what it knows
(a CONSUMPTION_REQUEST notification) and weigh the answer. Apple's guidelines allow the answer only when
the person consented to share that data, so entitle sends it only for a purchase the app posted with
`consented: true` (stored in `purchases.consumption_consented`); otherwise the request is recorded for
support and nothing is sent.

What entitle knows, read from the core's tables (providers never call the services):
- a consumable: the share of its credits already spent, from the ledger, first in, first out: spends use
  the oldest credits first, a purchase's own refund takes back its own credits, and a credit arriving
  while the balance is below zero first pays that debt back;
- a non-renewing subscription: the share of its duration already elapsed;
- a non-consumable: no measure of use, so no percentage is sent.
Delivery is DELIVERED (entitle applied the purchase: it is in the answer), and no refund preference is
stated: that is the business's call, not the service's.

The answer is sent while the notification is processed, inside its transaction: Apple unreachable fails
the notification, which the inbox retries (Apple waits 12 hours), and a transaction that fails after the
answer went out sends it again on the retry, which Apple takes as the same answer once more.
"""

from __future__ import annotations

import datetime as dt
from collections import deque
from dataclasses import dataclass
from typing import Any

from appstoreserverlibrary.api_client import APIException
from appstoreserverlibrary.models.ConsumptionRequest import ConsumptionRequest
from appstoreserverlibrary.models.DeliveryStatus import DeliveryStatus
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from entitle.core.catalog import Catalog, ProductType
from entitle.core.models.purchases import BalanceTransaction, Purchase
from entitle.core.purchases import purchase_ref
from entitle.core.subscriptions import Store
from entitle.providers.appstore.api import AppStoreApi
from entitle.providers.appstore.errors import AppStoreApiUnavailable
from entitle.providers.appstore.mapping import is_one_time
from entitle.providers.appstore.sync import API_ENVIRONMENTS
from entitle.providers.appstore.verification import VerifiedTransaction

# Apple's consumptionPercentage is in milli-units: 100000 is all of it.
ALL_OF_IT = 100_000


async def find_purchase(db: AsyncSession, transaction_id: str) -> Purchase | None:
    return await db.scalar(
        select(Purchase).where(
            Purchase.store == Store.APP_STORE.value, Purchase.store_purchase_id == transaction_id
        )
    )


async def remember_consent(db: AsyncSession, transaction_id: str, consented: bool) -> None:
    """Record what the person answered the app for this purchase (the latest answer wins)."""
    await db.execute(
        update(Purchase)
        .where(Purchase.store == Store.APP_STORE.value, Purchase.store_purchase_id == transaction_id)
        .values(consumption_consented=consented)
    )


async def consumed_share(
    db: AsyncSession, purchase: Purchase, catalog: Catalog, now: dt.datetime
) -> int | None:
    """How much of the purchase is used, in Apple's milli-units (0..100000); None when unknowable."""
    product = catalog.product(purchase.product) if purchase.product is not None else None
    if purchase.type == ProductType.NON_RENEWING.value:
        ends = purchase.store_expires_at
        if ends is None and product is not None and product.duration_days:
            ends = purchase.purchased_at + dt.timedelta(days=product.duration_days)
        if ends is None or ends <= purchase.purchased_at:
            return None
        elapsed = (now - purchase.purchased_at) / (ends - purchase.purchased_at)
        return round(min(max(elapsed, 0.0), 1.0) * ALL_OF_IT)
    if purchase.type != ProductType.CONSUMABLE.value:
        return None
    source = purchase_ref(Store.APP_STORE, purchase.store_purchase_id)
    credited = spent = 0
    for currency in sorted(product.grants) if product is not None else []:
        rows = await db.execute(
            select(BalanceTransaction.amount, BalanceTransaction.source)
            .where(
                BalanceTransaction.account_id == purchase.account_id,
                BalanceTransaction.currency == currency,
            )
            .order_by(BalanceTransaction.created_at, BalanceTransaction.balance_after)
        )
        net, remaining = fifo_remaining([(int(amount), str(src)) for amount, src in rows], source)
        credited += net
        spent += max(0, net - remaining)
    if credited <= 0:
        return None
    return round(min(spent, credited) * ALL_OF_IT / credited)


async def consumption_request(
    db: AsyncSession, transaction_id: str, catalog: Catalog, now: dt.datetime
) -> tuple[ConsumptionRequest | None, str]:
    """The answer for Apple and why; None (with the reason) when nothing may or can be sent."""
    purchase = await find_purchase(db, transaction_id)
    if purchase is None:
        return None, "not_a_known_purchase"
    if not purchase.consumption_consented:
        return None, "no_consent"
    return (
        ConsumptionRequest(
            customerConsented=True,
            # Entitle knows of no sample or trial given before a one-time purchase; the app may.
            sampleContentProvided=False,
            deliveryStatus=DeliveryStatus.DELIVERED,
            consumptionPercentage=await consumed_share(db, purchase, catalog, now),
        ),
        "consented",
    )


def fifo_remaining(rows: list[tuple[int, str]], source: str) -> tuple[int, int]:
    """(net credit, still unspent) of `source`, replaying one currency's ledger (amount, source), oldest
    first."""
    lots: deque[_Lot] = deque()
    debt = 0
    credited = 0
    for amount, row_source in rows:
        if row_source == source:
            credited += amount
        if amount > 0:
            paid_back = min(debt, amount)
            debt -= paid_back
            if amount > paid_back:
                lots.append(_Lot(row_source, amount - paid_back))
            continue
        taking = -amount
        # A source taking back its own credits (a refund) takes them from its own lots first.
        for lot in [lot for lot in lots if lot.source == row_source] + list(lots):
            taken = min(lot.remaining, taking)
            lot.remaining -= taken
            taking -= taken
        lots = deque(lot for lot in lots if lot.remaining > 0)
        debt += taking
    return credited, sum(lot.remaining for lot in lots if lot.source == source)


@dataclass
class _Lot:
    """Credits of one ledger row not yet spent."""

    source: str
    remaining: int


async def answer_consumption_request(
    db: AsyncSession,
    transaction: VerifiedTransaction,
    *,
    api: AppStoreApi | None,
    catalog: Catalog,
    now: dt.datetime,
) -> dict[str, Any]:
    """Send Apple what entitle knows about the transaction when the person consented; say what happened
    (for the account's event log). Apple refusing the answer is recorded; Apple unreachable is raised, so
    the notification is retried (Apple waits 12 hours for it)."""
    if not is_one_time(transaction):
        # Consent is asked and kept with one-time purchases; a subscription's request is support's.
        return {"sent": False, "not_sent_because": "subscription"}
    transaction_id = str(transaction.payload.transactionId)
    request, why = await consumption_request(db, transaction_id, catalog, now)
    if request is None:
        return {"sent": False, "not_sent_because": why}
    environment = transaction.environment.value
    if api is None or environment not in API_ENVIRONMENTS:
        return {"sent": False, "not_sent_because": "no_server_api"}
    try:
        await api.send_consumption_information(environment, transaction_id, request)
    except AppStoreApiUnavailable as exc:
        cause = exc.__cause__
        if isinstance(cause, APIException) and 400 <= cause.http_status_code < 500:
            return {"sent": False, "not_sent_because": "refused_by_apple", "error": exc.message}
        raise
    return {
        "sent": True,
        "consumption_percentage": request.consumptionPercentage,
        "delivery_status": request.rawDeliveryStatus,
    }
