"""The signed-in account, its event log, and deleting it."""

from __future__ import annotations

import httpx
from sqlalchemy import select

from entitle.context import AppContext
from entitle.core.models.accounts import Account
from entitle.core.models.events import AccountEvent
from tests.factories import DEFAULT_PASSWORD, bearer, register


async def test_me_shows_identities_and_app_account_token(client: httpx.AsyncClient) -> None:
    session = await register(client, "ada@example.com")
    me = (await client.get("/v1/me", headers=bearer(session))).json()
    assert me["id"] == session["account"]["id"]
    assert me["app_account_token"] == session["account"]["app_account_token"]
    assert me["identities"][0]["provider"] == "email"
    assert me["identities"][0]["email_verified"] is False


async def test_event_log_pages_and_filters(client: httpx.AsyncClient, context: AppContext) -> None:
    session = await register(client)
    async with context.database.transaction() as db:
        account_id = (await db.scalars(select(Account.id))).one()
        for i in range(5):
            db.add(AccountEvent(account_id=account_id, type="entitlement.granted", data={"n": i}))
    everything = (await client.get("/v1/me/events", headers=bearer(session))).json()
    assert everything["total"] == 6
    assert {e["type"] for e in everything["events"]} == {"account.created", "entitlement.granted"}
    page = (await client.get("/v1/me/events?limit=2&offset=1", headers=bearer(session))).json()
    assert len(page["events"]) == 2 and page["total"] == 6
    created = (await client.get("/v1/me/events?type=account.created", headers=bearer(session))).json()
    assert [e["type"] for e in created["events"]] == ["account.created"]
    prefixed = (await client.get("/v1/me/events?type=entitlement.*", headers=bearer(session))).json()
    assert prefixed["total"] == 5


async def test_events_are_scoped_to_the_signed_in_account(client: httpx.AsyncClient) -> None:
    ada = await register(client, "ada@example.com")
    bob = await register(client, "bob@example.com")
    await client.delete("/v1/me", headers=bearer(bob))
    ada_events = (await client.get("/v1/me/events", headers=bearer(ada))).json()["events"]
    assert [e["type"] for e in ada_events] == ["account.created"]


async def test_delete_me_ends_every_way_in_and_keeps_the_record(
    client: httpx.AsyncClient, context: AppContext
) -> None:
    web = await register(client, "ada@example.com")
    phone = (
        await client.post("/v1/auth/login", json={"email": "ada@example.com", "password": DEFAULT_PASSWORD})
    ).json()
    assert (await client.delete("/v1/me", headers=bearer(web))).status_code == 204

    assert (await client.get("/v1/me", headers=bearer(phone))).status_code == 401
    assert (
        await client.post("/v1/auth/refresh", json={"refresh_token": phone["refresh_token"]})
    ).status_code == 401
    login = await client.post(
        "/v1/auth/login", json={"email": "ada@example.com", "password": DEFAULT_PASSWORD}
    )
    assert login.status_code == 401

    async with context.database.sessionmaker() as db:
        account = (await db.scalars(select(Account))).one()
        assert account.deleted_at is not None and account.email is None and account.identities == []
        types = set((await db.scalars(select(AccountEvent.type))).all())
        assert {"account.created", "account.deleted"} <= types

    # The address is free again: a new person may register it and gets a new account.
    again = await register(client, "ada@example.com")
    assert again["account"]["id"] != web["account"]["id"]
