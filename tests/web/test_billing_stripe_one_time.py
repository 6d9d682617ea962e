"""One-time products over HTTP: payment-mode Checkout, the Payment Element's PaymentIntent, and
GET /v1/billing/stripe/checkout/{id}, against the Stripe stand-in."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.factories import bearer, register
from tests.providers.stripe.conftest import deliver_all, stripe_settings
from tests.standins.stripe import StripeStandin

pytestmark = pytest.mark.usefixtures("pushed")


@pytest.fixture
def settings_overrides(standin: StripeStandin) -> dict[str, Any]:
    return stripe_settings(standin)


async def test_a_credit_pack_through_checkout(client: httpx.AsyncClient, standin: StripeStandin) -> None:
    auth = bearer(await register(client, "pack@example.com"))
    started = await client.post(
        "/v1/billing/stripe/checkout", json={"product": "credits_100", "quantity": 3}, headers=auth
    )
    assert started.status_code == 200, started.text
    session_id = started.json()["id"]
    session = standin.state.get(session_id, "checkout.session")
    assert session["mode"] == "payment" and session["_invoice_creation"] is True
    assert session["_hidden"]["line_items"]["data"][0]["quantity"] == 3
    assert session["_payment_intent_data"]["metadata"]["entitle_quantity"] == "3"
    assert session["customer"]

    status = await client.get(f"/v1/billing/stripe/checkout/{session_id}", headers=auth)
    assert status.json() == {
        "id": session_id,
        "status": "open",
        "payment_status": "unpaid",
        "product": "credits_100",
        "fulfilled": False,
    }
    standin.complete_checkout(session_id)
    status = await client.get(f"/v1/billing/stripe/checkout/{session_id}", headers=auth)
    assert status.json()["status"] == "complete" and status.json()["fulfilled"] is False
    await deliver_all(client, standin)
    status = await client.get(f"/v1/billing/stripe/checkout/{session_id}", headers=auth)
    assert status.json()["payment_status"] == "paid" and status.json()["fulfilled"] is True
    answer = (await client.get("/v1/me/entitlements", headers=auth)).json()
    assert answer["balances"] == {"credits": 300}


async def test_someone_elses_checkout_session_is_not_found(
    client: httpx.AsyncClient, standin: StripeStandin
) -> None:
    owner = bearer(await register(client, "owner@example.com"))
    other = bearer(await register(client, "other@example.com"))
    started = await client.post("/v1/billing/stripe/checkout", json={"product": "credits_100"}, headers=owner)
    session_id = started.json()["id"]
    assert (await client.get(f"/v1/billing/stripe/checkout/{session_id}", headers=other)).status_code == 404
    missing = await client.get("/v1/billing/stripe/checkout/cs_test_nope", headers=owner)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "checkout_session_not_found"
    assert (await client.get(f"/v1/billing/stripe/checkout/{session_id}")).status_code == 401


async def test_quantities_are_checked(client: httpx.AsyncClient, standin: StripeStandin) -> None:
    auth = bearer(await register(client, "qty@example.com"))
    for product, quantity in [
        ("credits_100", 11),
        ("credits_100", 0),
        ("pro_lifetime", 2),
        ("pro_monthly", 2),
    ]:
        response = await client.post(
            "/v1/billing/stripe/checkout", json={"product": product, "quantity": quantity}, headers=auth
        )
        assert response.status_code == 422, (product, quantity, response.text)
        assert response.json()["error"]["code"] in ("invalid_quantity", "invalid_request")
    over = await client.post(
        "/v1/billing/stripe/checkout", json={"product": "credits_100", "quantity": 11}, headers=auth
    )
    assert over.json()["error"]["code"] == "invalid_quantity"
    assert standin.state.all("checkout.session") == []
    # A subscription with quantity 1 still opens subscription mode.
    monthly = await client.post(
        "/v1/billing/stripe/checkout", json={"product": "pro_monthly", "quantity": 1}, headers=auth
    )
    assert monthly.status_code == 200
    assert standin.state.get(monthly.json()["id"], "checkout.session")["mode"] == "subscription"
    unknown = await client.post(
        "/v1/billing/stripe/checkout", json={"product": "credits_100", "colour": "red"}, headers=auth
    )
    assert unknown.status_code == 422


async def test_the_payment_element_buys_a_lifetime_unlock_once(
    client: httpx.AsyncClient, standin: StripeStandin
) -> None:
    auth = bearer(await register(client, "element@example.com"))
    started = await client.post("/v1/billing/stripe/payment", json={"product": "pro_lifetime"}, headers=auth)
    assert started.status_code == 200, started.text
    body = started.json()
    assert set(body) == {"payment_intent_id", "client_secret"}
    intent = standin.payment_intent(body["payment_intent_id"])
    assert intent["amount"] == 19999 and intent["automatic_payment_methods"] == {"enabled": True}
    assert intent["metadata"]["entitle_product"] == "pro_lifetime"
    assert standin.confirm_payment_intent(body["payment_intent_id"])
    await deliver_all(client, standin)
    answer = (await client.get("/v1/me/entitlements", headers=auth)).json()
    assert answer["entitlements"]["pro"]["active"] is True
    assert [p["id"] for p in answer["purchases"]] == [body["payment_intent_id"]]

    for path in ("/v1/billing/stripe/payment", "/v1/billing/stripe/checkout"):
        again = await client.post(path, json={"product": "pro_lifetime"}, headers=auth)
        assert again.status_code == 409 and again.json()["error"]["code"] == "already_purchased"


async def test_payment_is_for_one_time_products_only(
    client: httpx.AsyncClient, standin: StripeStandin
) -> None:
    auth = bearer(await register(client, "notone@example.com"))
    response = await client.post("/v1/billing/stripe/payment", json={"product": "pro_monthly"}, headers=auth)
    assert response.status_code == 422 and response.json()["error"]["code"] == "not_one_time"
    pack = await client.post(
        "/v1/billing/stripe/payment", json={"product": "credits_100", "quantity": 10}, headers=auth
    )
    assert pack.status_code == 200
    assert standin.payment_intent(pack.json()["payment_intent_id"])["amount"] == 4990


async def test_a_lifetime_unlock_is_allowed_beside_a_live_subscription(
    client: httpx.AsyncClient, standin: StripeStandin
) -> None:
    auth = bearer(await register(client, "both@example.com"))
    monthly = await client.post("/v1/billing/stripe/checkout", json={"product": "pro_monthly"}, headers=auth)
    standin.complete_checkout(monthly.json()["id"])
    await deliver_all(client, standin)
    lifetime = await client.post(
        "/v1/billing/stripe/checkout", json={"product": "pro_lifetime"}, headers=auth
    )
    assert lifetime.status_code == 200, lifetime.text
    assert standin.state.get(lifetime.json()["id"], "checkout.session")["mode"] == "payment"
    # The subscription's own status is fulfilled once its row is stored.
    status = await client.get(f"/v1/billing/stripe/checkout/{monthly.json()['id']}", headers=auth)
    assert status.json()["fulfilled"] is True and status.json()["product"] == "pro_monthly"
