"""GET /v1/events: every account's events, in order, paged by cursor, for backends that pull."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import select

from entitle.context import AppContext
from entitle.core.models.events import AccountEvent
from entitle.services.delivery.events_feed import Cursor
from tests.conftest import ADMIN_KEY
from tests.factories import register

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


async def settle(context: AppContext) -> None:
    """Let every event so far be old enough to be served (the feed holds back the last seconds)."""
    async with context.database.transaction() as db:
        for event in await db.scalars(select(AccountEvent)):
            event.created_at -= timedelta(minutes=1)


async def test_the_feed_pages_every_accounts_events_in_order(
    client: httpx.AsyncClient, context: AppContext
) -> None:
    ada = await register(client, "ada@example.com")
    bob = await register(client, "bob@example.com")
    await client.delete("/v1/me", headers={"Authorization": f"Bearer {ada['access_token']}"})
    # Too recent to be served yet: a transaction that began earlier could still commit an older event.
    fresh = (await client.get("/v1/events", headers=ADMIN)).json()
    assert fresh == {"events": [], "next": None}
    await settle(context)

    first = (await client.get("/v1/events", params={"limit": 2}, headers=ADMIN)).json()
    assert [(e["type"], e["account_id"]) for e in first["events"]] == [
        ("account.created", ada["account"]["id"]),
        ("account.created", bob["account"]["id"]),
    ]
    rest = (await client.get("/v1/events", params={"after": first["next"]}, headers=ADMIN)).json()
    assert [e["type"] for e in rest["events"]][-1] == "account.deleted"
    assert all(e["account_id"] == ada["account"]["id"] for e in rest["events"])
    # Caught up: nothing new, and the cursor stays where it was.
    empty = (await client.get("/v1/events", params={"after": rest["next"]}, headers=ADMIN)).json()
    assert empty == {"events": [], "next": rest["next"]}

    await register(client, "cyd@example.com")
    await settle(context)
    newer = (await client.get("/v1/events", params={"after": rest["next"]}, headers=ADMIN)).json()
    assert [e["type"] for e in newer["events"]] == ["account.created"]

    deleted = (await client.get("/v1/events", params={"type": "account.deleted"}, headers=ADMIN)).json()
    assert [e["type"] for e in deleted["events"]] == ["account.deleted"]
    prefixed = (await client.get("/v1/events", params={"type": "account.*"}, headers=ADMIN)).json()
    assert {e["type"] for e in prefixed["events"]} == {"account.created", "account.deleted"}


async def test_a_bad_cursor_is_a_422(client: httpx.AsyncClient) -> None:
    for cursor in ("nonsense", "bm9ufGNlbnNl", "x" * 300):
        response = await client.get("/v1/events", params={"after": cursor}, headers=ADMIN)
        assert response.status_code == 422, response.text


async def test_a_cursor_at_the_ends_of_the_calendar_is_a_422(client: httpx.AsyncClient) -> None:
    for moment in (datetime(1, 1, 1, tzinfo=UTC), datetime(9999, 12, 31, 23, 59, tzinfo=UTC)):
        cursor = Cursor(created_at=moment, event_id=uuid.uuid4()).encode()
        response = await client.get("/v1/events", params={"after": cursor}, headers=ADMIN)
        assert response.status_code == 422, response.text
        assert response.json()["error"]["code"] == "invalid_cursor"
