"""Outbound webhooks: queued with the event, signed, delivered by the worker, retried until accepted."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select

from entitle.context import AppContext
from entitle.core.models.events import WebhookDelivery
from entitle.db.types import utcnow
from entitle.services.outbound import SIGNATURE_HEADER, deliver_due, verify_signature
from tests.conftest import ADMIN_KEY
from tests.factories import register


class Receiver:
    """A real HTTP endpoint on loopback that records what it receives and answers as told."""

    def __init__(self) -> None:
        self.received: list[tuple[bytes, str]] = []
        self.answers: list[int] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append((body, self.headers[SIGNATURE_HEADER]))
                self.send_response(receiver.answers.pop(0) if receiver.answers else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.close()


ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


async def test_account_events_reach_subscribed_endpoints_signed(
    client: httpx.AsyncClient, context: AppContext, receiver: Receiver
) -> None:
    created = await client.post(
        "/v1/webhook-endpoints", json={"url": receiver.url, "event_types": ["account.*"]}, headers=ADMIN
    )
    assert created.status_code == 201
    secret = created.json()["secret"]
    ignored = await client.post(
        "/v1/webhook-endpoints",
        json={"url": receiver.url + "/other", "event_types": ["entitlement.granted"]},
        headers=ADMIN,
    )
    assert ignored.status_code == 201

    session = await register(client, "ada@example.com")
    assert receiver.received == []  # nothing is sent from inside the request

    async with httpx.AsyncClient() as http_client:
        assert await deliver_due(context.database, http_client) == 1
    [(body, signature)] = receiver.received
    assert verify_signature(secret, body, signature)
    assert not verify_signature("whsec_wrong", body, signature)
    payload = json.loads(body)
    assert payload["type"] == "account.created"
    assert payload["account_id"] == session["account"]["id"]


async def test_failed_delivery_is_retried_with_backoff(
    client: httpx.AsyncClient, context: AppContext, receiver: Receiver
) -> None:
    await client.post("/v1/webhook-endpoints", json={"url": receiver.url}, headers=ADMIN)
    receiver.answers = [500]
    await register(client)
    async with httpx.AsyncClient() as http_client:
        await deliver_due(context.database, http_client)
        async with context.database.sessionmaker() as db:
            delivery = (await db.scalars(select(WebhookDelivery))).one()
            assert delivery.status == "pending" and delivery.attempts == 1
            assert delivery.last_error == "endpoint answered 500"
            assert delivery.next_attempt_at is not None and delivery.next_attempt_at > utcnow()
        # Not due yet: nothing is sent.
        assert await deliver_due(context.database, http_client) == 0
        async with context.database.transaction() as db:
            delivery = (await db.scalars(select(WebhookDelivery))).one()
            delivery.next_attempt_at = utcnow() - timedelta(seconds=1)
        assert await deliver_due(context.database, http_client) == 1
    assert len(receiver.received) == 2
    async with context.database.sessionmaker() as db:
        delivery = (await db.scalars(select(WebhookDelivery))).one()
        assert delivery.status == "delivered" and delivery.attempts == 2


async def test_endpoints_need_the_server_key(client: httpx.AsyncClient, receiver: Receiver) -> None:
    session = await register(client)
    as_person = await client.post(
        "/v1/webhook-endpoints",
        json={"url": receiver.url},
        headers={"Authorization": f"Bearer {session['access_token']}"},
    )
    assert as_person.status_code == 401
    assert (await client.get("/v1/webhook-endpoints")).status_code == 401
    bad_url = await client.post("/v1/webhook-endpoints", json={"url": "ftp://example.com"}, headers=ADMIN)
    assert bad_url.status_code == 422
    created = (await client.post("/v1/webhook-endpoints", json={"url": receiver.url}, headers=ADMIN)).json()
    assert (
        "secret"
        not in (await client.get("/v1/webhook-endpoints", headers=ADMIN)).json()["webhook_endpoints"][0]
    )
    assert (await client.delete(f"/v1/webhook-endpoints/{created['id']}", headers=ADMIN)).status_code == 204
    assert (await client.delete("/v1/webhook-endpoints/not-a-uuid", headers=ADMIN)).status_code == 404
