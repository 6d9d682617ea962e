"""Balances over HTTP: the backend spends and credits with the server key, the account reads its ledger."""

from __future__ import annotations

import asyncio
import random
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from entitle.context import AppContext
from entitle.core.models.events import WebhookDelivery
from entitle.core.models.purchases import Balance, BalanceTransaction
from entitle.db.types import utcnow
from entitle.services.access import balances
from entitle.services.access.entitlements import compute_body
from tests.conftest import ADMIN_KEY, LiveServer
from tests.factories import bearer, register
from tests.web.test_streams import stream

SERVER = {"Authorization": f"Bearer {ADMIN_KEY}"}


def path(account_id: str, currency: str = "credits") -> str:
    return f"/v1/accounts/{account_id}/balances/{currency}/transactions"


async def post(
    client: httpx.AsyncClient, account_id: str, amount: Any, currency: str = "credits", **fields: Any
) -> httpx.Response:
    return await client.post(path(account_id, currency), json={"amount": amount, **fields}, headers=SERVER)


async def ledger_and_balance(context: AppContext, account_id: str) -> tuple[int, int]:
    """What the database holds: the ledger's sum and the stored balance of credits."""
    async with context.database.sessionmaker() as db:
        account = uuid.UUID(account_id)
        total = await db.scalar(
            select(func.coalesce(func.sum(BalanceTransaction.amount), 0)).where(
                BalanceTransaction.account_id == account, BalanceTransaction.currency == "credits"
            )
        )
        balance = await db.scalar(
            select(Balance.amount).where(Balance.account_id == account, Balance.currency == "credits")
        )
        return int(total or 0), int(balance or 0)


async def test_credit_spend_and_read_everywhere(client: httpx.AsyncClient) -> None:
    session = await register(client, "ada@example.com")
    ada = session["account"]["id"]
    before = await client.get(f"/v1/accounts/{ada}/balances", headers=SERVER)
    assert before.status_code == 200 and before.json() == {"balances": {"credits": 0}}

    credit = await post(client, ada, 100, reason="welcome bonus")
    assert credit.status_code == 201, credit.text
    assert credit.json()["balance"] == 100
    spend = await post(client, ada, -30)
    assert spend.status_code == 201, spend.text
    body = spend.json()
    assert body["balance"] == 70
    assert {k: body["transaction"][k] for k in ("amount", "balance_after", "reason", "source")} == {
        "amount": -30,
        "balance_after": 70,
        "reason": "spend",
        "source": "api",
    }

    after = await client.get(f"/v1/accounts/{ada}/balances", headers=SERVER)
    assert after.json() == {"balances": {"credits": 70}}
    answer = await client.get("/v1/me/entitlements", headers=bearer(session))
    assert answer.json()["balances"] == {"credits": 70}

    ledger = await client.get("/v1/me/balances/credits/transactions", headers=bearer(session))
    assert ledger.status_code == 200, ledger.text
    rows = ledger.json()["transactions"]
    assert [(r["amount"], r["balance_after"], r["reason"]) for r in rows] == [
        (-30, 70, "spend"),
        (100, 100, "welcome bonus"),
    ]
    assert set(rows[0]) == {"id", "amount", "balance_after", "reason", "source", "created_at"}
    assert ledger.json()["next"] is None

    events = await client.get("/v1/me/events", params={"type": "balance.changed"}, headers=bearer(session))
    assert [e["data"]["balance"] for e in events.json()["events"]] == [70, 100]


async def test_an_idempotency_key_applies_once_and_answers_the_first_result(
    client: httpx.AsyncClient, context: AppContext
) -> None:
    ada = (await register(client, "ada@example.com"))["account"]["id"]
    await post(client, ada, 100)
    first = await post(client, ada, -10, idempotency_key="order-1")
    assert first.status_code == 201
    await post(client, ada, -5)
    again = await post(client, ada, -10, idempotency_key="order-1")
    assert again.status_code == 200
    assert again.json() == first.json()
    assert await ledger_and_balance(context, ada) == (85, 85)


async def test_racing_repeats_of_one_key_apply_once(client: httpx.AsyncClient, context: AppContext) -> None:
    ada = (await register(client, "ada@example.com"))["account"]["id"]
    await post(client, ada, 100)
    answers = await asyncio.gather(*(post(client, ada, -7, idempotency_key="same") for _ in range(6)))
    assert sorted(a.status_code for a in answers) == [200] * 5 + [201]
    assert len({a.json()["transaction"]["id"] for a in answers}) == 1
    assert await ledger_and_balance(context, ada) == (93, 93)


