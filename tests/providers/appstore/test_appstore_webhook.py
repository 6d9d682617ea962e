"""POST /webhooks/appstore end to end: verification, the inbox, ordering, and each kind of notification."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select

from entitle.context import AppContext
from entitle.core.models.events import ProviderEvent
from entitle.db.engine import Database
from entitle.providers.appstore.provider import AppStoreProvider
from entitle.services.delivery.inbox import StorageUnavailable
from entitle.services.delivery.pipeline import EventPipeline
from tests.conftest import LiveServer
from tests.factories import bearer, eventually, register
from tests.standins.appstore import AppStoreSigner, Notification, SubscriptionSimulator

URL = "/webhooks/appstore"


async def _account(client: httpx.AsyncClient, email: str) -> tuple[dict[str, str], str]:
    session = await register(client, email)
    return bearer(session), session["account"]["app_account_token"]


def _simulator(
    signer: AppStoreSigner, token: str | None, original: str = "3000000000000001"
) -> SubscriptionSimulator:
    # Started 10 days ago: the first period is still running now.
    return SubscriptionSimulator(
        signer=signer,
        original_transaction_id=original,
        product_id="com.example.app.pro.monthly",
        app_account_token=token,
        start=dt.datetime.now(dt.UTC) - dt.timedelta(days=10),
    )


async def _deliver(client: httpx.AsyncClient, note: Notification) -> dict[str, Any]:
    response = await client.post(URL, json=note.body)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def _subscription(client: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, Any]:
    body = (await client.get("/v1/me/entitlements", headers=headers)).json()
    [subscription] = body["subscriptions"]
    return {"pro": body["entitlements"]["pro"]["active"], **subscription}


async def test_subscribed_notification_entitles_the_account_by_token(
    client: httpx.AsyncClient, signer: AppStoreSigner
) -> None:
    headers, token = await _account(client, "n1@example.com")
    body = await _deliver(client, _simulator(signer, token).subscribe())
    assert body == {"received": True, "duplicate": False, "status": "pending"}
    state = await _subscription(client, headers)
    assert state["pro"] is True and state["status"] == "active"


async def test_apple_retry_is_stored_once(
    client: httpx.AsyncClient, signer: AppStoreSigner, context: AppContext
) -> None:
    _, token = await _account(client, "n2@example.com")
    note = _simulator(signer, token).subscribe()
    await _deliver(client, note)
    assert (await _deliver(client, note))["duplicate"] is True
    async with context.database.sessionmaker() as db:
        rows = (await db.scalars(select(ProviderEvent).where(ProviderEvent.provider == "app_store"))).all()
    assert [(r.event_id, r.status, r.ordering_key) for r in rows] == [
        (note.notification_uuid, "processed", "3000000000000001")
    ]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"not json", "invalid_notification"),
        (b'{"other": 1}', "invalid_notification"),
        (b'{"signedPayload": "a.b.c"}', "invalid_signed_data"),
    ],
)
async def test_malformed_bodies_are_refused(client: httpx.AsyncClient, body: bytes, code: str) -> None:
    response = await client.post(URL, content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code


async def test_forged_and_foreign_notifications_are_refused(
    client: httpx.AsyncClient, signer: AppStoreSigner, chain: Any
) -> None:
    payload = signer.notification("TEST", signed_date=1_700_000_000_000)
    forged = signer.sign(payload, key=ec.generate_private_key(ec.SECP256R1()))
    other_app = AppStoreSigner(chain, bundle_id="com.example.other").signed_notification(
        "TEST", signed_date=1_700_000_000_000
    )
    for signed, code in ((forged, "invalid_signed_data"), (other_app, "signed_data_wrong_app")):
        response = await client.post(URL, json={"signedPayload": signed})
        assert response.status_code == 400 and response.json()["error"]["code"] == code


async def test_older_notification_never_overwrites_newer(
    client: httpx.AsyncClient, signer: AppStoreSigner
) -> None:
    headers, token = await _account(client, "n3@example.com")
    sim = _simulator(signer, token)
    subscribed, disabled = sim.subscribe(), sim.set_auto_renew(False)
    await _deliver(client, disabled)
    await _deliver(client, subscribed)  # arrives late
    state = await _subscription(client, headers)
    assert (state["status"], state["will_renew"], state["pro"]) == ("canceled_at_period_end", False, True)


async def test_grace_period_keeps_access_billing_retry_does_not(
    client: httpx.AsyncClient, signer: AppStoreSigner
) -> None:
    headers, token = await _account(client, "n4@example.com")
    sim = _simulator(signer, token)
    sim.start = dt.datetime.now(dt.UTC) - dt.timedelta(days=31)
    sim.__post_init__()
    await _deliver(client, sim.subscribe())
    await _deliver(client, sim.fail_to_renew(grace=True))
    state = await _subscription(client, headers)
    assert (state["status"], state["pro"]) == ("in_grace_period", True)
    assert state["grace_period_ends_at"] is not None
    await _deliver(client, sim.grace_period_expired())
    state = await _subscription(client, headers)
    assert (state["status"], state["pro"]) == ("in_billing_retry", False)
    await _deliver(client, sim.renew())  # BILLING_RECOVERY
    assert (await _subscription(client, headers))["status"] == "active"


async def test_failed_renewal_without_grace_is_billing_retry(
    client: httpx.AsyncClient, signer: AppStoreSigner
) -> None:
    headers, token = await _account(client, "n5@example.com")
    sim = _simulator(signer, token)
    sim.start = dt.datetime.now(dt.UTC) - dt.timedelta(days=31)
    sim.__post_init__()
    await _deliver(client, sim.subscribe())
    await _deliver(client, sim.fail_to_renew(grace=False))
    state = await _subscription(client, headers)
    assert (state["status"], state["pro"]) == ("in_billing_retry", False)
    await _deliver(client, sim.expire("BILLING_RETRY"))
    assert (await _subscription(client, headers))["status"] == "expired"


async def test_refund_revokes_and_reversal_restores(
    client: httpx.AsyncClient, signer: AppStoreSigner
) -> None:
    headers, token = await _account(client, "n6@example.com")
    sim = _simulator(signer, token)
    await _deliver(client, sim.subscribe())
    await _deliver(client, sim.refund())
    state = await _subscription(client, headers)
    assert (state["status"], state["pro"]) == ("revoked", False)
    events = (await client.get("/v1/me/events", params={"type": "appstore.refunded"}, headers=headers)).json()
    assert events["total"] == 1
    await _deliver(client, sim.refund_reversed())
    assert (await _subscription(client, headers))["pro"] is True


async def test_family_sharing_revoke(
    client: httpx.AsyncClient, signer: AppStoreSigner, context: AppContext
) -> None:
    headers, _ = await _account(client, "member@example.com")
    sim = _simulator(signer, None, original="3000000000000077")
    sim.ownership = "FAMILY_SHARED"
    # The family member's app posts its shared transaction first, then Apple revokes it.
    shared = sim.current_transaction()
    response = await client.post(
        "/v1/billing/appstore/transactions", json={"signed_transaction": signer.sign(shared)}, headers=headers
    )
    assert response.status_code == 200 and response.json()["entitlements"]["pro"]["active"] is True
    await _deliver(client, sim.family_revoke())
    state = await _subscription(client, headers)
    assert (state["status"], state["pro"]) == ("revoked", False)


async def test_upgrade_applies_now_downgrade_at_renewal(
    client: httpx.AsyncClient, signer: AppStoreSigner
) -> None:
    headers, token = await _account(client, "n7@example.com")
    sim = _simulator(signer, token)
    await _deliver(client, sim.subscribe())
    await _deliver(client, sim.upgrade())
    assert (await _subscription(client, headers))["product"] == "pro_yearly"
    await _deliver(client, sim.downgrade())
    assert (await _subscription(client, headers))["product"] == "pro_yearly"
    await _deliver(client, sim.renew())
    assert (await _subscription(client, headers))["product"] == "pro_monthly"


@pytest.mark.parametrize("kind", ["TEST", "CONSUMPTION_REQUEST", "RENEWAL_EXTENSION", "SOMETHING_NEW"])
async def test_record_only_and_unknown_types_are_acknowledged(
    client: httpx.AsyncClient, signer: AppStoreSigner, context: AppContext, kind: str
) -> None:
    signed = signer.signed_notification(kind, signed_date=1_700_000_000_000)
    response = await client.post(URL, json={"signedPayload": signed})
    assert response.status_code == 200 and response.json()["status"] == "pending"
    async with context.database.sessionmaker() as db:
        row = await db.scalar(select(ProviderEvent).where(ProviderEvent.type == kind))
    assert row is not None and row.status == "processed" and row.outcome is not None


async def test_consumption_request_is_recorded_for_the_owner(
    client: httpx.AsyncClient, signer: AppStoreSigner
) -> None:
    headers, token = await _account(client, "n8@example.com")
    sim = _simulator(signer, token)
    await _deliver(client, sim.subscribe())
    note = signer.signed_notification(
        "CONSUMPTION_REQUEST",
        signed_date=sim.clock + 1000,
        transaction=sim.current_transaction(),
        data_overrides={"consumptionRequestReason": "UNINTENDED_PURCHASE"},
    )
    assert (await client.post(URL, json={"signedPayload": note})).status_code == 200
    events = (await client.get("/v1/me/events", params={"type": "appstore.*"}, headers=headers)).json()[
        "events"
    ]
    assert any(e["data"].get("reason") == "UNINTENDED_PURCHASE" for e in events)


async def test_storage_failure_answers_5xx_so_apple_retries(
    context: AppContext, signer: AppStoreSigner
) -> None:
    provider: AppStoreProvider = context.providers["app_store"]
    # Nothing listens on port 1: the connection is refused at once. (A SQLite file in a missing folder
    # fails too, but aiosqlite's worker thread can outlive the test's event loop.)
    broken = Database("postgresql://postgres@127.0.0.1:1/unreachable")
    pipeline = EventPipeline(broken, {"app_store": provider})
    body = (
        b'{"signedPayload": "'
        + signer.signed_notification("TEST", signed_date=1_700_000_000_000).encode()
        + b'"}'
    )
    try:
        with pytest.raises(StorageUnavailable) as raised:
            await pipeline.ingest(provider, body, {})
        assert raised.value.status_code == 503
    finally:
        await broken.dispose()


async def test_end_to_end_through_a_real_server(live_server: LiveServer, signer: AppStoreSigner) -> None:
    async with httpx.AsyncClient(base_url=live_server.url) as http:
        session = await register(http, f"live-{uuid.uuid4().hex[:6]}@example.com")
        sim = _simulator(signer, session["account"]["app_account_token"], original="3000000000000099")
        purchase = sim.subscribe()
        posted = await http.post(
            "/v1/billing/appstore/transactions",
            json={"signed_transaction": signer.sign(purchase.transaction)},
            headers=bearer(session),
        )
        assert posted.status_code == 200 and posted.json()["entitlements"]["pro"]["active"] is True
        assert (await http.post(URL, json=sim.expire("VOLUNTARY").body)).status_code == 200

        async def expired() -> Any:
            answer = (await http.get("/v1/me/entitlements", headers=bearer(session))).json()
            return answer if answer["entitlements"]["pro"]["active"] is False else None

        answer = await eventually(expired)
        assert answer["subscriptions"][0]["status"] == "expired"
