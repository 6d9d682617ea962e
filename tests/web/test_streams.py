"""Changes pushed to clients: the ETag on the signed-in read, and the entitlements stream over real HTTP."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.conftest import ADMIN_KEY, LiveServer
from tests.factories import bearer, eventually, register

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


def in_seconds(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


class EventStream:
    """A Server-Sent Events reader, as a browser's EventSource parses the wire format."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.lines = response.aiter_lines()
        self.comments: list[str] = []

    async def next(self, timeout: float = 10.0) -> dict[str, Any]:
        """The next event: {"event", "id", "data"}; comments (heartbeats) are collected on the side."""
        event: dict[str, Any] = {}
        async with asyncio.timeout(timeout):
            async for line in self.lines:
                if line == "":
                    if "data" in event or "event" in event:
                        return event
                    continue
                if line.startswith(":"):
                    self.comments.append(line)
                    continue
                field, _, value = line.partition(": ")
                if field == "data":
                    event["data"] = json.loads(value)
                elif field in ("event", "id"):
                    event[field] = value
        raise AssertionError("the stream ended")


@asynccontextmanager
async def stream(http: httpx.AsyncClient, **request: Any) -> AsyncIterator[EventStream]:
    async with http.stream("GET", "/v1/me/entitlements/stream", timeout=30, **request) as response:
        assert response.status_code == 200, (await response.aread()).decode()
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["x-accel-buffering"] == "no"
        yield EventStream(response)


async def test_the_signed_in_read_has_an_etag_that_changes_with_the_answer(client: httpx.AsyncClient) -> None:
    session = await register(client, "etag@example.com")
    first = await client.get("/v1/me/entitlements", headers=bearer(session))
    etag = first.headers["etag"]
    assert first.status_code == 200 and etag.startswith('"')

    unchanged = await client.get("/v1/me/entitlements", headers={**bearer(session), "If-None-Match": etag})
    assert unchanged.status_code == 304 and unchanged.content == b"" and unchanged.headers["etag"] == etag
    assert (
        await client.get("/v1/me/entitlements", headers={**bearer(session), "If-None-Match": '"x"'})
    ).status_code == 200

    granted = await client.post(
        f"/v1/accounts/{session['account']['id']}/grants",
        json={"entitlement": "pro", "expires_at": in_seconds(3600)},
        headers=ADMIN,
    )
    assert granted.status_code == 201
    changed = await client.get("/v1/me/entitlements", headers={**bearer(session), "If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["etag"] != etag
    assert changed.json()["entitlements"]["pro"]["active"] is True


async def test_the_signed_in_read_refuses_an_ended_session(client: httpx.AsyncClient) -> None:
    session = await register(client, "ended@example.com")
    assert (await client.post("/v1/auth/logout", headers=bearer(session))).status_code == 204
    refused = await client.get("/v1/me/entitlements", headers=bearer(session))
    assert (refused.status_code, refused.json()["error"]["code"]) == (401, "session_revoked")


async def test_the_stream_sends_the_answer_on_connect_and_after_every_change(live_server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=live_server.url) as http:
        session = await register(http, "stream@example.com")
        account_id = session["account"]["id"]
        async with stream(http, headers=bearer(session)) as events:
            first = await events.next()
            assert first["event"] == "entitlements"
            assert first["data"]["entitlements"]["pro"]["active"] is False
            current = await http.get("/v1/me/entitlements", headers=bearer(session))
            assert first["data"] == current.json() and f'"{first["id"]}"' == current.headers["etag"]

            grant = await http.post(
                f"/v1/accounts/{account_id}/grants",
                json={"entitlement": "pro", "expires_at": in_seconds(3600)},
                headers=ADMIN,
            )
            assert grant.status_code == 201
            pushed = await events.next()
            assert pushed["data"]["entitlements"]["pro"]["active"] is True
            assert pushed["data"]["entitlements"]["pro"]["store"] == "promotional"

            revoked = await http.delete(
                f"/v1/accounts/{account_id}/grants/{grant.json()['id']}", headers=ADMIN
            )
            assert revoked.status_code == 200
            assert (await events.next())["data"]["entitlements"]["pro"]["active"] is False


async def test_an_answer_that_time_changes_is_pushed_when_it_changes(live_server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=live_server.url) as http:
        session = await register(http, "lapse@example.com")
        grant = await http.post(
            f"/v1/accounts/{session['account']['id']}/grants",
            json={"entitlement": "pro", "expires_at": in_seconds(3)},
            headers=ADMIN,
        )
        assert grant.status_code == 201
        async with stream(http, headers=bearer(session)) as events:
            assert (await events.next())["data"]["entitlements"]["pro"]["active"] is True
            # Nobody writes when the grant runs out: the stream re-reads at that moment by itself.
            assert (await events.next(timeout=10))["data"]["entitlements"]["pro"]["active"] is False


@pytest.mark.parametrize("settings_overrides", [{"stream_heartbeat_seconds": 0.2}])
async def test_idle_streams_get_comment_heartbeats(live_server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=live_server.url) as http:
        session = await register(http, "ping@example.com")
        async with stream(http, headers=bearer(session)) as events:
            await events.next()
            with pytest.raises(TimeoutError):
                await events.next(timeout=1.0)  # nothing changed: no event, only heartbeats
            assert events.comments and set(events.comments) == {": ping"}


async def test_a_browser_opens_the_stream_with_a_single_use_ticket(live_server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=live_server.url) as http:
        session = await register(http, "ticket@example.com")
        issued = await http.post("/v1/me/stream-tickets", headers=bearer(session))
        assert issued.status_code == 201 and issued.json()["expires_in"] == 60
        ticket = issued.json()["ticket"]
        async with stream(http, params={"ticket": ticket}) as events:
            assert (await events.next())["event"] == "entitlements"
        reused = await http.get("/v1/me/entitlements/stream", params={"ticket": ticket})
        assert (reused.status_code, reused.json()["error"]["code"]) == (401, "invalid_ticket")
        forged = await http.get("/v1/me/entitlements/stream", params={"ticket": "st_" + "A" * 43})
        assert (forged.status_code, forged.json()["error"]["code"]) == (401, "invalid_ticket")
        anonymous = await http.get("/v1/me/entitlements/stream")
        assert anonymous.status_code == 401


async def test_a_stream_ends_when_its_session_ends(live_server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=live_server.url) as http:
        session = await register(http, "bye@example.com")
        async with stream(http, headers=bearer(session)) as events:
            await events.next()
            assert (await http.post("/v1/auth/logout", headers=bearer(session))).status_code == 204
            ended = await events.next()  # told at once, not at the next heartbeat
            assert ended["event"] == "session_ended"
            assert ended["data"]["error"]["code"] == "session_revoked"


@pytest.mark.parametrize("settings_overrides", [{"streams_per_account": 2}])
async def test_streams_per_account_are_bounded_and_a_closed_one_frees_its_place(
    live_server: LiveServer,
) -> None:
    async with httpx.AsyncClient(base_url=live_server.url) as http:
        session = await register(http, "many@example.com")
        async with stream(http, headers=bearer(session)) as one, stream(http, headers=bearer(session)) as two:
            await one.next()
            await two.next()
            third = await http.get("/v1/me/entitlements/stream", headers=bearer(session))
            assert (third.status_code, third.json()["error"]["code"]) == (429, "too_many_streams")
            assert "retry-after" in third.headers

        # Both closed: their places are free again (once the server has seen the connections go).
        async def reopened() -> bool:
            async with http.stream("GET", "/v1/me/entitlements/stream", headers=bearer(session)) as response:
                return response.status_code == 200

        await eventually(reopened, timeout=10)