async def test_a_spend_beyond_the_balance_changes_nothing(
    client: httpx.AsyncClient, context: AppContext
) -> None:
    session = await register(client, "ada@example.com")
    ada = session["account"]["id"]
    await post(client, ada, 20)
    refused = await post(client, ada, -21, idempotency_key="too-much")
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "insufficient_balance"
    assert await ledger_and_balance(context, ada) == (20, 20)
    # The key was not used up by the refusal: once there is enough, it spends.
    await post(client, ada, 1)
    assert (await post(client, ada, -21, idempotency_key="too-much")).status_code == 201
    events = await client.get("/v1/me/events", params={"type": "balance.changed"}, headers=bearer(session))
    assert [e["data"]["amount"] for e in events.json()["events"]] == [-21, 1, 20]


async def test_racing_spends_never_go_below_zero(client: httpx.AsyncClient, context: AppContext) -> None:
    ada = (await register(client, "ada@example.com"))["account"]["id"]
    await post(client, ada, 100)
    sizes = [random.randint(1, 25) for _ in range(24)]
    answers = await asyncio.gather(*(post(client, ada, -size) for size in sizes))
    assert {a.status_code for a in answers} <= {201, 409}
    spent = sum(size for size, a in zip(sizes, answers, strict=True) if a.status_code == 201)
    total, balance = await ledger_and_balance(context, ada)
    assert total == balance == 100 - spent >= 0
    # Every refused spend was refused for a reason: it was larger than what was left at the end.
    assert all(size > balance for size, a in zip(sizes, answers, strict=True) if a.status_code == 409)


async def test_a_spend_waits_for_a_transaction_writing_the_account(
    client: httpx.AsyncClient, context: AppContext
) -> None:
    # The spend's raw-driver path cannot write while another transaction does (SQLite's write lock, the
    # account's row lock on PostgreSQL): it waits or hands over, and then applies on top of that work.
    session = await register(client, "ada@example.com")
    ada = session["account"]["id"]
    await post(client, ada, 100)
    async with context.database.transaction() as db:
        await balances.post(db, uuid.UUID(ada), "credits", 5, reason="adjustment", source="operator:test")
        spend = asyncio.create_task(post(client, ada, -10, idempotency_key="while-held"))
        await asyncio.sleep(0.3)
        assert not spend.done()
    answer = await spend
    assert answer.status_code == 201, answer.text
    assert answer.json()["balance"] == 95
    assert await ledger_and_balance(context, ada) == (95, 95)
    read = await client.get("/v1/me/entitlements", headers=bearer(session))
    assert read.json()["balances"] == {"credits": 95}


async def test_the_answer_after_spends_is_what_a_full_recompute_says(
    client: httpx.AsyncClient, context: AppContext
) -> None:
    session = await register(client, "ada@example.com")
    ada = session["account"]["id"]
    await post(client, ada, 50)
    for amount in (-7, -3, 12, -60, -1):
        await post(client, ada, amount)
    stored = (await client.get("/v1/me/entitlements", headers=bearer(session))).json()
    async with context.database.sessionmaker() as db:
        recomputed, _recheck = await compute_body(db, uuid.UUID(ada), now=utcnow())
    assert stored == recomputed
    assert stored["balances"] == {"credits": 51}
    events = await client.get("/v1/me/events", params={"type": "balance.changed"}, headers=bearer(session))
    assert [e["data"]["balance"] for e in events.json()["events"]] == [51, 52, 40, 43, 50]


@pytest.mark.parametrize(
    "body",
    [
        {"amount": 0},
        {"amount": 1.5},
        {"amount": 5.0},
        {"amount": "5"},
        {"amount": True},
        {"amount": 10**13},
        {"amount": -(10**13)},
        {},
        {"amount": 5, "note": "unknown field"},
        {"amount": 5, "reason": ""},
        {"amount": 5, "idempotency_key": "k" * 256},
    ],
)
async def test_bad_bodies_are_refused(client: httpx.AsyncClient, context: AppContext, body: Any) -> None:
    ada = (await register(client, "ada@example.com"))["account"]["id"]
    answer = await client.post(path(ada), json=body, headers=SERVER)
    assert answer.status_code == 422, answer.text
    assert await ledger_and_balance(context, ada) == (0, 0)


