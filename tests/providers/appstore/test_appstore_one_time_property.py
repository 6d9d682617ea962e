"""Property: whatever order and repetition Apple's notifications and the app's posts of one-time purchases
arrive in, each account ends with what the latest signed state of each of its transactions says.

Several accounts each buy consumables (with quantities), a non-consumable and a non-renewing pass, and
hold family-shared copies of non-consumables bought by someone else; some purchases are refunded (and
the refund perhaps reversed, and refunded again), some family copies revoked. Every signed notification
(ONE_TIME_CHARGE, REFUND, REFUND_REVERSED, REVOKE) and the device's signed transaction at every step
(what the app posts to `POST /v1/billing/appstore/transactions`) is delivered, in an order hypothesis
chooses, some twice; part way through, the app's backend spends credits it holds. The truth is computed
here from the stand-in's purchases alone: a transaction stands unless its last step revoked it.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from entitle.context import AppContext
from entitle.core.models.events import InboxStatus, ProviderEvent
from entitle.core.models.purchases import Balance, BalanceTransaction, Purchase
from entitle.providers.appstore.provider import AppStoreProvider
from entitle.services.access import balances
from tests.factories import bearer, register
from tests.standins.appstore import CONSUMABLE, NON_CONSUMABLE, NON_RENEWING, AppStoreSigner, OneTimePurchase
from tests.standins.appstore.fixtures import appstore_settings

LIFETIME = "com.example.app.lifetime"
PASS_30 = "com.example.app.pass30"
CREDITS = "com.example.app.credits.100"
GEMS = "com.example.app.gems.5"
# What each consumable grants per unit, by currency.
GRANTS = {CREDITS: {"credits": 100}, GEMS: {"gems": 5}}
CURRENCIES = ("credits", "gems")
CATALOG = """
[entitlements.lifetime]
description = "Bought once, kept"

[entitlements.pass]
description = "A 30-day pass"

[products.pro_lifetime]
name = "Lifetime"
type = "non_consumable"
entitlements = ["lifetime"]
app_store = { product_id = "com.example.app.lifetime" }

[products.pass_30]
name = "30 days"
type = "non_renewing"
duration_days = 30
entitlements = ["pass"]
app_store = { product_id = "com.example.app.pass30" }

[currencies.credits]
name = "Credits"

[currencies.gems]
name = "Gems"

[products.credits_100]
name = "100 credits"
type = "consumable"
grants = { credits = 100 }
max_quantity = 10
app_store = { product_id = "com.example.app.credits.100" }

