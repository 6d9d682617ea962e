"""Outbound webhooks: Standard Webhooks signatures, a delivery log, retries, test events, per-account
order, disabled endpoints, and URLs that may not reach inside the deployment."""

from __future__ import annotations

import http.server
import json
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update
from standardwebhooks import Webhook, WebhookVerificationError

from entitle.context import AppContext
from entitle.core.models.events import DeliveryStatus, WebhookDelivery, WebhookEndpoint
from entitle.db.types import utcnow
from entitle.services.delivery import outbound
from entitle.services.delivery.endpoint_urls import BlockedURL, check_url
from entitle.services.delivery.outbound import MAX_ATTEMPTS, deliver_due
from tests.conftest import ADMIN_KEY
from tests.factories import SHORT_LEASE, register, run_two_workers


class Receiver:
    """A real HTTP endpoint on loopback that records what it receives and answers as told."""

    def __init__(self) -> None:
        self.received: list[tuple[bytes, dict[str, str]]] = []
        self.answers: list[int] = []
        # Seconds the receiver takes to answer each message (a slow backend).
        self.delay = 0.0
        # The body of every answer (Slack says why it refused in a word: `invalid_token`).
        self.words = ""
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                time.sleep(receiver.delay)
                receiver.received.append((body, {k.lower(): v for k, v in self.headers.items()}))
                self.send_response(receiver.answers.pop(0) if receiver.answers else 200)
                words = receiver.words.encode()
                self.send_header("Content-Length", str(len(words)))
                self.end_headers()
                self.wfile.write(words)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def types(self) -> list[str]:
        return [json.loads(body)["type"] for body, _ in self.received]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.close()


@pytest.fixture
async def sender() -> Any:
    async with httpx.AsyncClient() as http_client:
        yield http_client


ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


async def create_endpoint(
    client: httpx.AsyncClient, url: str, types: list[str] | None = None
) -> dict[str, Any]:
    response = await client.post(
        "/v1/webhook-endpoints", json={"url": url, "event_types": types or []}, headers=ADMIN
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def make_due(context: AppContext) -> None:
    """Time passes: every pending delivery's retry time has come."""
    async with context.database.transaction() as db:
        await db.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.status == DeliveryStatus.PENDING)
            .values(next_attempt_at=utcnow() - timedelta(seconds=1))
        )


async def test_account_events_reach_subscribed_endpoints_in_standard_webhooks_format(
    client: httpx.AsyncClient, context: AppContext, receiver: Receiver, sender: httpx.AsyncClient
) -> None:
    endpoint = await create_endpoint(client, receiver.url, ["account.*"])
    assert endpoint["secret"].startswith("whsec_")
    await create_endpoint(client, receiver.url + "/other", ["entitlement.granted"])

    session = await register(client, "ada@example.com")
    assert receiver.received == []  # nothing is sent from inside the request

    assert await deliver_due(context.database, sender, development=True) == 1
    [(body, headers)] = receiver.received
    # What a receiver does with the ready library: verify, then trust the body.
    payload = Webhook(endpoint["secret"]).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "A" * 32).verify(body, headers)
    assert headers["webhook-id"].startswith("msg_")
    assert set(payload) == {"type", "timestamp", "data"}
    assert payload["type"] == "account.created"
    assert payload["data"]["account_id"] == session["account"]["id"]
    assert "external_id" in payload["data"]


async def test_a_failed_delivery_is_retried_with_the_same_webhook_id_and_logged(
    client: httpx.AsyncClient, context: AppContext, receiver: Receiver, sender: httpx.AsyncClient
) -> None:
    endpoint = await create_endpoint(client, receiver.url)
    receiver.answers = [500]
    await register(client)
    await deliver_due(context.database, sender, development=True)
    log = (await client.get(f"/v1/webhook-endpoints/{endpoint['id']}/deliveries", headers=ADMIN)).json()
    [delivery] = log["deliveries"]
    assert delivery["status"] == "pending" and delivery["attempts"] == 1
    assert delivery["response_code"] == 500 and delivery["last_error"] == "the endpoint answered 500"
    assert delivery["next_attempt_at"] is not None
    # Not due yet: nothing is sent.
    assert await deliver_due(context.database, sender, development=True) == 0
    await make_due(context)
    assert await deliver_due(context.database, sender, development=True) == 1
    first, second = receiver.received
    assert first[1]["webhook-id"] == second[1]["webhook-id"] == delivery["webhook_id"]
    log = (await client.get(f"/v1/webhook-endpoints/{endpoint['id']}/deliveries", headers=ADMIN)).json()
    assert log["deliveries"][0]["status"] == "delivered" and log["deliveries"][0]["attempts"] == 2
    assert log["deliveries"][0]["response_code"] == 200


