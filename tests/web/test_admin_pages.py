"""The operators' dashboard over HTTP: who gets in, finding customers, grants, retries, the audit trail."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from entitle.context import AppContext
from entitle.core.models.events import (
    AccountEvent,
    DeliveryStatus,
    InboxStatus,
    ProviderEvent,
    WebhookDelivery,
)
from entitle.providers.stripe.catalog_push import push_catalog
from entitle.services.access.subscriptions import apply_subscription_state
from entitle.services.delivery.outbound import deliver_due
from entitle.services.identity import operators
from tests.factories import DEFAULT_PASSWORD, app_store_subscription, bearer, make_account, register
from tests.providers.stripe.conftest import paid_checkout, stripe_settings
from tests.services.test_outbound import Receiver, create_endpoint
from tests.standins.stripe import StripeStandin
from tests.web.test_pages import csrf_of, post_form


@pytest.fixture
def settings_overrides(standin: StripeStandin) -> dict[str, Any]:
    return stripe_settings(standin)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.close()


async def sign_in(client: httpx.AsyncClient, email: str) -> None:
    response = await post_form(
        client, "/account/sign-in", "/account/sign-in", {"email": email, "password": DEFAULT_PASSWORD}
    )
    assert response.status_code == 303, response.text


@pytest.fixture
async def operator(client: httpx.AsyncClient, context: AppContext) -> str:
    """An operator, signed in on `client`'s pages."""
    async with context.database.sessionmaker() as db:
        await make_account(db, email="ops@example.com")
        await operators.add_operator(db, "ops@example.com", added_by="cli:test")
        await db.commit()
    await sign_in(client, "ops@example.com")
    return "ops@example.com"


async def test_only_operators_get_in(client: httpx.AsyncClient, context: AppContext) -> None:
    signed_out = await client.get("/admin/provider-events")
    assert signed_out.headers["location"] == "/account/sign-in?next=%2Fadmin%2Fprovider-events"
    async with context.database.sessionmaker() as db:
        await make_account(db, email="customer@example.com")
    await sign_in(client, "customer@example.com")
    refused = await client.get("/admin")
    assert refused.status_code == 403 and "entitle admin add EMAIL" in refused.text
    # A customer's form post to the dashboard is refused too, whatever it carries.
    page = await client.get("/account")
    forbidden = await client.post(
        "/admin/accounts/00000000-0000-0000-0000-000000000000/grants",
        data={"csrf_token": csrf_of(page), "entitlement": "pro", "days": "30"},
    )
    assert forbidden.status_code == 403


async def test_search_finds_a_customer_by_every_id_support_is_given(
    client: httpx.AsyncClient, context: AppContext, operator: str, standin: StripeStandin
) -> None:
    await push_catalog(context.providers["stripe"].gateway, context.catalog)
    async with context.database.sessionmaker() as db:
        customer, _ = await paid_checkout(db, context.providers["stripe"], standin, "pat@example.com")
        customer.external_id = "user-42"
        await apply_subscription_state(db, app_store_subscription(customer.id))
        await db.commit()
    [stripe_customer] = standin.state.all("customer")
    for query in ("Pat@Example.com", "user-42", stripe_customer["id"], "2000000000000001", str(customer.id)):
        found = await client.get("/admin/accounts", params={"q": query})
        assert found.headers.get("location") == f"/admin/accounts/{customer.id}", query
    nothing = await client.get("/admin/accounts", params={"q": "nobody@example.com"})
    assert 'id="no-results"' in nothing.text

    page = await client.get(f"/admin/accounts/{customer.id}")
    assert page.status_code == 200
    assert f"https://dashboard.stripe.com/test/customers/{stripe_customer['id']}" in page.text
    assert "app_store" in page.text and "2000000000000001" in page.text and "user-42" in page.text


