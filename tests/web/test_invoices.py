"""GET /v1/me/invoices, and support's cancel-now and refunds (server key), over the Stripe stand-in."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from entitle.context import AppContext
from entitle.core.models.events import AccountEvent
from entitle.core.subscriptions import Store
from entitle.services.access.purchases import apply_purchase_state
from entitle.services.access.subscriptions import apply_subscription_state
from tests.conftest import ADMIN_KEY
from tests.factories import app_store_subscription, bearer, one_time_purchase, register
from tests.providers.stripe.conftest import deliver_all, stripe_settings
from tests.standins.stripe import StripeStandin

pytestmark = pytest.mark.usefixtures("pushed")
SERVER = {"Authorization": f"Bearer {ADMIN_KEY}"}


@pytest.fixture
def settings_overrides(standin: StripeStandin) -> dict[str, Any]:
    return stripe_settings(standin)


async def subscribe(
    client: httpx.AsyncClient, standin: StripeStandin, email: str
) -> tuple[dict[str, Any], str]:
    """A signed-up account that paid Pro monthly on hosted Checkout; its session and subscription id."""
    session = await register(client, email)
    started = await client.post(
        "/v1/billing/stripe/checkout", json={"product": "pro_monthly"}, headers=bearer(session)
    )
    paid = standin.complete_checkout(started.json()["id"])
    await deliver_all(client, standin)
    return session, str(paid["subscription"])


async def buy(
    client: httpx.AsyncClient, standin: StripeStandin, session: dict[str, Any], product: str
) -> str:
    """A one-time purchase on hosted Checkout (with its receipt invoice); its PaymentIntent id."""
    started = await client.post(
        "/v1/billing/stripe/checkout", json={"product": product}, headers=bearer(session)
    )
    paid = standin.complete_checkout(started.json()["id"])
    await deliver_all(client, standin)
    return str(paid["payment_intent"])


async def entitlements(client: httpx.AsyncClient, session: dict[str, Any]) -> dict[str, Any]:
    answer: dict[str, Any] = (await client.get("/v1/me/entitlements", headers=bearer(session))).json()
    return answer


# --- invoices ------------------------------------------------------------------------------------
async def test_invoices_list_subscriptions_and_one_time_payments_newest_first(
    client: httpx.AsyncClient, standin: StripeStandin
) -> None:
    session, sub_id = await subscribe(client, standin, "invoices@example.com")
    standin.advance(60)
    await buy(client, standin, session, "credits_100")
    response = await client.get("/v1/me/invoices", headers=bearer(session))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["next"] is None
    receipt, first = body["invoices"]
    assert set(first) == {
        "id",
        "number",
        "created",
        "total",
        "currency",
        "status",
        "hosted_invoice_url",
        "invoice_pdf",
    }
    assert (first["total"], first["currency"], first["status"]) == (999, "usd", "paid")
    assert (receipt["total"], receipt["status"]) == (499, "paid")
    assert first["created"].endswith("Z") and first["created"] < receipt["created"]
    assert first["number"] and receipt["number"]
    # The links open Stripe's hosted invoice and its PDF.
    async with httpx.AsyncClient() as outside:
        page = await outside.get(first["hosted_invoice_url"])
        assert page.status_code == 200 and first["number"] in page.text
        pdf = await outside.get(receipt["invoice_pdf"])
        assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")


async def test_invoices_come_a_page_at_a_time_through_the_paced_client(
    client: httpx.AsyncClient, context: AppContext, standin: StripeStandin
) -> None:
    session, sub_id = await subscribe(client, standin, "pages@example.com")
    standin.renew(sub_id)
    standin.renew(sub_id)
    await deliver_all(client, standin)
    auth = bearer(session)
    before = context.providers["stripe"].gateway.stats.requests.get("GET /v1/invoices", 0)
    first = (await client.get("/v1/me/invoices?limit=2", headers=auth)).json()
    assert len(first["invoices"]) == 2 and first["next"] == first["invoices"][-1]["id"]
    rest = (await client.get(f"/v1/me/invoices?limit=2&after={first['next']}", headers=auth)).json()
    assert len(rest["invoices"]) == 1 and rest["next"] is None
    ids = [i["id"] for i in first["invoices"] + rest["invoices"]]
    assert len(set(ids)) == 3
    assert context.providers["stripe"].gateway.stats.requests["GET /v1/invoices"] == before + 2


async def test_an_account_that_never_paid_has_no_invoices_and_stripe_is_not_asked(
    client: httpx.AsyncClient, standin: StripeStandin
) -> None:
    session = await register(client, "nothing@example.com")
    asked = len(standin.requests)
    response = await client.get("/v1/me/invoices", headers=bearer(session))
    assert response.json() == {"invoices": [], "next": None}
    assert len(standin.requests) == asked


@pytest.mark.parametrize(
    ("query", "code"),
    [("?after=cus_123", "invalid_cursor"), ("?after=in_doesnotexist", "invalid_cursor"), ("?limit=0", None)],
)
async def test_bad_invoice_queries_are_refused(
    client: httpx.AsyncClient, standin: StripeStandin, query: str, code: str | None
) -> None:
    session, _ = await subscribe(client, standin, "badquery@example.com")
    refused = await client.get(f"/v1/me/invoices{query}", headers=bearer(session))
    assert refused.status_code == 422, refused.text
    if code:
        assert refused.json()["error"]["code"] == code
    assert (await client.get("/v1/me/invoices")).status_code == 401


# --- cancel ------------------------------------------------------------------------------------
async def test_cancel_now_with_a_prorated_refund(client: httpx.AsyncClient, standin: StripeStandin) -> None:
    session, sub_id = await subscribe(client, standin, "prorated@example.com")
    account_id = session["account"]["id"]
    standin.advance(10 * 86400)  # a third of a 30-day month used
    response = await client.post(
        f"/v1/accounts/{account_id}/subscriptions/{sub_id}/cancel",
        json={"when": "now", "refund": "prorated", "reason": "Ticket 42"},
        headers=SERVER,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"] == sub_id and body["store"] == "stripe" and body["will_renew"] is False
    refund = body["refund"]
    assert refund["currency"] == "usd" and refund["status"] == "succeeded"
    # 999 for the period; what is left of it, give or take the seconds the test took.
    period = standin.subscription(sub_id)["items"]["data"][0]
    share = (period["current_period_end"] - standin.subscription(sub_id)["ended_at"]) / (
        period["current_period_end"] - period["current_period_start"]
    )
    assert abs(refund["amount"] - 999 * share) <= 2 and 0 < refund["amount"] < 999
    stripe_sub = standin.subscription(sub_id)
    assert stripe_sub["status"] == "canceled" and stripe_sub["cancellation_details"]["comment"] == "Ticket 42"
    assert standin.state.get(refund["id"], "refund")["metadata"]["entitle_reason"] == "Ticket 42"
    # Access ended at once (the re-read), and the webhooks agree.
    assert (await entitlements(client, session))["entitlements"]["pro"]["active"] is False
    await deliver_all(client, standin)
    assert (await entitlements(client, session))["entitlements"]["pro"]["active"] is False
    log = (await client.get(f"/v1/accounts/{account_id}/events?type=operator.action", headers=SERVER)).json()
    actions = [e["data"] for e in log["events"]]
    assert actions[0]["action"] == "subscription.canceled" and actions[0]["by"] == "server key"
    assert actions[0]["refund_id"] == refund["id"] and actions[0]["reason"] == "Ticket 42"


async def test_cancel_now_refunding_the_last_payment_revokes(
    client: httpx.AsyncClient, standin: StripeStandin
) -> None:
    session, sub_id = await subscribe(client, standin, "lastpay@example.com")
    response = await client.post(
        f"/v1/accounts/{session['account']['id']}/subscriptions/{sub_id}/cancel",
        json={"when": "now", "refund": "last_payment"},
        headers=SERVER,
    )
    assert response.status_code == 200, response.text
    assert response.json()["refund"]["amount"] == 999
    assert response.json()["status"] == "revoked"
    await deliver_all(client, standin)
    assert [t for t in ("charge.refunded", "refund.created") if t in standin.events.types()] == [
        "charge.refunded",
        "refund.created",
    ]
    assert (await entitlements(client, session))["subscriptions"][0]["status"] == "revoked"


async def test_cancel_at_period_end_keeps_access(client: httpx.AsyncClient, standin: StripeStandin) -> None:
    session, sub_id = await subscribe(client, standin, "periodend@example.com")
    response = await client.post(
        f"/v1/accounts/{session['account']['id']}/subscriptions/{sub_id}/cancel",
        json={"when": "period_end"},
        headers=SERVER,
    )
    assert response.status_code == 200, response.text
    assert response.json()["will_renew"] is False and response.json()["refund"] is None
    assert standin.subscription(sub_id)["cancel_at_period_end"] is True
    assert (await entitlements(client, session))["entitlements"]["pro"]["active"] is True
    prorated = await client.post(
        f"/v1/accounts/{session['account']['id']}/subscriptions/{sub_id}/cancel",
        json={"when": "period_end", "refund": "prorated"},
        headers=SERVER,
    )
    assert prorated.status_code == 422 and prorated.json()["error"]["code"] == "invalid_refund"


async def test_cancel_refusals(
    client: httpx.AsyncClient, context: AppContext, standin: StripeStandin
) -> None:
    session, sub_id = await subscribe(client, standin, "owner@example.com")
    other = await register(client, "other@example.com")
    account_id = session["account"]["id"]
    path = f"/v1/accounts/{account_id}/subscriptions/{sub_id}/cancel"
    async with context.database.transaction() as db:
        await apply_subscription_state(
            db,
            app_store_subscription(
                uuid.UUID(other["account"]["id"]), store_subscription_id="2000000000000009"
            ),
        )
    cases: list[tuple[str, dict[str, Any], dict[str, str], int, str | None]] = [
        (path, {"when": "now"}, {}, 401, None),
        (path, {"when": "later"}, SERVER, 422, None),
        (path, {"when": "now", "refund": "all"}, SERVER, 422, None),
        (path, {"refund": "none"}, SERVER, 422, None),
        (path, {"when": "now", "colour": "red"}, SERVER, 422, None),
        (
            f"/v1/accounts/{account_id}/subscriptions/sub_nope/cancel",
            {"when": "now"},
            SERVER,
            404,
            "subscription_not_found",
        ),
        (
            f"/v1/accounts/{other['account']['id']}/subscriptions/{sub_id}/cancel",
            {"when": "now"},
            SERVER,
            404,
            "subscription_not_found",
        ),
        (
            f"/v1/accounts/{uuid.uuid4()}/subscriptions/{sub_id}/cancel",
            {"when": "now"},
            SERVER,
            404,
            "account_not_found",
        ),
        (
            f"/v1/accounts/{other['account']['id']}/subscriptions/2000000000000009/cancel",
            {"when": "now", "refund": "last_payment"},
            SERVER,
            409,
            "managed_by_app_store",
        ),
    ]
    for url, body, headers, status, code in cases:
        response = await client.post(url, json=body, headers=headers)
        assert response.status_code == status, (url, body, response.text)
        if code:
            assert response.json()["error"]["code"] == code
    assert (
        "Apple"
        in (await client.post(cases[-1][0], json=cases[-1][1], headers=SERVER)).json()["error"]["message"]
    )
    assert standin.subscription(sub_id)["status"] == "active"
    done = await client.post(path, json={"when": "now"}, headers=SERVER)
    assert done.status_code == 200
    again = await client.post(path, json={"when": "now"}, headers=SERVER)
    assert again.status_code == 409 and again.json()["error"]["code"] == "subscription_ended"


# --- refunds ------------------------------------------------------------------------------------
async def test_refund_part_of_a_purchase_then_the_rest(
    client: httpx.AsyncClient, standin: StripeStandin
) -> None:
    session = await register(client, "credits@example.com")
    intent_id = await buy(client, standin, session, "credits_100")
    account_id = session["account"]["id"]
    assert (await entitlements(client, session))["balances"] == {"credits": 100}
    path = f"/v1/accounts/{account_id}/refunds"
    too_much = await client.post(path, json={"purchase_id": intent_id, "amount": 500}, headers=SERVER)
    assert too_much.status_code == 422 and too_much.json()["error"]["code"] == "amount_too_large"
    part = await client.post(
        path,
        json={"purchase_id": intent_id, "amount": 200, "reason": "requested_by_customer"},
        headers=SERVER,
    )
    assert part.status_code == 201, part.text
    refund = part.json()["refund"]
    assert (refund["amount"], refund["currency"], refund["payment_intent"]) == (200, "usd", intent_id)
    assert standin.state.get(refund["id"], "refund")["reason"] == "requested_by_customer"
    # Nothing changes until Stripe confirms.
    assert (await entitlements(client, session))["balances"] == {"credits": 100}
    await deliver_all(client, standin)
    assert (await entitlements(client, session))["balances"]["credits"] < 100
    rest = await client.post(path, json={"purchase_id": intent_id}, headers=SERVER)
    assert rest.status_code == 201 and rest.json()["refund"]["amount"] == 299
    await deliver_all(client, standin)
    answer = await entitlements(client, session)
    assert answer["balances"] == {"credits": 0} and answer["purchases"][0]["refunded_at"]
    again = await client.post(path, json={"purchase_id": intent_id}, headers=SERVER)
    assert again.status_code == 409 and again.json()["error"]["code"] == "already_refunded"


async def test_refund_an_invoice(client: httpx.AsyncClient, standin: StripeStandin) -> None:
    session, sub_id = await subscribe(client, standin, "invoice-refund@example.com")
    invoice_id = (await client.get("/v1/me/invoices", headers=bearer(session))).json()["invoices"][0]["id"]
    response = await client.post(
        f"/v1/accounts/{session['account']['id']}/refunds",
        json={"invoice_id": invoice_id, "amount": 100, "reason": "Billed twice by mistake"},
        headers=SERVER,
    )
    assert response.status_code == 201, response.text
    assert response.json()["refund"]["amount"] == 100
    assert response.json()["refund"]["reason"] == "Billed twice by mistake"
    # A partial refund of a subscription's invoice leaves the subscription as it was.
    await deliver_all(client, standin)
    assert (await entitlements(client, session))["entitlements"]["pro"]["active"] is True


async def test_refund_refusals(
    client: httpx.AsyncClient, context: AppContext, standin: StripeStandin
) -> None:
    session, _ = await subscribe(client, standin, "refusals@example.com")
    other, _ = await subscribe(client, standin, "someone@example.com")
    account_id = session["account"]["id"]
    others_invoice = (await client.get("/v1/me/invoices", headers=bearer(other))).json()["invoices"][0]["id"]
    async with context.database.transaction() as db:
        await apply_purchase_state(
            db,
            one_time_purchase(
                uuid.UUID(account_id), store=Store.APP_STORE, store_purchase_id="2000000000000077"
            ),
        )
    path = f"/v1/accounts/{account_id}/refunds"
    cases: list[tuple[dict[str, Any], dict[str, str], int, str | None]] = [
        ({"purchase_id": "pi_x"}, {}, 401, None),
        ({}, SERVER, 422, "refund_target_required"),
        ({"purchase_id": "pi_x", "invoice_id": "in_x"}, SERVER, 422, "refund_target_required"),
        ({"purchase_id": "pi_x", "amount": 0}, SERVER, 422, None),
        ({"purchase_id": "pi_x", "amount": "ten"}, SERVER, 422, None),
        ({"purchase_id": "pi_x", "extra": 1}, SERVER, 422, None),
        ({"purchase_id": "pi_nope"}, SERVER, 404, "purchase_not_found"),
        ({"invoice_id": others_invoice}, SERVER, 404, "invoice_not_found"),
        ({"invoice_id": "in_doesnotexist"}, SERVER, 404, "invoice_not_found"),
        ({"purchase_id": "2000000000000077"}, SERVER, 409, "managed_by_app_store"),
    ]
    for body, headers, status, code in cases:
        response = await client.post(path, json=body, headers=headers)
        assert response.status_code == status, (body, response.text)
        if code:
            assert response.json()["error"]["code"] == code
    assert standin.state.all("refund") == []
    async with context.database.sessionmaker() as db:
        audited = await db.scalars(select(AccountEvent).where(AccountEvent.type == "operator.action"))
        assert list(audited) == []
