"""Signed Stripe events through POST /webhooks/stripe into the real handlers, in every bad order."""

from __future__ import annotations

import json
import random
import time
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from entitle.context import AppContext
from entitle.core.models.entitlements import Subscription
from entitle.core.models.events import AccountEvent, InboxStatus, ProviderEvent
from entitle.db.types import utcnow
from entitle.providers.stripe.models import StripeCustomer
from entitle.providers.stripe.provider import StripeProvider
from entitle.services.access.entitlements import read_entitlements
from tests.providers.stripe.conftest import ROTATED_SECRET, deliver, paid_checkout
from tests.standins.stripe import StripeStandin

pytestmark = pytest.mark.usefixtures("pushed")


async def _row(context: AppContext, sub_id: str) -> Subscription | None:
    async with context.database.sessionmaker() as db:
        return await db.scalar(select(Subscription).where(Subscription.store_subscription_id == sub_id))


async def _answer(context: AppContext, account_id: Any) -> dict[str, Any]:
    async with context.database.sessionmaker() as db:
        return await read_entitlements(db, account_id)


async def test_a_paid_checkout_entitles_after_its_events(
    client: httpx.AsyncClient,
    context: AppContext,
    db: AsyncSession,
    stripe_provider: StripeProvider,
    standin: StripeStandin,
) -> None:
    account, sub_id = await paid_checkout(db, stripe_provider, standin, "paid@example.com")
    for event in standin.events.log:
        response = await deliver(client, standin, event)
        assert response.status_code == 200, response.text
    answer = await _answer(context, account.id)
    pro = answer["entitlements"]["pro"]
    assert pro["active"] is True and pro["store"] == "stripe" and pro["product"] == "pro_monthly"
    row = await _row(context, sub_id)
    assert row is not None and row.status == "active" and row.will_renew is True
    assert row.raw["default_payment_method"]["card"]["last4"] == "4242"


async def test_shuffled_duplicated_and_stale_events_end_in_stripes_truth(
    client: httpx.AsyncClient,
    context: AppContext,
    db: AsyncSession,
    stripe_provider: StripeProvider,
    standin: StripeStandin,
) -> None:
    account, sub_id = await paid_checkout(db, stripe_provider, standin, "shuffle@example.com")
    standin.fail_renewal(sub_id)
    standin.recover(sub_id)
    standin.cancel_at_period_end(sub_id)
    history = list(standin.events.log)
    rng = random.Random(4)
    deliveries = history + rng.sample(history, k=len(history) // 2)
    rng.shuffle(deliveries)
    for event in deliveries:
        assert (await deliver(client, standin, event)).status_code == 200
    row = await _row(context, sub_id)
    assert row is not None and row.status == "canceled_at_period_end" and row.will_renew is False
    async with context.database.sessionmaker() as session:
        stored = await session.scalar(select(func.count()).select_from(ProviderEvent))
    assert stored == len(history)
    # A stale snapshot delivered late (the first "active" update) changes nothing.
    stale = next(e for e in history if e["type"] == "customer.subscription.updated")
    stale = {**stale, "id": "evt_stale_redelivery_1"}
    assert (await deliver(client, standin, stale)).status_code == 200
    after = await _row(context, sub_id)
    assert after is not None and after.status == "canceled_at_period_end"
    assert (await _answer(context, account.id))["entitlements"]["pro"]["will_renew"] is False


async def test_past_due_is_a_grace_period_then_recovery_restores(
    client: httpx.AsyncClient,
    context: AppContext,
    db: AsyncSession,
    stripe_provider: StripeProvider,
    standin: StripeStandin,
) -> None:
    account, sub_id = await paid_checkout(db, stripe_provider, standin, "grace@example.com")
    standin.fail_renewal(sub_id)
    failed = standin.events.of_type("invoice.payment_failed")[-1]
    assert (await deliver(client, standin, failed)).status_code == 200
    row = await _row(context, sub_id)
    assert row is not None and row.status == "in_grace_period" and row.grace_period_ends_at is not None
    assert (await _answer(context, account.id))["entitlements"]["pro"]["active"] is True
    async with context.database.sessionmaker() as session:
        kinds = (
            await session.scalars(select(AccountEvent.type).where(AccountEvent.account_id == account.id))
        ).all()
    assert "billing.payment_failed" in kinds
    standin.recover(sub_id)
    assert (await deliver(client, standin, standin.events.of_type("invoice.paid")[-1])).status_code == 200
    assert (await _row(context, sub_id)).status == "active"  # type: ignore[union-attr]


@pytest.mark.parametrize("forgery", ["wrong_secret", "unsigned", "too_old", "tampered", "garbage_header"])
async def test_forged_unsigned_and_old_events_are_refused_before_storage(
    client: httpx.AsyncClient,
    context: AppContext,
    db: AsyncSession,
    stripe_provider: StripeProvider,
    standin: StripeStandin,
    forgery: str,
) -> None:
    _, sub_id = await paid_checkout(db, stripe_provider, standin, f"{forgery}@example.com")
    event = standin.events.of_type("customer.subscription.updated")[-1]
    body, headers = standin.signed(event)
    if forgery == "wrong_secret":
        body, headers = standin.signed(event, secret="whsec_attacker_guess_0123456789")
    elif forgery == "unsigned":
        headers.pop("Stripe-Signature")
    elif forgery == "too_old":
        body, headers = standin.signed(event, timestamp=int(time.time()) - 301)
    elif forgery == "tampered":
        body = body.replace(b'"active"', b'"canceled"')
    else:
        headers["Stripe-Signature"] = "t=notanumber,v1="
    response = await client.post("/webhooks/stripe", content=body, headers=headers)
    assert response.status_code == 400
    assert response.json()["error"]["code"] in {"invalid_signature", "missing_signature"}
    async with context.database.sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(ProviderEvent)) == 0
    assert await _row(context, sub_id) is None