async def test_retry_and_test_send_now(
    client: httpx.AsyncClient, context: AppContext, receiver: Receiver, sender: httpx.AsyncClient
) -> None:
    # Subscribed to nothing a test event matches: `webhook.test` goes anyway.
    endpoint = await create_endpoint(client, receiver.url, ["entitlement.granted"])
    tested = await client.post(f"/v1/webhook-endpoints/{endpoint['id']}/test", headers=ADMIN)
    assert tested.status_code == 200, tested.text
    assert tested.json()["status"] == "delivered" and tested.json()["event_type"] == "webhook.test"
    assert receiver.types() == ["webhook.test"]
    Webhook(endpoint["secret"]).verify(*receiver.received[0])

    retried = await client.post(
        f"/v1/webhook-endpoints/{endpoint['id']}/deliveries/{tested.json()['id']}/retry", headers=ADMIN
    )
    assert retried.status_code == 200 and retried.json()["attempts"] == 2
    assert receiver.received[0][1]["webhook-id"] == receiver.received[1][1]["webhook-id"]

    missing = await client.post(
        f"/v1/webhook-endpoints/{endpoint['id']}/deliveries/{uuid.uuid4()}/retry", headers=ADMIN
    )
    assert missing.status_code == 404
    assert (await client.post(f"/v1/webhook-endpoints/{uuid.uuid4()}/test", headers=ADMIN)).status_code == 404


async def test_two_workers_and_a_slow_receiver_send_each_message_once(
    client: httpx.AsyncClient, context: AppContext, receiver: Receiver, sender: httpx.AsyncClient
) -> None:
    endpoint = await create_endpoint(client, receiver.url)
    async with context.database.transaction() as db:
        row = await outbound.find_endpoint(db, uuid.UUID(endpoint["id"]))
        queued = [outbound.message_id(await outbound.queue_test(db, row)) for _ in range(20)]
    await make_due(context)

    async def pending() -> int:
        async with context.database.sessionmaker() as db:
            query = select(func.count()).where(WebhookDelivery.status == DeliveryStatus.PENDING)
            return int(await db.scalar(query) or 0)

    receiver.delay = 0.1
    await run_two_workers(
        lambda: deliver_due(context.database, sender, development=True, lease=SHORT_LEASE), pending
    )
    assert sorted(headers["webhook-id"] for _, headers in receiver.received) == sorted(queued)


async def test_disabled_endpoints_get_nothing(
    client: httpx.AsyncClient, context: AppContext, receiver: Receiver, sender: httpx.AsyncClient
) -> None:
    endpoint = await create_endpoint(client, receiver.url)
    await register(client, "queued@example.com")  # queued while the endpoint was live
    assert (await client.delete(f"/v1/webhook-endpoints/{endpoint['id']}", headers=ADMIN)).status_code == 204
    await register(client, "after@example.com")
    assert await deliver_due(context.database, sender, development=True) == 0
    assert receiver.received == []
    async with context.database.sessionmaker() as db:
        [delivery] = list(await db.scalars(select(WebhookDelivery)))
    assert delivery.status == "canceled"
    # Not even by hand.
    for path in (f"deliveries/{delivery.id}/retry", "test"):
        refused = await client.post(f"/v1/webhook-endpoints/{endpoint['id']}/{path}", headers=ADMIN)
        assert refused.status_code == 409 and refused.json()["error"]["code"] == "webhook_endpoint_disabled"
    assert receiver.received == []


async def test_an_accounts_messages_go_out_in_order_one_at_a_time(
    client: httpx.AsyncClient, context: AppContext, receiver: Receiver, sender: httpx.AsyncClient
) -> None:
    await create_endpoint(client, receiver.url)
    ada = await register(client, "ada@example.com")
    bob = await register(client, "bob@example.com")
    # A second event for Ada, after her account.created.
    await client.delete("/v1/me", headers={"Authorization": f"Bearer {ada['access_token']}"})
    receiver.answers = [503]  # Ada's first message fails
    assert await deliver_due(context.database, sender, development=True) == 2  # Ada's first, Bob's
    sent = [
        (json.loads(body)["type"], json.loads(body)["data"]["account_id"]) for body, _ in receiver.received
    ]
    assert sent == [("account.created", ada["account"]["id"]), ("account.created", bob["account"]["id"])]
    # Ada's deletion waits behind her failed creation, even when its own time has come.
    assert await deliver_due(context.database, sender, development=True) == 0
    await make_due(context)
    assert await deliver_due(context.database, sender, development=True) == 1
    assert await deliver_due(context.database, sender, development=True) == 1
    assert receiver.types()[2:] == ["account.created", "account.deleted"]


