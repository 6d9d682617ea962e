"""The dashboard's cancel and refund buttons, and the invoice list on the customer's /account page."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from entitle.context import AppContext
from entitle.core.models.events import AccountEvent
from entitle.services.access.subscriptions import apply_subscription_state
from entitle.services.identity import operators
from tests.factories import app_store_subscription, bearer, make_account, register
from tests.providers.stripe.conftest import deliver_all, stripe_settings
from tests.standins.stripe import StripeStandin
from tests.web.test_admin_pages import sign_in
from tests.web.test_invoices import buy, subscribe
from tests.web.test_pages import csrf_of

pytestmark = pytest.mark.usefixtures("pushed")


@pytest.fixture
def settings_overrides(standin: StripeStandin) -> dict[str, Any]:
    return stripe_settings(standin)


async def as_operator(client: httpx.AsyncClient, context: AppContext) -> None:
    async with context.database.sessionmaker() as db:
        await make_account(db, email="ops@example.com")
        await operators.add_operator(db, "ops@example.com", added_by="cli:test")
        await db.commit()
    await sign_in(client, "ops@example.com")


async def operator_actions(context: AppContext, account_id: str) -> list[dict[str, Any]]:
    async with context.database.sessionmaker() as db:
        rows = await db.scalars(
            select(AccountEvent)
            .where(AccountEvent.account_id == uuid.UUID(account_id), AccountEvent.type == "operator.action")
            .order_by(AccountEvent.created_at)
        )
        return [row.data for row in rows]


def text_of(html: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


async def test_an_operator_cancels_now_with_a_refund_and_it_is_audited(
    client: httpx.AsyncClient, context: AppContext, standin: StripeStandin
) -> None:
    session, sub_id = await subscribe(client, standin, "leaving@example.com")
    account_id = session["account"]["id"]
    await as_operator(client, context)
    page = await client.get(f"/admin/accounts/{account_id}")
    assert page.status_code == 200
    assert f'action="/admin/accounts/{account_id}/subscriptions/{sub_id}/cancel"' in page.text
    # No reason: refused, nothing canceled.
    refused = await client.post(
        f"/admin/accounts/{account_id}/subscriptions/{sub_id}/cancel",
        data={"csrf_token": csrf_of(page), "when": "now", "refund": "last_payment", "reason": " "},
    )
    assert refused.status_code == 422 and "Say why" in refused.text
    assert standin.subscription(sub_id)["status"] == "active"
    done = await client.post(
        f"/admin/accounts/{account_id}/subscriptions/{sub_id}/cancel",
        data={"csrf_token": csrf_of(page), "when": "now", "refund": "last_payment", "reason": "Ticket 7"},
    )
    assert done.status_code == 303 and done.headers["location"].endswith("notice=canceled")
    assert standin.subscription(sub_id)["status"] == "canceled"
    assert [r["amount"] for r in standin.state.all("refund")] == [999]
    shown = await client.get(done.headers["location"])
    assert "The subscription is canceled at Stripe" in shown.text
    await deliver_all(client, standin)
    answer = (await client.get("/v1/me/entitlements", headers=bearer(session))).json()
    assert answer["entitlements"]["pro"]["active"] is False
    (action,) = await operator_actions(context, account_id)
    assert action["action"] == "subscription.canceled" and action["by"] == "ops@example.com"
    assert action["operator_id"] and action["reason"] == "Ticket 7" and action["refund_amount"] == 999


async def test_an_operator_refunds_part_of_a_purchase_and_an_invoice(
    client: httpx.AsyncClient, context: AppContext, standin: StripeStandin
) -> None:
    session, _ = await subscribe(client, standin, "refundme@example.com")
    intent_id = await buy(client, standin, session, "credits_100")
    account_id = session["account"]["id"]
    await as_operator(client, context)
    page = await client.get(f"/admin/accounts/{account_id}")
    invoices = re.findall(r'<tr id="invoice-(in_[A-Za-z0-9]+)">', page.text)
    assert len(invoices) == 2 and "$9.99" in page.text and "$4.99" in page.text
    bad = await client.post(
        f"/admin/accounts/{account_id}/refunds",
        data={"csrf_token": csrf_of(page), "purchase_id": intent_id, "amount": "4.999", "reason": "x"},
    )
    assert bad.status_code == 422 and "at most 2 decimals" in bad.text
    too_much = await client.post(
        f"/admin/accounts/{account_id}/refunds",
        data={"csrf_token": csrf_of(page), "purchase_id": intent_id, "amount": "5", "reason": "x"},
    )
    assert too_much.status_code == 422 and "At most 499" in too_much.text
    part = await client.post(
        f"/admin/accounts/{account_id}/refunds",
        data={
            "csrf_token": csrf_of(page),
            "purchase_id": intent_id,
            "currency": "usd",
            "amount": "1.50",
            "reason": "Goodwill",
            "idempotency_key": "page-1",
        },
    )
    assert part.status_code == 303 and part.headers["location"].endswith("notice=refunded")
    # The same form sent twice (a double click, a reload) refunds once.
    twice = await client.post(
        f"/admin/accounts/{account_id}/refunds",
        data={
            "csrf_token": csrf_of(page),
            "purchase_id": intent_id,
            "currency": "usd",
            "amount": "1.50",
            "reason": "Goodwill",
            "idempotency_key": "page-1",
        },
    )
    assert twice.status_code == 303 and [r["amount"] for r in standin.state.all("refund")] == [150]
    subscription_invoice = invoices[-1]
    whole = await client.post(
        f"/admin/accounts/{account_id}/refunds",
        data={"csrf_token": csrf_of(page), "invoice_id": subscription_invoice, "reason": "Charged twice"},
    )
    assert whole.status_code == 303
    assert sorted(r["amount"] for r in standin.state.all("refund")) == [150, 999]
    actions = await operator_actions(context, account_id)
    assert {(a["action"], a.get("purchase_id"), a.get("invoice_id"), a["reason"]) for a in actions} == {
        ("refund.created", intent_id, None, "Goodwill"),
        ("refund.created", None, subscription_invoice, "Charged twice"),
    }


async def test_app_store_subscriptions_say_refunds_go_through_apple(
    client: httpx.AsyncClient, context: AppContext, standin: StripeStandin
) -> None:
    session = await register(client, "iphone@example.com")
    account_id = session["account"]["id"]
    async with context.database.transaction() as db:
        await apply_subscription_state(
            db, app_store_subscription(uuid.UUID(account_id), store_subscription_id="2000000000000123")
        )
    await as_operator(client, context)
    page = await client.get(f"/admin/accounts/{account_id}")
    assert "only Apple cancels or refunds it" in text_of(page.text)
    assert "/subscriptions/2000000000000123/cancel" not in page.text
    refused = await client.post(
        f"/admin/accounts/{account_id}/subscriptions/2000000000000123/cancel",
        data={"csrf_token": csrf_of(page), "when": "now", "refund": "none", "reason": "asked"},
    )
    assert refused.status_code == 409 and "App Store" in refused.text


async def test_the_account_page_lists_invoices_with_their_links(
    client: httpx.AsyncClient, standin: StripeStandin
) -> None:
    session, _ = await subscribe(client, standin, "mine@example.com")
    standin.advance(60)
    await buy(client, standin, session, "credits_100")
    await sign_in(client, "mine@example.com")
    page = await client.get("/account")
    assert page.status_code == 200
    table = re.search(r'<table class="data" id="invoice-list">(.*?)</table>', page.text, re.S)
    assert table
    rows = [text_of(row) for row in re.findall(r"<tr id=\"invoice-.*?</tr>", table.group(1), re.S)]
    assert len(rows) == 2
    assert "$4.99 Paid View" in rows[0] and "$9.99 Paid View" in rows[1]
    links = re.findall(r'href="([^"]+)"', table.group(1))
    assert any("/i/in_" in link for link in links) and any(link.endswith("/pdf") for link in links)
    # The customer cancels at the period's end only: "cancel now" is the operator's.
    assert "Cancel renewal" in page.text and "/cancel" in page.text
    assert 'value="now"' not in page.text and "refund" not in page.text.lower().replace("refunded", "")


async def test_the_account_page_without_any_payment_shows_no_invoices(
    client: httpx.AsyncClient, standin: StripeStandin
) -> None:
    await register(client, "free@example.com")
    await sign_in(client, "free@example.com")
    asked = len(standin.requests)
    page = await client.get("/account")
    assert page.status_code == 200 and 'id="invoice-list"' not in page.text
    assert len(standin.requests) == asked
