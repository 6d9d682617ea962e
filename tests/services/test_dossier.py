"""The dashboard's dossier of one account: its purchases and each currency's balance and ledger."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from entitle.core.catalog import ProductType
from entitle.services.access import balances
from entitle.services.access.purchases import apply_purchase_state
from entitle.services.reporting import dossier
from tests.factories import credits_purchase, make_account, one_time_purchase


async def test_the_dossier_carries_purchases_newest_first_and_each_ledger(db: AsyncSession) -> None:
    account = await make_account(db)
    bought = datetime(2026, 3, 14, 9, 30, tzinfo=UTC)
    await apply_purchase_state(db, one_time_purchase(account.id, purchased_at=bought))
    await apply_purchase_state(
        db,
        one_time_purchase(
            account.id,
            store_purchase_id="pi_pass",
            type=ProductType.NON_RENEWING,
            purchased_at=bought + timedelta(days=1),
            store_expires_at=bought + timedelta(days=31),
        ),
    )
    await apply_purchase_state(db, credits_purchase(account.id, purchased_at=bought + timedelta(days=2)))
    for step in range(dossier.LEDGER_LIMIT + 1):
        await balances.post(db, account.id, "credits", -1, reason=f"spend {step}", source="api")
    await db.commit()

    found = await dossier.dossier(db, account.id, stripe_live=False)
    assert [(view.row.store_purchase_id, view.expires_at) for view in found.purchases] == [
        ("3000000000000001", None),
        ("pi_pass", bought + timedelta(days=31)),
        ("pi_lifetime_1", None),
    ]
    assert found.balances == {"credits": 100 - dossier.LEDGER_LIMIT - 1}
    [ledger] = found.ledgers
    assert (ledger.currency, ledger.name, ledger.more) == ("credits", "Credits", True)
    assert len(ledger.transactions) == dossier.LEDGER_LIMIT
    assert ledger.transactions[0].reason == f"spend {dossier.LEDGER_LIMIT}"
    assert ledger.transactions[0].balance_after == found.balances["credits"]