async def test_a_rotated_secret_and_a_just_in_time_signature_are_accepted(
    client: httpx.AsyncClient,
    db: AsyncSession,
    stripe_provider: StripeProvider,
    standin: StripeStandin,
) -> None:
    await paid_checkout(db, stripe_provider, standin, "rotate@example.com")
    event = standin.events.log[-1]
    old_secret = await deliver(client, standin, event, secret=ROTATED_SECRET)
    assert old_secret.status_code == 200
    late = await deliver(client, standin, {**event, "id": "evt_late_1"}, timestamp=int(time.time()) - 290)
    assert late.status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b'{"id": "evt_1"}',
        b'{"id": "x", "type": "a", "data": {}}',
        b"[]",
        "\u00e9t\u00e9".encode("latin-1"),
    ],
)
async def test_signed_malformed_bodies_are_refused(
    client: httpx.AsyncClient, standin: StripeStandin, body: bytes
) -> None:
    from tests.standins.stripe import sign

    response = await client.post(
        "/webhooks/stripe", content=body, headers={"Stripe-Signature": sign(body, standin.webhook_secret)}
    )
    assert response.status_code == 400


async def test_a_signed_event_with_an_impossible_created_time_is_stored_not_a_500(
    client: httpx.AsyncClient, standin: StripeStandin
) -> None:
    from tests.standins.stripe import sign

    body = json.dumps(
        {"id": "evt_far_future", "type": "balance.available", "created": 10**20, "data": {"object": {}}}
    ).encode()
    response = await client.post(
        "/webhooks/stripe", content=body, headers={"Stripe-Signature": sign(body, standin.webhook_secret)}
    )
    assert response.status_code == 200, response.text


async def test_unknown_event_types_are_acknowledged(
    client: httpx.AsyncClient, context: AppContext, standin: StripeStandin
) -> None:
    event = {
        "id": "evt_unknown_1",
        "object": "event",
        "type": "radar.early_fraud_warning.created",
        "created": int(time.time()),
        "data": {"object": {"id": "issfr_1", "object": "radar.early_fraud_warning"}},
    }
    response = await deliver(client, standin, event)
    assert response.status_code == 200 and response.json()["status"] == InboxStatus.PENDING
    async with context.database.sessionmaker() as session:
        row = await session.scalar(select(ProviderEvent))
    assert row is not None and row.status == InboxStatus.PROCESSED
    assert row.outcome is not None and row.outcome.startswith("acknowledged")


async def test_a_failed_processing_is_kept_and_retried_until_it_succeeds(
    client: httpx.AsyncClient,
    context: AppContext,
    db: AsyncSession,
    stripe_provider: StripeProvider,
    standin: StripeStandin,
) -> None:
    account, sub_id = await paid_checkout(db, stripe_provider, standin, "retry@example.com")
    event = standin.events.of_type("checkout.session.completed")[-1]
    standin.rate_limit(1000)  # Stripe keeps answering 429: the re-read fails
    stripe_provider.gateway.pacer._sleep = _no_sleep  # the backoff schedule is not under test here
    response = await deliver(client, standin, event)
    assert response.status_code == 200  # Stripe only needs to know the event is stored
    async with context.database.sessionmaker() as session:
        row = await session.scalar(select(ProviderEvent))
        assert row is not None and row.status == InboxStatus.FAILED and row.processed_at is None
        assert row.last_error and "rate" in row.last_error.lower()
    assert await _row(context, sub_id) is None
    standin.rate_limit(-standin.state.rate_limit_next)
    [item] = await context.pipeline.inbox.claim_due(now=utcnow() + timedelta(hours=1))
    context.pipeline.submit(item)
    await context.pipeline.wait_idle()
    sub = await _row(context, sub_id)
    assert sub is not None and sub.status == "active"
    assert (await _answer(context, account.id))["entitlements"]["pro"]["active"] is True


