"""Stripe Tax (`ENTITLE_STRIPE_AUTOMATIC_TAX`): every path sends what Stripe needs to add tax, and the
answers carry the tax Stripe computed; with the setting off nothing about tax is sent or shown."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.factories import bearer, register
from tests.providers.stripe.conftest import deliver_all, stripe_settings
from tests.standins.stripe import StripeStandin

pytestmark = pytest.mark.usefixtures("pushed")

GERMANY = {"line1": "Unter den Linden 1", "city": "Berlin", "postal_code": "10117", "country": "DE"}


@pytest.fixture(params=[True, False], ids=["tax-on", "tax-off"])
def tax_on(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


@pytest.fixture
def settings_overrides(standin: StripeStandin, tax_on: bool) -> dict[str, Any]:
    return stripe_settings(standin) | {"stripe_automatic_tax": tax_on}


def _created(standin: StripeStandin, path: str) -> list[dict[str, Any]]:
    return [r["params"] for r in standin.requests if r["method"] == "POST" and r["path"] == path]


async def _auth(client: httpx.AsyncClient, email: str = "tax@example.com") -> dict[str, str]:
    return bearer(await register(client, email))


async def test_subscription_checkout_collects_the_address_and_charges_stripes_tax(
    client: httpx.AsyncClient, standin: StripeStandin, tax_on: bool
) -> None:
    auth = await _auth(client)
    started = await client.post("/v1/billing/stripe/checkout", json={"product": "pro_monthly"}, headers=auth)
    assert started.status_code == 200, started.text
    [params] = _created(standin, "/v1/checkout/sessions")
    if tax_on:
        assert params["automatic_tax"] == {"enabled": "true"}
        assert params["billing_address_collection"] == "required"
        assert params["tax_id_collection"] == {"enabled": "true"}
        assert params["customer_update"] == {"address": "auto", "name": "auto"}
    else:
        assert not {
            "automatic_tax",
            "billing_address_collection",
            "tax_id_collection",
            "customer_update",
        } & set(params)

    session = standin.complete_checkout(started.json()["id"], address=GERMANY)
    await deliver_all(client, standin)
    sub = standin.subscription(session["subscription"])
    invoice = standin.state.objects[sub["latest_invoice"]]
    [charge] = standin.state.all("charge")
    status = (await client.get(f"/v1/billing/stripe/checkout/{session['id']}", headers=auth)).json()
    assert status["fulfilled"] is True
    if tax_on:
        # 19% on 9.99 for a buyer in Germany, saved on the customer for every renewal.
        assert session["total_details"]["amount_tax"] == 190
        assert sub["automatic_tax"]["enabled"] is True
        assert invoice["total"] == 1189 and invoice["total_taxes"][0]["amount"] == 190
        assert charge["amount"] == 1189
        assert standin.state.objects[sub["customer"]]["address"]["country"] == "DE"
        assert (status["amount_total"], status["amount_tax"]) == (1189, 190)
    else:
        assert session["total_details"]["amount_tax"] == 0 and charge["amount"] == 999
        assert "amount_tax" not in status


async def test_one_time_checkout_adds_tax_to_the_payment(
    client: httpx.AsyncClient, standin: StripeStandin, tax_on: bool
) -> None:
    auth = await _auth(client)
    started = await client.post("/v1/billing/stripe/checkout", json={"product": "pro_lifetime"}, headers=auth)
    assert started.status_code == 200, started.text
    [params] = _created(standin, "/v1/checkout/sessions")
    assert params["mode"] == "payment"
    assert ("automatic_tax" in params) is tax_on and ("billing_address_collection" in params) is tax_on

    session = standin.complete_checkout(
        started.json()["id"], address={"country": "FR", "postal_code": "75001"}
    )
    await deliver_all(client, standin)
    intent = standin.state.objects[session["payment_intent"]]
    assert intent["amount"] == (19999 + 4000 if tax_on else 19999)
    answer = (await client.get("/v1/me/entitlements", headers=auth)).json()
    assert answer["entitlements"]["pro"]["active"] is True


async def test_the_payment_element_subscription_needs_an_address_while_tax_is_on(
    client: httpx.AsyncClient, standin: StripeStandin, tax_on: bool
) -> None:
    auth = await _auth(client)
    if tax_on:
        refused = await client.post(
            "/v1/billing/stripe/subscription", json={"product": "pro_monthly"}, headers=auth
        )
        assert refused.status_code == 422 and refused.json()["error"]["code"] == "address_required"
        assert "address" in refused.json()["error"]["message"]
        no_zip = await client.post(
            "/v1/billing/stripe/subscription",
            json={"product": "pro_monthly", "address": {"country": "US"}},
            headers=auth,
        )
        assert no_zip.status_code == 422 and no_zip.json()["error"]["code"] == "address_required"
        assert _created(standin, "/v1/subscriptions") == []

    started = await client.post(
        "/v1/billing/stripe/subscription",
        json={
            "product": "pro_monthly",
            "address": GERMANY,
            "tax_id": {"type": "eu_vat", "value": "DE123456789"},
        },
        headers=auth,
    )
    assert started.status_code == 200, started.text
    body = started.json()
    [params] = _created(standin, "/v1/subscriptions")
    sub = standin.subscription(body["subscription_id"])
    customer = standin.state.objects[sub["customer"]]
    if tax_on:
        assert params["automatic_tax"] == {"enabled": "true"}
        assert body["invoice"] == {"total": 1189, "tax": 190, "currency": "usd"}
        assert customer["address"]["city"] == "Berlin"
        assert [t["value"] for t in standin.state.all("tax_id")] == ["DE123456789"]
        assert standin.pay_first_invoice(body["subscription_id"])
        assert [c["amount"] for c in standin.state.all("charge")] == [1189]
    else:
        # Nothing about tax is sent or stored while tax is off.
        assert "automatic_tax" not in params and "invoice" not in body
        assert customer["address"] is None and standin.state.all("tax_id") == []


async def test_a_customer_with_an_address_needs_none_in_the_request(
    client: httpx.AsyncClient, standin: StripeStandin, tax_on: bool
) -> None:
    auth = await _auth(client)
    # A first purchase on Checkout (credits) saved the address on the customer.
    first = await client.post("/v1/billing/stripe/checkout", json={"product": "credits_100"}, headers=auth)
    standin.complete_checkout(first.json()["id"], address=GERMANY)
    await deliver_all(client, standin)
    started = await client.post(
        "/v1/billing/stripe/subscription", json={"product": "pro_monthly"}, headers=auth
    )
    assert started.status_code == 200, started.text
    assert ("invoice" in started.json()) is tax_on


async def test_one_time_payment_element_charges_a_tax_calculations_total(
    client: httpx.AsyncClient, standin: StripeStandin, tax_on: bool
) -> None:
    auth = await _auth(client)
    body: dict[str, Any] = {"product": "credits_100", "quantity": 2}
    if tax_on:
        refused = await client.post("/v1/billing/stripe/payment", json=body, headers=auth)
        assert refused.status_code == 422 and refused.json()["error"]["code"] == "address_required"
        assert standin.state.all("payment_intent") == []
    answer = await client.post(
        "/v1/billing/stripe/payment",
        json={**body, "address": {"country": "GB", "postal_code": "SW1A 1AA"}},
        headers=auth,
    )
    assert answer.status_code == 200, answer.text
    intent = standin.state.objects[answer.json()["payment_intent_id"]]
    if tax_on:
        # 20% on 2 × 4.99, in one calculation the PaymentIntent names, so Stripe records the tax when paid.
        [calculation] = standin.state.all("tax.calculation")
        assert calculation["tax_amount_exclusive"] == 200 and calculation["amount_total"] == 1198
        assert intent["amount"] == 1198
        assert intent["hooks"] == {"inputs": {"tax": {"calculation": calculation["id"]}}}
        assert (answer.json()["amount"], answer.json()["tax"]) == (1198, 200)
        # A double click answers the same PaymentIntent.
        again = await client.post("/v1/billing/stripe/payment", json=body, headers=auth)
        assert again.json()["payment_intent_id"] == intent["id"]
    else:
        assert intent["amount"] == 998 and intent.get("hooks") is None
        assert standin.state.all("tax.calculation") == [] and "tax" not in answer.json()
    assert standin.confirm_payment_intent(intent["id"])
    await deliver_all(client, standin)
    balances = (await client.get("/v1/me/entitlements", headers=auth)).json()["balances"]
    assert balances == {"credits": 200}


async def test_pricing_says_plus_tax_only_while_tax_is_on(client: httpx.AsyncClient, tax_on: bool) -> None:
    page = await client.get("/pricing")
    assert page.status_code == 200
    assert ("plus tax" in page.text) is tax_on
    assert ('id="tax-notice"' in page.text) is tax_on


async def test_a_malformed_address_is_refused_with_its_field(
    client: httpx.AsyncClient, standin: StripeStandin
) -> None:
    auth = await _auth(client)
    for address in ({"country": "de"}, {"city": "Berlin"}, {"country": "DE", "planet": "Earth"}):
        refused = await client.post(
            "/v1/billing/stripe/subscription",
            json={"product": "pro_monthly", "address": address},
            headers=auth,
        )
        assert refused.status_code == 422, refused.text
    assert _created(standin, "/v1/subscriptions") == []


async def test_a_tax_id_stripe_refuses_is_the_buyers_422(
    client: httpx.AsyncClient, standin: StripeStandin, tax_on: bool
) -> None:
    auth = await _auth(client)
    answer = await client.post(
        "/v1/billing/stripe/subscription",
        json={
            "product": "pro_monthly",
            "address": GERMANY,
            "tax_id": {"type": "eu_vat", "value": "not-a-vat"},
        },
        headers=auth,
    )
    if tax_on:
        assert answer.status_code == 422 and answer.json()["error"]["code"] == "invalid_tax_id"
        assert "not-a-vat" in answer.json()["error"]["message"]
        assert _created(standin, "/v1/subscriptions") == []
    else:
        # Ignored while tax is off: nothing about tax is sent.
        assert answer.status_code == 200