[products.gems_5]
name = "5 gems"
type = "consumable"
grants = { gems = 5 }
max_quantity = 10
app_store = { product_id = "com.example.app.gems.5" }
"""


@pytest.fixture
def settings_overrides(appstore_root_path: Path, tmp_path: Path) -> dict[str, Any]:
    path = tmp_path / "catalog.toml"
    path.write_text(CATALOG)
    return appstore_settings(appstore_root_path, catalog=path)


@dataclass(frozen=True)
class Plan:
    product: str
    kind: str
    quantity: int
    days_ago: int
    family: bool
    # Refund, reverse, refund... for a purchase; one REVOKE for a family copy.
    revocations: int


def _plans() -> st.SearchStrategy[list[Plan]]:
    consumable = st.builds(
        Plan,
        product=st.sampled_from([CREDITS, GEMS]),
        kind=st.just(CONSUMABLE),
        quantity=st.integers(1, 3),
        days_ago=st.just(1),
        family=st.just(False),
        revocations=st.integers(0, 3),
    )
    lifetime = st.builds(
        Plan,
        product=st.just(LIFETIME),
        kind=st.just(NON_CONSUMABLE),
        quantity=st.just(1),
        days_ago=st.integers(1, 400),
        family=st.booleans(),
        revocations=st.integers(0, 3),
    )
    # A pass bought 45 days ago has run out whatever happened to it.
    pass_ = st.builds(
        Plan,
        product=st.just(PASS_30),
        kind=st.just(NON_RENEWING),
        quantity=st.just(1),
        days_ago=st.sampled_from([2, 45]),
        family=st.just(False),
        revocations=st.integers(0, 2),
    )
    return st.lists(st.one_of(consumable, lifetime, pass_), min_size=1, max_size=4)


@dataclass
class Bought:
    account: int
    plan: Plan
    purchase: OneTimePurchase

    @property
    def standing(self) -> bool:
        return not self.purchase.revocation


@dataclass(frozen=True)
class Delivery:
    # What a falsifying example shows: "REFUND of 1000000000000003", "post of 1000000000000003 after REFUND".
    label: str
    # A notification's body for the webhook, or a device's signed transaction posted by `account`.
    notification: dict[str, str] | None = None
    signed_transaction: str | None = None
    account: int = 0

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        # Hypothesis prints a falsifying order with this, not with kilobytes of JWS.
        printer.text(self.label)


def _play(bought: Bought) -> list[Delivery]:
    """Every step of one purchase: its notification, and the device's copy after it."""
    purchase = bought.purchase
    notes = [purchase.buy()]
    posts = [purchase.signed_transaction()]
    for step in range(bought.plan.revocations):
        if bought.plan.family:
            if step == 0:
                notes.append(purchase.family_revoke())
                posts.append(purchase.signed_transaction())
            continue
        notes.append(purchase.refund() if step % 2 == 0 else purchase.refund_reversed())
        posts.append(purchase.signed_transaction())
    tx = purchase.transaction_id
    return [Delivery(f"{note.notification_type} of {tx}", notification=note.body) for note in notes] + [
        Delivery(
            f"post of {tx} after {note.notification_type}", signed_transaction=signed, account=bought.account
        )
        for note, signed in zip(notes, posts, strict=True)
    ]


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data(), plans=st.lists(_plans(), min_size=2, max_size=3))
async def test_any_delivery_of_one_time_purchases_ends_in_each_transactions_latest_state(
    client: httpx.AsyncClient,
    context: AppContext,
    appstore_signer: AppStoreSigner,
    data: st.DataObject,
    plans: list[list[Plan]],
) -> None:
    provider: AppStoreProvider = context.providers["app_store"]
    # The database is shared by every example: each example has its own accounts and transaction ids.
    run = uuid.uuid4().hex[:10]
    sessions = [await register(client, f"p{i}-{run}@example.com") for i in range(len(plans))]
    tokens = [session["account"]["app_account_token"] for session in sessions]
    first_id = 10**15 + uuid.uuid4().int % (8 * 10**15)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    bought: list[Bought] = []
    for account, wanted in enumerate(plans):
        for plan in wanted:
            purchase = OneTimePurchase(
                signer=appstore_signer,
                transaction_id=str(first_id + len(bought)),
                product_id=plan.product,
                type=plan.kind,
                # A family copy may carry the purchaser's token (another account): it must not route there.
                app_account_token=tokens[(account + 1) % len(tokens)] if plan.family else tokens[account],
                bought_at=now - dt.timedelta(days=plan.days_ago, hours=len(bought)),
                quantity=plan.quantity,
                ownership="FAMILY_SHARED" if plan.family else "PURCHASED",
            )
            bought.append(Bought(account, plan, purchase))
    everything = [delivery for one in bought for delivery in _play(one)]
    order = data.draw(st.permutations(everything), label="delivery order")
    # Apple retries and the app posts again: some arrive twice (or more).
    repeats = data.draw(st.lists(st.sampled_from(everything), max_size=6), label="redeliveries")
    deliveries = [*order, *repeats]
    spend_after = data.draw(st.integers(0, len(deliveries)), label="spend after this many deliveries")

    spent = [dict.fromkeys(CURRENCIES, 0) for _ in sessions]
    for index, delivery in enumerate(deliveries):
        if index == spend_after:
            await context.pipeline.wait_idle()
            await _spend(context, sessions, spent, data)
        if delivery.notification is not None:
            await context.pipeline.ingest(provider, json.dumps(delivery.notification).encode(), {})
        else:
            await _post(client, sessions[delivery.account], delivery)
    if spend_after == len(deliveries):
        await context.pipeline.wait_idle()
        await _spend(context, sessions, spent, data)
    await _settle(context)

    for account, session in enumerate(sessions):
        mine = [one for one in bought if one.account == account]
        account_id = uuid.UUID(session["account"]["id"])
        # Credits of the standing consumables; a revoked one took its credits back, spent or not.
        expected = {
            currency: sum(
                GRANTS[one.plan.product].get(currency, 0) * one.plan.quantity
                for one in mine
                if one.plan.kind == CONSUMABLE and one.standing
            )
            - spent[account][currency]
            for currency in CURRENCIES
        }
        if any(amount < 0 for amount in expected.values()):
            event("a refund took back credits already spent: below zero")
        expected_active = {
            "lifetime": any(one.plan.kind == NON_CONSUMABLE and one.standing for one in mine),
            "pass": any(
                one.plan.kind == NON_RENEWING and one.standing and one.plan.days_ago < 30 for one in mine
            ),
        }
        me = await client.get("/v1/me/entitlements", headers=bearer(session))
        assert me.status_code == 200, me.text
        body = me.json()
        assert {currency: body["balances"].get(currency, 0) for currency in CURRENCIES} == expected
        active = {name: body["entitlements"].get(name, {}).get("active", False) for name in expected_active}
        assert active == expected_active, [(one.plan, one.standing) for one in mine]
        async with context.database.sessionmaker() as db:
            stored = dict(
                (
                    await db.execute(
                        select(Balance.currency, Balance.amount).where(Balance.account_id == account_id)
                    )
                ).all()
            )
            ledger = dict(
                (
                    await db.execute(
                        select(BalanceTransaction.currency, func.sum(BalanceTransaction.amount))
                        .where(BalanceTransaction.account_id == account_id)
                        .group_by(BalanceTransaction.currency)
                    )
                ).all()
            )
            rows = (await db.scalars(select(Purchase).where(Purchase.account_id == account_id))).all()
        assert {c: stored.get(c, 0) for c in CURRENCIES} == {c: int(ledger.get(c) or 0) for c in CURRENCIES}
        assert {c: stored.get(c, 0) for c in CURRENCIES} == expected
        # Each transaction is one purchase row, on its account, revoked exactly when its latest state says so.
        assert sorted(row.store_purchase_id for row in rows) == sorted(
            one.purchase.transaction_id for one in mine
        )
        revoked = {row.store_purchase_id: row.revoked_at is not None for row in rows}
        assert revoked == {one.purchase.transaction_id: not one.standing for one in mine}
        by_id = {row.store_purchase_id: row for row in rows}
        for one in mine:
            row = by_id[one.purchase.transaction_id]
            assert (row.family_shared, row.quantity) == (one.plan.family, one.plan.quantity)
            if not one.standing:
                assert row.revocation_reason == ("revoked" if one.plan.family else "refunded")


