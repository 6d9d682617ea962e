"""/v1/billing/stripe/* and /webhooks/stripe over HTTP, against the Stripe stand-in."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest

from entitle.context import AppContext
from entitle.services.access.subscriptions import apply_subscription_state
from tests.conftest import LiveServer
from tests.factories import app_store_subscription, bearer, eventually, register
from tests.providers.stripe.conftest import deliver_all, stripe_settings
from tests.standins.stripe import StripeStandin

pytestmark = pytest.mark.usefixtures("pushed")


@pytest.fixture
def settings_overrides(standin: StripeStandin) -> dict[str, Any]:
    return stripe_settings(standin)


async def test_checkout_pays_and_entitles(client: httpx.AsyncClient, standin: StripeStandin) -> None:
    auth = bearer(await register(client, "web@example.com"))
    response = await client.post("/v1/billing/stripe/checkout", json={"product": "pro_monthly"}, headers=auth)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["url"] == f"{standin.base_url}/c/pay/{body['id']}" and body["id"].startswith("cs_test_")
    session = standin.state.get(body["id"], "checkout.session")
    assert (
        session["success_url"].startswith("http://testserver/") and session["allow_promotion_codes"] is True
    )
    assert session["client_reference_id"] == session["_subscription_data"]["metadata"]["account_id"]
    standin.complete_checkout(body["id"])
    await deliver_all(client, standin)
    answer = (await client.get("/v1/me/entitlements", headers=auth)).json()
    pro = answer["entitlements"]["pro"]
    assert (
        pro["active"]
        and pro["store"] == "stripe"
        and pro["management_url"].endswith("/v1/billing/stripe/portal")
    )

    again = await client.post("/v1/billing/stripe/checkout", json={"product": "pro_yearly"}, headers=auth)
    assert again.status_code == 409 and again.json()["error"]["code"] == "already_subscribed"
    assert "Stripe" in again.json()["error"]["message"]
    portal = await client.post("/v1/billing/stripe/portal", headers=auth)
    assert portal.status_code == 200 and portal.json()["url"].startswith("https://billing.stripe.com/")
    assert standin.state.all("billing_portal.session")[0]["customer"] == session["customer"]


async def test_the_management_url_opens_with_a_get(client: httpx.AsyncClient, standin: StripeStandin) -> None:
    auth = bearer(await register(client, "manage@example.com"))
    checkout = await client.post("/v1/billing/stripe/checkout", json={"product": "pro_monthly"}, headers=auth)
    standin.complete_checkout(checkout.json()["id"])
    await deliver_all(client, standin)
    answer = (await client.get("/v1/me/entitlements", headers=auth)).json()
    url = answer["entitlements"]["pro"]["management_url"].removeprefix("http://testserver")
    # The app opens it with its token: straight into a fresh portal session for this person.
    opened = await client.get(url, headers=auth)
    assert opened.status_code == 303, opened.text
    assert opened.headers["location"].startswith("https://billing.stripe.com/")
    # A browser, with no token: to the hosted account page, where the person signs in.
    browser = await client.get(url)
    assert browser.status_code == 303 and browser.headers["location"] == "http://testserver/account"


async def test_payment_element_subscription_grants_nothing_until_paid(
    client: httpx.AsyncClient, standin: StripeStandin
) -> None:
    auth = bearer(await register(client, "element@example.com"))
    response = await client.post(
        "/v1/billing/stripe/subscription", json={"product": "pro_monthly"}, headers=auth
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["client_secret"].startswith("pi_") and "_secret_" in body["client_secret"]
    retry = await client.post(
        "/v1/billing/stripe/subscription", json={"product": "pro_monthly"}, headers=auth
    )
    assert retry.json() == body  # a double click does not make a second subscription
    request = next(r for r in standin.requests if r["path"] == "/v1/subscriptions" and r["method"] == "POST")
    assert request["params"]["payment_behavior"] == "default_incomplete"
    assert request["params"]["payment_settings"] == {"save_default_payment_method": "on_subscription"}
    answer = (await client.get("/v1/me/entitlements", headers=auth)).json()
    assert answer["entitlements"]["pro"]["active"] is False
    assert answer["subscriptions"][0]["status"] == "incomplete"
    standin.pay_first_invoice(body["subscription_id"])
    await deliver_all(client, standin)
    assert (await client.get("/v1/me/entitlements", headers=auth)).json()["entitlements"]["pro"]["active"]


async def test_change_plan_with_preview_then_cancel_and_resume(
    client: httpx.AsyncClient, standin: StripeStandin
) -> None:
    auth = bearer(await register(client, "change@example.com"))
    checkout = (
        await client.post("/v1/billing/stripe/checkout", json={"product": "pro_monthly"}, headers=auth)
    ).json()
    standin.complete_checkout(checkout["id"])
    await deliver_all(client, standin)
    preview = await client.post(
        "/v1/billing/stripe/subscription/preview-change", json={"product": "pro_yearly"}, headers=auth
    )
    assert preview.status_code == 200, preview.text
    quote = preview.json()
    assert quote["currency"] == "usd" and 0 < quote["amount_due"] <= 9999 and len(quote["lines"]) == 2
    changed = await client.post(
        "/v1/billing/stripe/subscription/change",
        json={"product": "pro_yearly", "proration_date": quote["proration_date"]},
        headers=auth,
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["product"] == "pro_yearly"
    assert changed.json()["payment_method"] == {"type": "card", "brand": "visa", "last4": "4242"}
    charged = standin.state.all("invoice")[-1]
    assert charged["billing_reason"] == "subscription_update" and charged["amount_due"] == quote["amount_due"]
    same = await client.post(
        "/v1/billing/stripe/subscription/change", json={"product": "pro_yearly"}, headers=auth
    )
    assert same.status_code == 409 and same.json()["error"]["code"] == "same_plan"

    canceled = (await client.post("/v1/billing/stripe/subscription/cancel", headers=auth)).json()
    assert canceled["status"] == "canceled_at_period_end" and canceled["will_renew"] is False
    pro = (await client.get("/v1/me/entitlements", headers=auth)).json()["entitlements"]["pro"]
    assert pro["active"] is True and pro["will_renew"] is False
    resumed = (await client.post("/v1/billing/stripe/subscription/resume", headers=auth)).json()
    assert resumed["status"] == "active" and resumed["will_renew"] is True
    await deliver_all(client, standin)  # the webhooks for all of it agree
    assert (await client.get("/v1/me/entitlements", headers=auth)).json()["entitlements"]["pro"]["will_renew"]


async def test_an_app_store_subscription_blocks_web_checkout(
    client: httpx.AsyncClient, context: AppContext, standin: StripeStandin
) -> None:
    session = await register(client, "iphone@example.com")
    async with context.database.sessionmaker() as db:
        await apply_subscription_state(
            db,
            app_store_subscription(
                uuid.UUID(session["account"]["id"]), store_subscription_id="2000000000000001"
            ),
        )
        await db.commit()
    for path in ("/v1/billing/stripe/checkout", "/v1/billing/stripe/subscription"):
        refused = await client.post(path, json={"product": "pro_monthly"}, headers=bearer(session))
        assert refused.status_code == 409
        error = refused.json()["error"]
        assert error["code"] == "already_subscribed" and "App Store" in error["message"]
    assert standin.state.all("customer") == []


@pytest.mark.parametrize(
    ("path", "body", "status", "code"),
    [
        ("/v1/billing/stripe/checkout", {"product": "nope"}, 422, "unknown_product"),
        (
            "/v1/billing/stripe/checkout",
            {"product": "pro_monthly", "success_url": "https://evil.example/x"},
            422,
            "invalid_redirect_url",
        ),
        (
            "/v1/billing/stripe/checkout",
            {"product": "pro_monthly", "customer": "cus_someone_else"},
            422,
            None,
        ),
        ("/v1/billing/stripe/portal", {}, 404, "no_stripe_customer"),
        ("/v1/billing/stripe/subscription/cancel", None, 404, "no_stripe_subscription"),
        (
            "/v1/billing/stripe/subscription/preview-change",
            {"product": "pro_yearly"},
            404,
            "no_stripe_subscription",
        ),
    ],
)
async def test_refusals(
    client: httpx.AsyncClient, path: str, body: dict[str, Any] | None, status: int, code: str | None
) -> None:
    auth = bearer(await register(client, "refuse@example.com"))
    response = await client.post(path, json=body, headers=auth)
    assert response.status_code == status, response.text
    if code:
        assert response.json()["error"]["code"] == code


async def test_cancel_refuses_what_it_was_not_asked_to_read(
    client: httpx.AsyncClient, standin: StripeStandin
) -> None:
    # `immediately` is not something cancel does: answering 200 and canceling at period end would be
    # doing something else than asked.
    auth = bearer(await register(client, "immediately@example.com"))
    checkout = (
        await client.post("/v1/billing/stripe/checkout", json={"product": "pro_monthly"}, headers=auth)
    ).json()
    standin.complete_checkout(checkout["id"])
    await deliver_all(client, standin)
    refused = await client.post(
        "/v1/billing/stripe/subscription/cancel", json={"immediately": True}, headers=auth
    )
    assert refused.status_code == 422, refused.text
    error = refused.json()["error"]
    assert error["code"] == "invalid_request" and "Unknown field 'immediately'" in error["message"]
    (subscription,) = standin.state.all("subscription")
    assert subscription["status"] == "active" and subscription["cancel_at_period_end"] is False
    pro = (await client.get("/v1/me/entitlements", headers=auth)).json()["entitlements"]["pro"]
    assert pro["active"] is True and pro["will_renew"] is True
    portal = await client.post("/v1/billing/stripe/portal", json={"return_to": "/"}, headers=auth)
    assert portal.status_code == 422 and "Unknown field 'return_to'" in portal.json()["error"]["message"]


async def test_billing_needs_a_signed_in_account(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/billing/stripe/checkout", json={"product": "pro_monthly"})
    assert response.status_code == 401


async def test_end_to_end_over_real_http_with_stripe_posting_webhooks(
    live_server: LiveServer, standin: StripeStandin
) -> None:
    standin.deliver_to(f"{live_server.url}/webhooks/stripe")
    async with httpx.AsyncClient(base_url=live_server.url, timeout=30) as http:
        auth = bearer(await register(http, "live@example.com"))
        checkout = (
            await http.post("/v1/billing/stripe/checkout", json={"product": "pro_monthly"}, headers=auth)
        ).json()
        await asyncio.to_thread(standin.complete_checkout, checkout["id"])
        await asyncio.to_thread(standin.events.wait_delivered)

        async def pro() -> dict[str, Any]:
            answer: dict[str, Any] = (await http.get("/v1/me/entitlements", headers=auth)).json()
            return answer["entitlements"]["pro"]

        # Webhooks are acknowledged first and processed right after: the change lands moments later.
        paid = await eventually(lambda: _when(pro(), lambda p: p["active"]))
        assert paid["store"] == "stripe" and paid["will_renew"]
        sub_id = standin.state.all("subscription")[0]["id"]
        await asyncio.to_thread(standin.cancel_now, sub_id)
        await asyncio.to_thread(standin.events.wait_delivered)
        await eventually(lambda: _when(pro(), lambda p: not p["active"]))
    assert all(d.status == 200 for d in standin.events.deliveries)


async def _when(answer: Any, holds: Any) -> Any:
    value = await answer
    return value if holds(value) else None


async def test_listing_shows_the_card_and_deleting_the_account_stops_billing(
    client: httpx.AsyncClient, standin: StripeStandin
) -> None:
    auth = bearer(await register(client, "leaving@example.com"))
    checkout = (
        await client.post("/v1/billing/stripe/checkout", json={"product": "pro_monthly"}, headers=auth)
    ).json()
    standin.complete_checkout(checkout["id"])
    await deliver_all(client, standin)
    [subscription] = (await client.get("/v1/me/entitlements", headers=auth)).json()["subscriptions"]
    card = standin.state.get(subscription["id"], "subscription")["default_payment_method"]
    card = standin.state.get(card if isinstance(card, str) else card["id"], "payment_method")["card"]
    assert subscription["payment_method"] == {"type": "card", "brand": card["brand"], "last4": card["last4"]}

    assert (await client.delete("/v1/me", headers=auth)).status_code == 204
    assert standin.state.get(subscription["id"], "subscription")["status"] == "canceled"


def _open_sessions(standin: StripeStandin) -> list[dict[str, Any]]:
    return [s for s in standin.state.all("checkout.session") if s["status"] == "open"]


async def test_racing_checkouts_make_one_customer_and_leave_one_payable_page(
    client: httpx.AsyncClient, standin: StripeStandin
) -> None:
    auth = bearer(await register(client, "twotabs@example.com"))
    responses = await asyncio.gather(
        *(
            client.post("/v1/billing/stripe/checkout", json={"product": "pro_monthly"}, headers=auth)
            for _ in range(4)
        )
    )
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    # Two paid sessions would be two subscriptions, charged twice: only one can still be paid,
    # and every click was answered with that one.
    [survivor] = _open_sessions(standin)
    assert {r.json()["id"] for r in responses} == {survivor["id"]}
    # One Stripe customer for the account, however many clicks raced to create it.
    customers = {s["customer"] for s in standin.state.all("checkout.session")}
    assert len(customers) == 1 and len(standin.state.all("customer")) == 1


async def test_a_new_checkout_closes_every_other_way_to_pay(
    client: httpx.AsyncClient, standin: StripeStandin
) -> None:
    auth = bearer(await register(client, "switch@example.com"))
    element = (
        await client.post("/v1/billing/stripe/subscription", json={"product": "pro_monthly"}, headers=auth)
    ).json()
    monthly = (
        await client.post("/v1/billing/stripe/checkout", json={"product": "pro_monthly"}, headers=auth)
    ).json()
    # The half-done Payment Element subscription can no longer be paid from a forgotten tab.
    assert standin.subscription(element["subscription_id"])["status"] == "canceled"
    yearly = (
        await client.post("/v1/billing/stripe/checkout", json={"product": "pro_yearly"}, headers=auth)
    ).json()
    assert [s["id"] for s in _open_sessions(standin)] == [yearly["id"]]
    assert standin.state.get(monthly["id"], "checkout.session")["status"] == "expired"
    again = (
        await client.post("/v1/billing/stripe/subscription", json={"product": "pro_monthly"}, headers=auth)
    ).json()
    assert _open_sessions(standin) == []
    standin.pay_first_invoice(again["subscription_id"])
    await deliver_all(client, standin)
    answer = (await client.get("/v1/me/entitlements", headers=auth)).json()
    assert (
        answer["entitlements"]["pro"]["active"] and answer["entitlements"]["pro"]["product"] == "pro_monthly"
    )
    statuses = sorted(s["status"] for s in answer["subscriptions"])
    assert statuses == ["active", "expired"]


async def test_a_checkout_paid_after_an_app_store_purchase_is_reported_as_a_duplicate(
    client: httpx.AsyncClient, context: AppContext, standin: StripeStandin
) -> None:
    session = await register(client, "both@example.com")
    auth = bearer(session)
    checkout = (
        await client.post("/v1/billing/stripe/checkout", json={"product": "pro_monthly"}, headers=auth)
    ).json()
    # Meanwhile the person buys on the iPhone (Apple purchases cannot be refused) ...
    async with context.database.sessionmaker() as db:
        await apply_subscription_state(
            db,
            app_store_subscription(
                uuid.UUID(session["account"]["id"]), store_subscription_id="2000000000000002"
            ),
        )
        await db.commit()
    # ... then finishes the web checkout it had open.
    standin.complete_checkout(checkout["id"])
    await deliver_all(client, standin)
    pro = (await client.get("/v1/me/entitlements", headers=auth)).json()["entitlements"]["pro"]
    assert pro["active"] is True
    assert {d["store"] for d in pro["duplicate_subscriptions"]} == {"stripe", "app_store"}
    events = (await client.get("/v1/me/events", headers=auth)).json()["events"]
    assert any(e["type"] == "subscription.duplicate_detected" for e in events)


async def test_a_paused_subscription_is_resumed_not_bought_again(
    client: httpx.AsyncClient, standin: StripeStandin
) -> None:
    auth = bearer(await register(client, "paused@example.com"))
    checkout = (
        await client.post("/v1/billing/stripe/checkout", json={"product": "pro_monthly"}, headers=auth)
    ).json()
    standin.complete_checkout(checkout["id"])
    sub_id = standin.state.get(checkout["id"], "checkout.session")["subscription"]
    standin.pause(sub_id)
    await deliver_all(client, standin)
    assert not (await client.get("/v1/me/entitlements", headers=auth)).json()["entitlements"]["pro"]["active"]
    # Buying again would leave two subscriptions billing once the first resumes.
    for path in ("/v1/billing/stripe/checkout", "/v1/billing/stripe/subscription"):
        refused = await client.post(path, json={"product": "pro_yearly"}, headers=auth)
        assert refused.status_code == 409, refused.text
        error = refused.json()["error"]
        assert error["code"] == "already_subscribed" and error["details"]["status"] == "paused"
        assert error["details"]["management_url"].endswith("/v1/billing/stripe/portal")