async def test_an_operator_grants_a_month_and_the_customer_sees_it_with_the_operator_on_record(
    client: httpx.AsyncClient, context: AppContext, operator: str, receiver: Receiver
) -> None:
    customer = await register(client, "pat@example.com")
    await create_endpoint(client, receiver.url)  # hears every event type
    account_id = uuid.UUID(customer["account"]["id"])
    page = await client.get(f"/admin/accounts/{account_id}")
    granted = await client.post(
        f"/admin/accounts/{account_id}/grants",
        data={"csrf_token": csrf_of(page), "entitlement": "pro", "days": "30", "reason": "ticket 123"},
    )
    assert granted.headers["location"] == f"/admin/accounts/{account_id}?notice=granted"
    answer = (await client.get("/v1/me/entitlements", headers=bearer(customer))).json()
    assert answer["entitlements"]["pro"]["active"] is True
    assert answer["entitlements"]["pro"]["store"] == "promotional"

    async with context.database.sessionmaker() as db:
        audit = (
            await db.scalars(
                select(AccountEvent).where(
                    AccountEvent.account_id == account_id, AccountEvent.type == operators.OPERATOR_ACTION
                )
            )
        ).all()
    [entry] = audit
    assert entry.data["action"] == "grant.created" and entry.data["by"] == "ops@example.com"
    assert entry.data["reason"] == "ticket 123"
    # The app's backend hears about the entitlement, not about the dashboard.
    await deliver_due(context.database, context.http, development=True)
    assert "entitlement.granted" in receiver.types() and operators.OPERATOR_ACTION not in receiver.types()

    page = await client.get(f"/admin/accounts/{account_id}")
    assert "by ops@example.com" in page.text
    grant_id = entry.data["grant_id"]
    revoked = await client.post(
        f"/admin/accounts/{account_id}/grants/{grant_id}/revoke", data={"csrf_token": csrf_of(page)}
    )
    assert revoked.headers["location"].endswith("notice=revoked")
    answer = (await client.get("/v1/me/entitlements", headers=bearer(customer))).json()
    assert answer["entitlements"]["pro"]["active"] is False


async def test_a_bad_grant_is_explained_on_the_page(client: httpx.AsyncClient, operator: str) -> None:
    customer = await register(client, "pat@example.com")
    page = await client.get(f"/admin/accounts/{customer['account']['id']}")
    refused = await client.post(
        f"/admin/accounts/{customer['account']['id']}/grants",
        data={"csrf_token": csrf_of(page), "entitlement": "pro", "days": "0"},
    )
    assert refused.status_code == 422 and 'id="error"' in refused.text


@pytest.mark.parametrize(
    "fields", [{"until": "9999-12-31"}, {"until": "0001-01-01"}, {"days": "²"}, {"days": "3²"}]
)
async def test_a_grant_at_the_ends_of_the_calendar_or_in_other_digits_is_explained_on_the_page(
    client: httpx.AsyncClient, operator: str, fields: dict[str, str]
) -> None:
    customer = await register(client, "pat@example.com")
    page = await client.get(f"/admin/accounts/{customer['account']['id']}")
    refused = await client.post(
        f"/admin/accounts/{customer['account']['id']}/grants",
        data={"csrf_token": csrf_of(page), "entitlement": "pro", **fields},
    )
    assert refused.status_code == 422 and 'id="error"' in refused.text


async def test_the_reports_page_explains_days_at_the_ends_of_the_calendar(
    client: httpx.AsyncClient, operator: str
) -> None:
    for day in ("9999-12-31", "0001-01-01"):
        page = await client.get("/admin/reports", params={"from": day, "to": day})
        assert page.status_code == 400 and "must fall between 2000-01-01 and 2199-12-31" in page.text


async def test_a_page_number_in_other_digits_is_the_first_page(
    client: httpx.AsyncClient, operator: str
) -> None:
    customer = await register(client, "pat@example.com")
    page = await client.get(f"/admin/accounts/{customer['account']['id']}", params={"page": "²"})
    assert page.status_code == 200
    found = await client.get("/admin/accounts", params={"q": "²"})
    assert found.status_code == 200