async def _no_sleep(_seconds: float) -> None:
    return None


async def test_customer_deleted_forgets_the_customer_and_ends_access(
    client: httpx.AsyncClient,
    context: AppContext,
    db: AsyncSession,
    stripe_provider: StripeProvider,
    standin: StripeStandin,
) -> None:
    account, sub_id = await paid_checkout(db, stripe_provider, standin, "deleted@example.com")
    customer_id = standin.subscription(sub_id)["customer"]
    standin.delete_customer(customer_id)
    # Only the deletion itself arrives: the handler must find the subscriptions on its own.
    assert (await deliver(client, standin, standin.events.of_type("customer.deleted")[-1])).status_code == 200
    async with context.database.sessionmaker() as session:
        customer = await session.get(StripeCustomer, account.id)
        assert customer is not None and customer.deleted_at is not None
    assert (await _row(context, sub_id)).status == "expired"  # type: ignore[union-attr]
    assert (await _answer(context, account.id))["entitlements"]["pro"]["active"] is False


async def test_a_refunded_and_canceled_subscription_is_revoked(
    client: httpx.AsyncClient,
    context: AppContext,
    db: AsyncSession,
    stripe_provider: StripeProvider,
    standin: StripeStandin,
) -> None:
    account, sub_id = await paid_checkout(db, stripe_provider, standin, "refund@example.com")
    standin.refund(sub_id)
    standin.cancel_now(sub_id)
    for event in reversed(standin.events.log):
        assert (await deliver(client, standin, event)).status_code == 200
    assert (await _row(context, sub_id)).status == "revoked"  # type: ignore[union-attr]
    async with context.database.sessionmaker() as session:
        kinds = (
            await session.scalars(select(AccountEvent.type).where(AccountEvent.account_id == account.id))
        ).all()
    assert "billing.refunded" in kinds


async def test_an_event_for_a_customer_entitle_did_not_create_is_acknowledged(
    client: httpx.AsyncClient,
    context: AppContext,
    standin: StripeStandin,
    stripe_provider: StripeProvider,
) -> None:
    customer = await stripe_provider.gateway._call(  # a customer made in the dashboard
        "POST /v1/customers",
        lambda: stripe_provider.gateway._client.v1.customers.create_async({"email": "other@example.com"}),
    )
    price = standin.state.all("price")[0]["id"]
    await stripe_provider.gateway.create_subscription(
        {"customer": customer["id"], "items": [{"price": price}]}, idempotency_key="dashboard-sub-1"
    )
    response = await deliver(client, standin, standin.events.of_type("customer.subscription.created")[-1])
    assert response.status_code == 200
    async with context.database.sessionmaker() as session:
        row = await session.scalar(select(ProviderEvent))
        assert row is not None and row.outcome and row.outcome.startswith("ignored")
        assert await session.scalar(select(func.count()).select_from(Subscription)) == 0


def test_recorded_fixtures_are_named_after_their_events() -> None:
    from pathlib import Path

    from entitle.providers.stripe.handlers import HANDLERS

    folder = Path(__file__).parent / "events"
    names = {p.stem for p in folder.glob("*.json")}
    assert set(HANDLERS) <= names
    for path in folder.glob("*.json"):
        assert json.loads(path.read_text())["type"] == path.stem


async def test_a_nul_in_stripe_metadata_is_kept_as_a_replacement_character_on_both_databases(
    client: httpx.AsyncClient,
    context: AppContext,
    db: AsyncSession,
    stripe_provider: StripeProvider,
    standin: StripeStandin,
) -> None:
    # PostgreSQL's JSONB refuses \u0000; the stored copy of the vendor object gets U+FFFD instead, the
    # subscription still entitles, and the inbox keeps the exact bytes Stripe sent.
    account, sub_id = await paid_checkout(db, stripe_provider, standin, "nul@example.com")
    standin.state.get(sub_id, "subscription")["metadata"]["note\x00"] = "a\x00b"
    for event in standin.events.log:
        assert (await deliver(client, standin, event)).status_code == 200
    row = await _row(context, sub_id)
    assert row is not None and row.status == "active", row
    assert row.raw["metadata"]["note\ufffd"] == "a\ufffdb"
    assert (await _answer(context, account.id))["entitlements"]["pro"]["active"] is True
    async with context.database.sessionmaker() as session:
        statuses = set((await session.scalars(select(ProviderEvent.status))).all())
    assert statuses == {InboxStatus.PROCESSED}
