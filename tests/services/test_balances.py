"""The ledger service: one transaction with its caller, and purchase and balance events for backends."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from entitle.context import AppContext
from entitle.core import events
from entitle.core.catalog import ProductType
from entitle.core.models.entitlements import AccountAnswer
from entitle.core.models.events import WebhookDelivery
from entitle.core.models.purchases import BalanceTransaction
from entitle.core.purchases import PurchaseState
from entitle.core.subscriptions import Environment, Store
from entitle.db.types import utcnow
from entitle.errors import InvalidRequest
from entitle.services.access import balances
from entitle.services.access.entitlements import compute_body, read_entitlements, refresh_entitlements
from entitle.services.access.purchases import apply_purchase_state
from tests.conftest import ADMIN_KEY
from tests.factories import bearer, make_account, register


async def test_a_post_is_undone_with_its_callers_transaction(context: AppContext, db: AsyncSession) -> None:
    account_id = (await make_account(db)).id
    # A read first, as a route does: on SQLite no transaction is open yet when the post starts.
    await db.execute(select(1))
    posted = await balances.post(db, account_id, "credits", 50, reason="test", source="test")
    assert posted.balance == 50
    await db.rollback()
    async with context.database.sessionmaker() as other:
        assert await balances.balance_of(other, account_id, "credits") == 0
        assert await other.scalar(select(func.count()).select_from(BalanceTransaction)) == 0


async def test_a_replay_answers_the_balance_the_first_post_left(db: AsyncSession) -> None:
    account = await make_account(db)
    first = await balances.post(db, account.id, "credits", 30, reason="r", source="s", idempotency_key="k")
    await balances.post(db, account.id, "credits", 5, reason="r", source="s")
    again = await balances.post(db, account.id, "credits", 30, reason="r", source="s", idempotency_key="k")
    assert (again.replayed, again.balance, again.transaction.id) == (True, 30, first.transaction.id)
    assert await balances.balance_of(db, account.id, "credits") == 35


@pytest.mark.parametrize("amount", [0, True, 10**12 + 1, -(10**12) - 1])
async def test_the_service_refuses_amounts_no_route_would_send(db: AsyncSession, amount: int) -> None:
    account = await make_account(db)
    with pytest.raises(InvalidRequest):
        await balances.post(db, account.id, "credits", amount, reason="r", source="s")


def pack(account_id: uuid.UUID, **overrides: object) -> PurchaseState:
    values: dict[str, object] = {
        "store": Store.APP_STORE,
        "store_purchase_id": "2000000000000100",
        "account_id": account_id,
        "product": "credits_100",
        "store_product_id": "com.example.app.credits.100",
        "type": ProductType.CONSUMABLE,
        "quantity": 1,
        "purchased_at": utcnow(),
        "environment": Environment.SANDBOX,
        "vendor_updated_at": utcnow(),
        "amount": 499,
        "currency": "usd",
    }
    return PurchaseState(**(values | overrides))  # type: ignore[arg-type]


async def test_purchase_and_payment_events_reach_the_account_log_and_endpoints(
    client: httpx.AsyncClient, context: AppContext
) -> None:
    server = {"Authorization": f"Bearer {ADMIN_KEY}"}
    for types in (["purchase.*"], ["balance.changed"]):
        created = await client.post(
            "/v1/webhook-endpoints",
            json={"url": "http://127.0.0.1:9/hook", "event_types": types},
            headers=server,
        )
        assert created.status_code == 201, created.text
    session = await register(client, "ada@example.com")
    account_id = uuid.UUID(session["account"]["id"])
    bought = pack(account_id)
    async with context.database.transaction() as db:
        assert await apply_purchase_state(db, bought)
    refunded = dataclasses.replace(
        bought,
        refunded_amount=499,
        revoked_at=utcnow(),
        revocation_reason="refunded",
        vendor_updated_at=bought.vendor_updated_at + timedelta(seconds=1),
    )
    async with context.database.transaction() as db:
        assert await apply_purchase_state(db, refunded)

    log = await client.get("/v1/me/events", params={"limit": 200}, headers=bearer(session))
    types = [e["type"] for e in log.json()["events"]]
    for wanted in ("payment.succeeded", "payment.refunded", "purchase.completed", "purchase.refunded"):
        assert wanted in types
    assert [e["data"]["balance"] for e in log.json()["events"] if e["type"] == "balance.changed"] == [0, 100]

    async with context.database.sessionmaker() as db:
        deliveries = list(await db.scalars(select(WebhookDelivery).order_by(WebhookDelivery.created_at)))
    assert [d.event_type for d in deliveries] == [
        events.BALANCE_CHANGED,
        events.PURCHASE_COMPLETED,
        events.BALANCE_CHANGED,
        events.PURCHASE_REFUNDED,
    ]
    for delivery in deliveries:
        assert delivery.payload["data"]["account_id"] == str(account_id)
        assert "external_id" in delivery.payload["data"]
    assert set(events.OUTBOUND_TYPES) >= {"purchase.completed", "purchase.refunded", "balance.changed"}


async def test_the_answer_rewritten_in_place_is_what_a_full_recompute_gives(db: AsyncSession) -> None:
    account_id = (await make_account(db)).id
    await refresh_entitlements(db, account_id)
    await db.commit()
    for currency, amount in (("credits", 10), ("gems", 5), ("credits", -3), ("coins", 2)):
        await balances.post(db, account_id, currency, amount, reason="r", source="s")
    await db.commit()
    stored = await read_entitlements(db, account_id)
    recomputed, _recheck = await compute_body(db, account_id, now=utcnow())
    assert stored == recomputed
    assert list(stored["balances"].items()) == [("credits", 7), ("coins", 2), ("gems", 5)]


async def test_a_session_that_already_writes_never_waits_for_a_spend_that_waits_for_it(
    context: AppContext,
) -> None:
    """SQLite: B holds the database's write lock when A (first to write) takes its turn among spends and
    waits for that lock; B's own post must not then wait for A's turn, or both stall."""
    async with context.database.sessionmaker() as setup:
        account_id = (await make_account(setup)).id
    maker = context.database.sessionmaker
    async with maker() as first_writer, maker() as queued:
        await events.record_event(first_writer, account_id, "test.write_first", {})

        async def spend() -> int:
            posted = await balances.post(queued, account_id, "credits", 5, reason="a", source="test")
            await queued.commit()
            return posted.balance

        waiting = asyncio.create_task(spend())
        await asyncio.sleep(0.2)  # let it take its turn and wait for the write lock
        # A hang guard, not a timing assertion: a stall here lasts the 30 s busy timeout.
        posted = await asyncio.wait_for(
            balances.post(first_writer, account_id, "credits", 7, reason="b", source="test"), timeout=20
        )
        await first_writer.commit()
        assert sorted([posted.balance, await asyncio.wait_for(waiting, timeout=20)]) in ([5, 12], [7, 12])


async def test_a_body_stored_before_balances_is_recomputed_whole(db: AsyncSession) -> None:
    account_id = (await make_account(db)).id
    await refresh_entitlements(db, account_id)
    old = {"entitlements": {}, "subscriptions": []}
    await db.execute(
        update(AccountAnswer).where(AccountAnswer.account_id == account_id).values(body=json.dumps(old))
    )
    await db.commit()
    await balances.post(db, account_id, "credits", 4, reason="r", source="s")
    await db.commit()
    body = await read_entitlements(db, account_id)
    assert body["balances"] == {"credits": 4} and body["purchases"] == []
    assert body["entitlements"]["pro"]["active"] is False