async def test_unknown_accounts_and_currencies(client: httpx.AsyncClient) -> None:
    session = await register(client, "ada@example.com")
    ada = session["account"]["id"]
    for account in ("not-a-uuid", str(uuid.uuid4())):
        missing = await post(client, account, 5)
        assert (missing.status_code, missing.json()["error"]["code"]) == (404, "account_not_found")
        listed = await client.get(f"/v1/accounts/{account}/balances", headers=SERVER)
        assert (listed.status_code, listed.json()["error"]["code"]) == (404, "account_not_found")
    unknown = await post(client, ada, 5, currency="gold")
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "unknown_currency")
    read = await client.get("/v1/me/balances/gold/transactions", headers=bearer(session))
    assert (read.status_code, read.json()["error"]["code"]) == (404, "unknown_currency")
    # The server key is needed to post or read someone's balances; the account's own token is not it.
    assert (await client.post(path(ada), json={"amount": 5}, headers=bearer(session))).status_code == 401
    assert (await client.get(f"/v1/accounts/{ada}/balances")).status_code == 401
    assert (await client.get("/v1/me/balances/credits/transactions")).status_code == 401

    assert (await client.delete("/v1/me", headers=bearer(session))).status_code == 204
    gone = await post(client, ada, 5)
    assert (gone.status_code, gone.json()["error"]["code"]) == (404, "account_not_found")


async def test_the_ledger_pages_newest_first(client: httpx.AsyncClient) -> None:
    session = await register(client, "ada@example.com")
    bob = await register(client, "bob@example.com")
    ada = session["account"]["id"]
    for amount in (1, 2, 3, 4, 5):
        await post(client, ada, amount)
    await post(client, bob["account"]["id"], 9)
    seen: list[int] = []
    after = None
    while True:
        params: dict[str, Any] = {"limit": 2} | ({"after": after} if after else {})
        page = await client.get(
            "/v1/me/balances/credits/transactions", params=params, headers=bearer(session)
        )
        assert page.status_code == 200, page.text
        seen += [row["amount"] for row in page.json()["transactions"]]
        after = page.json()["next"]
        if after is None:
            break
    assert seen == [5, 4, 3, 2, 1]

    bobs = await client.get("/v1/me/balances/credits/transactions", headers=bearer(bob))
    bob_row = bobs.json()["transactions"][0]["id"]
    for params in ({"limit": 0}, {"limit": 201}, {"limit": "x"}, {"after": "nope"}, {"after": bob_row}):
        bad = await client.get("/v1/me/balances/credits/transactions", params=params, headers=bearer(session))
        assert bad.status_code == 422, (params, bad.text)


async def test_balance_changes_reach_subscribed_endpoints(
    client: httpx.AsyncClient, context: AppContext
) -> None:
    created = await client.post(
        "/v1/webhook-endpoints",
        json={"url": "http://127.0.0.1:9/hook", "event_types": ["balance.changed"]},
        headers=SERVER,
    )
    assert created.status_code == 201, created.text
    ada = (await register(client, "ada@example.com"))["account"]["id"]
    await post(client, ada, 40, reason="welcome")
    async with context.database.sessionmaker() as db:
        [delivery] = list(await db.scalars(select(WebhookDelivery)))
    assert delivery.event_type == "balance.changed"
    data = delivery.payload["data"]
    assert (data["account_id"], data["amount"], data["balance"], data["reason"]) == (ada, 40, 40, "welcome")
    assert "external_id" in data


async def test_a_spend_is_pushed_on_the_accounts_stream(live_server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=live_server.url) as http:
        session = await register(http, "stream@example.com")
        ada = session["account"]["id"]
        async with stream(http, headers=bearer(session)) as events:
            assert (await events.next())["data"]["balances"] == {"credits": 0}
            assert (await post(http, ada, 25)).status_code == 201
            pushed = await events.next()
            assert pushed["data"]["balances"] == {"credits": 25}
            current = await http.get("/v1/me/entitlements", headers=bearer(session))
            assert pushed["data"] == current.json() and f'"{pushed["id"]}"' == current.headers["etag"]