async def _post(client: httpx.AsyncClient, session: dict[str, Any], delivery: Delivery) -> None:
    """The app posts the device's transaction; told `concurrent_change` (a notification of the same
    transaction was being stored at that moment), it tries again, as the answer asks."""
    for _ in range(5):
        response = await client.post(
            "/v1/billing/appstore/transactions",
            json={"signed_transaction": delivery.signed_transaction},
            headers=bearer(session),
        )
        if response.status_code != 409 or response.json()["error"]["code"] != "concurrent_change":
            break
    assert response.status_code == 200, response.text


async def _settle(context: AppContext) -> None:
    """Until every notification is processed: a notification that lost a race to store the same purchase
    failed and waits for its retry, which the worker would run a few seconds later; run it now."""
    for _ in range(5):
        await context.pipeline.wait_idle()
        async with context.database.sessionmaker() as db:
            failed = (
                await db.scalars(select(ProviderEvent.id).where(ProviderEvent.status == InboxStatus.FAILED))
            ).all()
        if not failed:
            break
        for row_id in failed:
            await context.pipeline.retry_now(row_id)
    async with context.database.sessionmaker() as db:
        unsettled = await db.scalar(
            select(func.count()).where(ProviderEvent.status.in_([InboxStatus.FAILED, InboxStatus.PARKED]))
        )
    assert unsettled == 0


async def _spend(
    context: AppContext, sessions: list[dict[str, Any]], spent: list[dict[str, int]], data: st.DataObject
) -> None:
    """The app's backend spends some of what each account holds now (never more: that is refused)."""
    async with context.database.transaction() as db:
        for account, session in enumerate(sessions):
            held = await balances.balances_of(db, uuid.UUID(session["account"]["id"]))
            for currency in CURRENCIES:
                amount = min(held.get(currency, 0), data.draw(st.integers(0, 250), label=f"spend {currency}"))
                if amount > 0:
                    await balances.post(
                        db,
                        uuid.UUID(session["account"]["id"]),
                        currency,
                        -amount,
                        reason="spent",
                        source="api",
                    )
                    spent[account][currency] += amount