async def test_a_failed_provider_event_is_listed_with_its_error_and_retried(
    client: httpx.AsyncClient, context: AppContext, operator: str, standin: StripeStandin
) -> None:
    await push_catalog(context.providers["stripe"].gateway, context.catalog)
    async with context.database.sessionmaker() as db:
        customer, subscription_id = await paid_checkout(
            db, context.providers["stripe"], standin, "pat@example.com"
        )
    # The events arrived while processing failed (what the pipeline records when Stripe is down).
    inbox = context.pipeline.inbox
    provider = context.providers["stripe"]
    rows = []
    for event in standin.events.log:
        body, headers = standin.signed(event)
        incoming = await provider.verify_webhook(body, {k.lower(): v for k, v in headers.items()})
        received = await inbox.receive(provider="stripe", incoming=incoming, raw_body=body, claim=True)
        rows.append(received.event.id)
    await inbox.record_failure(rows, InboxStatus.FAILED, error="Stripe did not answer (stand-in)", retry=True)

    listing = await client.get("/admin/provider-events")
    assert "Stripe did not answer (stand-in)" in listing.text
    for row_id in rows:
        assert f'id="event-{row_id}"' in listing.text
    for row_id in rows:
        page = await client.get("/admin/provider-events")
        if f'id="event-{row_id}"' not in page.text:
            continue  # processed with an earlier one of the same customer
        retried = await client.post(
            f"/admin/provider-events/{row_id}/retry", data={"csrf_token": csrf_of(page)}
        )
        assert retried.headers["location"] == "/admin/provider-events?notice=retried"
    assert 'id="no-events"' in (await client.get("/admin/provider-events")).text
    async with context.database.sessionmaker() as db:
        statuses = set((await db.scalars(select(ProviderEvent.status))).all())
        audit = (
            await db.scalars(select(AccountEvent).where(AccountEvent.type == operators.OPERATOR_ACTION))
        ).all()
    assert statuses == {InboxStatus.PROCESSED}
    retried_ids = {a.data["provider_event_id"] for a in audit if a.data["action"] == "provider_event.retried"}
    assert retried_ids and retried_ids <= {str(row_id) for row_id in rows}
    assert all(
        a.data["by"] == "ops@example.com" for a in audit if a.data["action"] == "provider_event.retried"
    )
    page = await client.get(f"/admin/accounts/{customer.id}")
    assert subscription_id in page.text and 'good">yes' in page.text


async def test_a_failed_delivery_is_sent_again_with_its_webhook_id(
    client: httpx.AsyncClient, context: AppContext, operator: str, receiver: Receiver
) -> None:
    await create_endpoint(client, receiver.url, ["account.created"])
    await register(client, "pat@example.com")
    receiver.answers = [500]
    await deliver_due(context.database, context.http, development=True)
    async with context.database.transaction() as db:
        # Every retry failed (the outbox gives up after its last attempt).
        await db.execute(update(WebhookDelivery).values(status=DeliveryStatus.FAILED, next_attempt_at=None))
    listing = await client.get("/admin/deliveries")
    [delivery_id] = [
        line.split('"')[1].removeprefix("delivery-")
        for line in listing.text.split("id=")[1:]
        if "delivery-" in line[:12]
    ]
    resent = await client.post(
        f"/admin/deliveries/{delivery_id}/retry", data={"csrf_token": csrf_of(listing)}
    )
    assert resent.headers["location"] == "/admin/deliveries?notice=resent"
    first, second = receiver.received
    assert first[1]["webhook-id"] == second[1]["webhook-id"]
    assert json.loads(second[0])["type"] == "account.created"
    assert 'id="no-deliveries"' in (await client.get("/admin/deliveries")).text