async def test_an_endpoint_failing_every_retry_is_given_up_and_disabled(
    client: httpx.AsyncClient, context: AppContext, receiver: Receiver, sender: httpx.AsyncClient
) -> None:
    endpoint = await create_endpoint(client, receiver.url)
    receiver.answers = [500] * MAX_ATTEMPTS
    await register(client)
    for _ in range(MAX_ATTEMPTS):
        await make_due(context)
        assert await deliver_due(context.database, sender, development=True) == 1
    [listed] = (await client.get("/v1/webhook-endpoints", headers=ADMIN)).json()["webhook_endpoints"]
    assert listed["disabled_at"] is not None and "every retry" in listed["disabled_reason"]
    log = (await client.get(f"/v1/webhook-endpoints/{endpoint['id']}/deliveries", headers=ADMIN)).json()
    assert log["deliveries"][0]["status"] == "failed"
    assert log["deliveries"][0]["attempts"] == MAX_ATTEMPTS
    await register(client, "later@example.com")
    await make_due(context)
    assert await deliver_due(context.database, sender, development=True) == 0


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/hooks",
        "https://127.0.0.1/hooks",
        "https://10.1.2.3/hooks",
        "https://192.168.0.10/hooks",
        "https://169.254.169.254/latest/meta-data",
        "https://metadata.google.internal/computeMetadata",
        "https://[::1]/hooks",
        "https://[fd00:ec2::254]/hooks",
        "https://[::ffff:10.0.0.1]/hooks",
        "https://0.0.0.0/hooks",
    ],
)
def test_production_refuses_insecure_and_internal_urls(url: str) -> None:
    with pytest.raises(BlockedURL):
        check_url(url, development=False)


def test_development_allows_http_and_loopback_but_not_private_networks() -> None:
    assert check_url("http://127.0.0.1:9000/hooks", development=True) == ("127.0.0.1", 9000)
    assert check_url("https://hooks.example.com/x", development=False) == ("hooks.example.com", 443)
    for url in ("http://10.0.0.1/x", "http://169.254.169.254/x"):
        with pytest.raises(BlockedURL):
            check_url(url, development=True)


async def test_the_url_is_checked_again_at_delivery_after_resolving(
    client: httpx.AsyncClient, context: AppContext, receiver: Receiver, sender: httpx.AsyncClient
) -> None:
    """A name that passed at creation but resolves to loopback is refused when it is time to send."""
    await register(client)
    async with context.database.transaction() as db:
        # Created outside the API, as if its name had resolved elsewhere when it was registered.
        endpoint = WebhookEndpoint(
            url=receiver.url.replace("http://127.0.0.1", "https://localhost"),
            secret=outbound.new_endpoint_secret(),
        )
        db.add(endpoint)
        await db.flush()
        delivery = await outbound.queue_test(db, endpoint)
    sent = await outbound.send_delivery(context.database, sender, delivery.id, development=False)
    assert sent is not None and sent.status == "pending" and sent.response_code is None
    assert sent.last_error is not None and "not a public address" in sent.last_error
    assert receiver.received == []


async def test_production_refuses_a_name_that_resolves_to_loopback_at_creation() -> None:
    from entitle.services.delivery.endpoint_urls import check_new_url

    with pytest.raises(BlockedURL, match="not a public address"):
        await check_new_url("https://localhost/hooks", development=False)
    # A name that does not resolve yet is accepted; each delivery checks it again.
    await check_new_url("https://hooks.invalid/x", development=False)


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
    private = await client.post("/v1/webhook-endpoints", json={"url": "http://10.0.0.8/x"}, headers=ADMIN)
    assert private.status_code == 422 and private.json()["error"]["code"] == "webhook_url_not_allowed"
    created = await create_endpoint(client, receiver.url)
    assert (
        "secret"
        not in (await client.get("/v1/webhook-endpoints", headers=ADMIN)).json()["webhook_endpoints"][0]
    )
    assert (await client.delete(f"/v1/webhook-endpoints/{created['id']}", headers=ADMIN)).status_code == 204
    assert (await client.delete("/v1/webhook-endpoints/not-a-uuid", headers=ADMIN)).status_code == 404
    for path in (f"/v1/webhook-endpoints/{created['id']}/deliveries", "/v1/events", "/metrics"):
        assert (await client.get(path)).status_code == 401


async def test_https_deliveries_go_to_the_checked_address_and_verify_the_name(
    client: httpx.AsyncClient, context: AppContext, tmp_path: Any
) -> None:
    """The connection is pinned to the resolved address, and TLS still checks the certificate's name."""
    import datetime as dt
    import ssl

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        # Only the name: a connection that checked the certificate against the IP would fail.
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    receiver = Receiver()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert_path, key_path)
    receiver.server.socket = server_context.wrap_socket(receiver.server.socket, server_side=True)
    port = receiver.server.server_address[1]
    try:
        endpoint = await create_endpoint(client, f"https://localhost:{port}/hooks")
        async with httpx.AsyncClient(verify=ssl.create_default_context(cafile=str(cert_path))) as sender:
            tested = await outbound.send_test(
                context.database, sender, uuid.UUID(endpoint["id"]), development=True
            )
        assert tested.status == "delivered", tested.last_error
        [(body, headers)] = receiver.received
        assert headers["host"] == f"localhost:{port}"
        Webhook(endpoint["secret"]).verify(body, headers)
    finally:
        receiver.close()
